"""DeSRA fine-tuning (section 3.3 / 4.3): detect the artifacts of a GAN-SR model on real LR images, merge the
MSE-SR result into them as pseudo ground truth (eq. 10), fine-tune the GAN-SR model on (LR, pseudo-GT) pairs,
and measure on held-out LR images what was removed.

Defaults are the paper's: 50 training images, 1000 iterations, lr 1e-4, HR patch 256, global batch 48. The paper
fine-tunes Real-ESRGAN with its own training code, so the losses are Real-ESRGAN's (configs/realesrgan.py): L1
1.0, perceptual 1.0 over VGG19 conv1_2/2_2/3_4/4_4/5_4 weighted 0.1/0.1/1/1/1, vanilla GAN 0.1 with the U-Net
discriminator; the targets are the pseudo GT itself (no USM: it is made from the models' results, not a photograph).
Set `init_from` (the GAN-SR model: a directory of this library, RealESRGAN_x4plus.pth, an ncnn .param or an
installed name such as `realesrgan-x4plus`), `mse_model` (any MSE-SR model of the same scale:
RealESRNet_x4plus.pth, `spanx4_ch48`, ...), `data.lr_dir` and `data.eval_lr_dir`; `discriminator_from` (e.g.
RealESRGAN_x4plus_netD.pth) continues that discriminator, otherwise a fresh one is trained. `online=True` runs the
continual loop of the paper's Discussion (section 6).

`:cpu` runs the paper's whole loop on Real-ESRGAN x4plus (with `realesrnet-span-x4`, the project's own
Real-ESRNet-style partner of x4plus, as its MSE-SR model: SPAN, trained on bicubic LR, would paste the JPEG blocks
of degraded input into the pseudo GT) on 2 CPU cores in about five minutes, on LR images made from the bundled
photographs by one Real-ESRGAN degradation draw each (x4plus's own input domain): 64-px HR patches, batch 4, 50
steps at lr 1e-4 with EMA 0.9, min_area 1000 (the released 4000 px is meant for megapixel results), no perceptual
term (no ImageNet VGG19 weights ship), and a fresh U-Net discriminator trained alone for its first 10 steps
(`train.discriminator_warmup`; set it to 0 with a pretrained `discriminator_from`). `data.lr_dir` or
`data.eval_lr_dir`, when given, replace the bundled set of their kind.
"""

import ml_collections

from configs import common
from desra_jax.losses import REAL_ESRGAN_LAYER_WEIGHTS


def get_config(arg: str | None = None):
    config = common.base_config("desra_finetune")
    config.job = "desra_finetune"
    config.phase = "gan"
    config.mse_model = ""  # the MSE-SR model of the same input scale: the reference and the pseudo-GT source
    config.discriminator_from = ""  # a discriminator to continue (directory or BasicSR net_d .pth); "" = fresh
    config.discriminator.kind = "unet"

    config.data.lr_dir = ""  # real LR images (no ground truth): detection and pseudo-GT pairs
    config.data.num_images = 50  # the first ones (sorted by name) whose GAN-SR result has detected artifacts
    config.data.eval_lr_dir = ""  # held-out LR images: artifacts detected before and after fine-tuning
    config.data.eval_mask_dir = ""  # optional ground-truth artifact masks of the held-out GAN-SR results
    config.data.eval_hr_dir = ""  # optional HR images of the held-out LR images: PSNR/SSIM before and after
    # LR sets made from the bundled photographs instead of the two folders (desra_jax.data.bundled.write_lr_sets,
    # into workdir/data): degradation "" = use data.lr_dir / data.eval_lr_dir.
    config.data.bundled = ml_collections.ConfigDict(
        dict(degradation="", crop=384, seed=1, fine_tune=("astronaut", "coffee", "rocket", "hubble_deep_field",
                                                          "immunohistochemistry", "grass", "gravel"),
             held_out=("chelsea", "motorcycle")))
    config.data.hr_patch = 256
    config.data.batch_size = 48

    config.detection = detection_block()

    config.train.num_steps = 1000
    config.train.learning_rate = 1e-4
    config.train.milestones = ()
    config.train.eval_every = 500
    config.train.checkpoint_every = 500
    config.train.log_every = 50
    # LPIPS of the held-out results against data.eval_hr_dir (the lpips package's weights/v0.1/<net>.pth and
    # torchvision's backbone .pth); "" = PSNR and SSIM only.
    config.eval.lpips_weights = ""
    config.eval.lpips_backbone = ""
    config.eval.lpips_net = "alex"

    config.loss.pixel_weight = 1.0
    config.loss.perceptual_weight = 1.0
    config.loss.perceptual_layers = dict(REAL_ESRGAN_LAYER_WEIGHTS)
    config.loss.gan_kind = "gan"
    config.loss.gan_weight = 0.1

    config.online = False
    config.online_settings = online_block()
    common.apply_variant(config, arg, own=("cpu",))
    if config.variant == "tiny":
        _tiny(config)
    if config.variant == "cpu":
        _cpu(config)
    return config


def detection_block() -> ml_collections.ConfigDict:
    """DeSRA's detection as released: threshold 0.7 on clip(D / A, 0, 1), regions over 4000 pixels, the semantic
    adjustment with a SegFormer when one is given."""
    detection = ml_collections.ConfigDict()
    detection.threshold = 0.7
    detection.min_area = 4000
    detection.segformer = ""  # a SegFormer (Hugging Face directory or mmseg .pth); "" = no semantics
    detection.class_adjustment = ""  # "" = the authors' published ADE20K table
    detection.segment = "gan"  # which SR result is segmented (the released script: GAN-SR)
    detection.segformer_size = 512
    detection.segformer_resize = "auto"  # the checkpoint's own pipeline: keep_ratio for the authors' mmseg one
    detection.indicator = "relative"  # eq. 7 as released
    detection.feather = 0.0  # Gaussian sigma (HR pixels) of the pseudo-GT blend edge; 0 = eq. 10 as printed
    return detection


def online_block() -> ml_collections.ConfigDict:
    """The continual loop's settings (`config.online=True`)."""
    online = ml_collections.ConfigDict()
    online.incoming_dir = ""  # where new LR images arrive
    online.buffer_size = 50  # artifact samples per fine-tuning round
    online.poll_seconds = 10.0
    online.idle_polls = -1  # stop after this many polls without a new image; -1 = never
    return online


def _tiny(config: ml_collections.ConfigDict) -> None:
    """Sized for the tests on 2 CPU cores."""
    config.detection.min_area = 64
    config.data.update(hr_patch=32, batch_size=8, num_images=4)
    # At lr 1e-4 and EMA 0.99 a tiny model hardly moves in 100 steps; a fresh tiny discriminator's signal is
    # noise at this scale, so its weight is small.
    config.train.update(num_steps=100, learning_rate=2e-3, ema_decay=0.9, eval_every=100, checkpoint_every=50,
                        log_every=10)
    config.loss.gan_weight = 0.01
    config.online_settings.update(buffer_size=2, poll_seconds=0.1)


def _cpu(config: ml_collections.ConfigDict) -> None:
    """Real-ESRGAN x4plus on the bundled photographs on 2 CPU cores (module docstring)."""
    config.init_from, config.mse_model = "realesrgan-x4plus", "realesrnet-span-x4"
    config.data.bundled.degradation = "realesrgan"
    config.detection.min_area = 1000
    config.data.update(hr_patch=64, batch_size=4)
    config.loss.perceptual_weight = 0.0
    config.train.update(num_steps=50, discriminator_warmup=10, ema_decay=0.9, eval_every=50, checkpoint_every=25,
                        log_every=5)
    config.eval.update(tile=128, overlap=16)
