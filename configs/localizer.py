"""The artifact localizer of the deraining paper (Zhao 2024, sec. 2.2, Fig. 3): DeepLabV3+ trained on artifact
masks, run by `python -m experiments.main --config=configs/localizer.py[:tiny]`.

Default data (no data folders given): DeSRA pseudo-labels on GAN-like SR results of the photographs bundled with
scikit-image. Each photograph's centre `data.synthetic_size` square becomes `data.synthetic_variants` GAN-SR /
MSE-SR pairs (desra_jax.data.synthetic: fine stripe textures pasted into random ellipses of the GAN-SR image); DeSRA
detection (semantics-free, threshold 0.7, the released morphology with `data.detect_min_area`) turns each pair
into a mask; the localizer learns (GAN-SR image -> mask). Training photographs: astronaut, rocket,
immunohistochemistry, hubble_deep_field; held out for evaluation: chelsea, coffee (data.sr_pairs.bundled_split).

Your own data: `data.image_dir` (GAN-SR images) with `data.mask_dir` (PNG / labelme masks of the same relative
names, or the `--out_dir` of `python -m experiments.detect --gan_dir <image_dir>`), and the same for the held-out
`data.val_image_dir` / `data.val_mask_dir`.

The paper gives no training settings. Model: DeepLabV3+ (Chen et al. 2018) with a ResNet-50 backbone, output
stride 16, ASPP rates 6/12/18, a 48-channel low-level projection and a 256-channel decoder, as in the DeepLabV3+
paper. Optimisation: Adam on BCE + Dice, both weighted 1 (the usual pair for a small foreground); lr 1e-4, batch
16, 256-pixel crops and 20k steps halving the rate at 12k and 16k are our choices (a common Adam setting for
DeepLabV3+ fine-tuning).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.job = "localizer"  # experiments.main dispatches on it
    config.name = "localizer"
    config.variant = ""  # set by the `:variant` suffix of --config
    config.seed = 0

    config.model = ml_collections.ConfigDict(dict(
        num_classes=1, backbone_layers=(3, 4, 6, 3), backbone_width=64, aspp_rates=(6, 12, 18), aspp_channels=256,
        decoder_projection=48, decoder_channels=256, decoder_convs=2, output_stride=16, aspp_dropout=0.1,
    ))
    # A torchvision ResNet ImageNet state_dict (.pth) to start the backbone from; empty: random initialisation.
    config.init_backbone = ""

    config.data = ml_collections.ConfigDict()
    config.data.image_dir = ""  # empty: the bundled photographs with DeSRA pseudo-labels (see the docstring)
    config.data.mask_dir = ""
    config.data.val_image_dir = ""
    config.data.val_mask_dir = ""
    config.data.synthetic_size = 256  # centre square of each bundled photograph (chelsea, the smallest, is 300 high)
    # GAN-like pairs per photograph, each with its own artifact ellipses: with 4 a tiny network learns where the
    # artifacts of each training photograph lie (train IoU 0.55, held-out 0.04); with 16 it has to find them.
    config.data.synthetic_variants = 16
    config.data.detect_threshold = 0.7  # DeSRA's threshold on clip(D / A, 0, 1) (Table 5)
    # The released script keeps regions of more than 4000 pixels of full-size SR results; 1000 keeps the same
    # fraction of a 256-pixel square as 4000 does of a 512-pixel one.
    config.data.detect_min_area = 1000
    config.data.patch = 256  # training crop side
    config.data.batch_size = 16  # global, split over all devices
    config.data.prefetch = 2

    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 20_000
    config.train.learning_rate = 1e-4
    config.train.milestones = (12_000, 16_000)
    config.train.gamma = 0.5
    config.train.log_every = 100
    config.train.eval_every = 2_000
    config.train.checkpoint_every = 2_000
    config.train.keep_checkpoints = 3

    config.loss = ml_collections.ConfigDict(dict(bce_weight=1.0, dice_weight=1.0, dice_smooth=1.0))

    config.eval = ml_collections.ConfigDict()
    config.eval.threshold = 0.5  # artifact where sigmoid(logit) > threshold
    config.eval.p = 0.5  # region overlap of DeSRA's precision / recall (eq. 12-13)
    config.eval.max_size = 512  # held-out images are centre-cropped to at most this size
    config.eval.num_samples = 2  # held-out images shown in the sample grid
    return common.apply_variant(config, arg, tiny=_tiny)


def _tiny(config: ml_collections.ConfigDict) -> None:
    """Sized for the tests on 2 CPU cores: a narrow one-block-per-stage network, 400 steps at a higher rate.

    Crops of 128 pixels, 4 a batch (the pixels of 8 crops of 64): 94 % of them hold part of an artifact ellipse,
    against 61 % of 64-pixel crops, whose empty ones the per-crop Dice pushes towards predicting nothing. The rate
    falls to 0.3x at step 200 and 0.09x at 300, so the final evaluation does not land mid-swing (at the full rate
    the held-out IoU moves by 0.2 between evaluations 100 steps apart). Held-out mean IoU over seeds:
    tests/test_localizer.py."""
    config.model.update(backbone_layers=(1, 1, 1, 1), backbone_width=8, aspp_channels=16, decoder_projection=8,
                        decoder_channels=16)
    config.data.update(patch=128, batch_size=4)
    config.train.update(num_steps=400, learning_rate=2e-3, milestones=(200, 300), gamma=0.3, log_every=10,
                        eval_every=400, checkpoint_every=100)
