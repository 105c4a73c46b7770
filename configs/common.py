"""The settings every experiment shares, as published (ESRGAN sec. 4.1, BasicSR's configs), and the `tiny`
variant that runs any experiment end to end on 2 CPU cores in a few minutes."""

import dataclasses

import ml_collections

from desra_jax.data.degradations import realesrgan_settings

VARIANTS = ("", "tiny")


def base_config(name: str) -> ml_collections.ConfigDict:
    """ESRGAN x4: 23 RRDB blocks of 64 features, HR patch 128, batch 16, Adam 1e-4 (0.9, 0.99), EMA 0.999."""
    config = ml_collections.ConfigDict()
    config.name = name
    config.variant = ""  # set by the `:variant` suffix of --config
    config.seed = 0
    config.scale = 4
    config.phase = "gan"  # "pixel": MSE-SR pretraining; "gan": adversarial training
    # An MSE-SR model to start from: a directory written by this library (experiments.main or
    # experiments.convert) or a PyTorch RRDBNet .pth / .safetensors file.
    config.init_from = ""

    config.model = ml_collections.ConfigDict(dict(num_feat=64, num_block=23, num_grow_ch=32))
    config.discriminator = ml_collections.ConfigDict(dict(kind="vgg", num_feat=64))

    config.data = data_block()
    config.train = train_block()
    config.loss = loss_block()

    # Real-ESRGAN's second-order degradation of the HR patches, on the device inside the step (configs/realesrnet.py,
    # realesrgan.py: `realesrgan_degradation()`); empty: LR by bicubic downsampling on the host.
    config.degradation = ml_collections.ConfigDict()

    config.eval = ml_collections.ConfigDict()
    config.eval.tile = 256  # whole validation images, super-resolved in LR tiles of this size (inference.upscale)
    config.eval.overlap = 32  # LR pixels shared by adjacent tiles
    config.eval.num_samples = 2  # validation images shown in the sample grid
    return config


def data_block() -> ml_collections.ConfigDict:
    """Where the training and validation images come from, and the patches."""
    data = ml_collections.ConfigDict()
    # "images": train_dir / val_dir, each empty for the photographs bundled with scikit-image; "tfds": the
    # 'train' / 'validation' splits of a prepared tensorflow-datasets builder (pip install 'desra-jax[tfds]'),
    # whose 'lr' images are the training LR as given instead of bicubic_downsample of the HR patch.
    data.source = "images"
    data.train_dir = ""
    # Bundled photographs by name (desra_jax.data.bundled) to train and validate on; empty: sr_pairs.bundled_split.
    data.bundled_train = ()
    data.bundled_val = ()
    data.val_dir = ""
    data.tfds_name = "div2k/bicubic_x4"
    data.tfds_data_dir = ""  # empty: tfds's default ($TFDS_DATA_DIR or ~/tensorflow_datasets)
    data.hr_patch = 128
    data.batch_size = 16  # global, split over all devices
    data.prefetch = 2  # batches prepared ahead of the step, on the devices
    return data


def train_block() -> ml_collections.ConfigDict:
    """ESRGAN's schedule: 400k steps, Adam 1e-4 halved at 50k, 100k, 200k and 300k, EMA 0.999."""
    train = ml_collections.ConfigDict()
    train.num_steps = 400_000
    train.learning_rate = 1e-4
    train.milestones = (50_000, 100_000, 200_000, 300_000)
    train.gamma = 0.5
    train.ema_decay = 0.999
    train.log_every = 100
    train.eval_every = 5_000
    train.checkpoint_every = 5_000
    train.keep_checkpoints = 3
    # GAN phase: the first steps train the discriminator alone on the generator's output (counted in num_steps)
    train.discriminator_warmup = 0
    return train


def loss_block() -> ml_collections.ConfigDict:
    """ESRGAN's losses: L1 1e-2, VGG19 conv5_4 1.0, RaGAN 5e-3."""
    loss = ml_collections.ConfigDict()
    loss.pixel_kind = "l1"
    loss.pixel_weight = 1e-2
    loss.perceptual = "vgg"  # or "lpips": the mean LPIPS distance (lpips_* below)
    loss.perceptual_weight = 1.0
    # VGG19 layers (before activation) and their weights: ESRGAN's conv5_4 alone; Real-ESRGAN's
    # desra_jax.losses.REAL_ESRGAN_LAYER_WEIGHTS sums five.
    loss.perceptual_layers = ml_collections.ConfigDict({"conv5_4": 1.0})
    loss.perceptual_criterion = "l1"
    # ImageNet VGG19 weights for the perceptual loss: a torchvision vgg19 .pth, or a directory written by
    # `python -m experiments.convert vgg19`. Required when perceptual_weight > 0; never downloaded.
    loss.vgg19 = ""
    # perceptual="lpips": the lpips package's weights/v0.1/<net>.pth and torchvision's backbone .pth (alexnet-owt-*
    # or vgg16-*), never downloaded.
    loss.lpips_weights = ""
    loss.lpips_backbone = ""
    loss.lpips_net = "alex"
    loss.gan_kind = "rasgan"
    loss.gan_weight = 5e-3
    loss.gradient_penalty_weight = 0.0
    loss.fft_weight = 0.0
    return loss


def apply_variant(config: ml_collections.ConfigDict, arg: str | None, tiny=None,
                  own: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
    """Apply the variant named after the colon of `--config=configs/x.py:variant`; `tiny(config)` makes the tiny
    variant of a job other than GAN-SR training (default: the SR job's `_tiny`). `own`: the variants that the
    config file applies itself after this call (it sees them in `config.variant`)."""
    arg = arg or ""
    if arg not in VARIANTS + own:
        raise ValueError(f"unknown config variant {arg!r}; choose one of {VARIANTS[1:] + own} or none")
    config.variant = arg
    if arg == "tiny":
        (tiny or _tiny)(config)
    return config


def _tiny(config: ml_collections.ConfigDict) -> None:
    """A few-minute CPU run of the same job: small network, small patches, few steps.

    No ImageNet VGG19 weights ship with the package, so the tiny runs leave the perceptual loss out
    (set `loss.vgg19` and `loss.perceptual_weight` to put it back).
    """
    config.model.update(num_feat=16, num_block=1, num_grow_ch=8)
    config.discriminator.num_feat = 8
    config.data.update(hr_patch=64, batch_size=8)
    config.loss.perceptual_weight = 0.0
    config.eval.update(tile=64, overlap=16)
    # EMA 0.99: at 0.999 a few hundred steps leave the averaged weights close to their initialisation.
    config.train.ema_decay = 0.99
    if config.phase == "pixel":  # enough to beat bicubic on the validation photographs
        config.train.update(num_steps=800, learning_rate=2e-3, milestones=(600,))
    else:
        config.train.update(num_steps=40, milestones=(30,))
    # Validation (whole images, tiled) halfway and at the end: each one costs about 40 steps of the tiny pixel phase.
    config.train.update(log_every=10, eval_every=400, checkpoint_every=100)


def realesrgan_degradation() -> ml_collections.ConfigDict:
    """The `degradation` block of Real-ESRGAN's released settings (`desra_jax.data.RealESRGANSettings`), its keys
    overridable from the command line; `configs.arguments.degradation` turns it back into the settings."""
    return ml_collections.ConfigDict(
        {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(realesrgan_settings()).items()}
    )
