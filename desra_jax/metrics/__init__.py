from desra_jax.metrics.detection import evaluate_detection, iou, mean_iou, removal_addition_rates
from desra_jax.metrics.image_quality import psnr, rgb_to_y, ssim
from desra_jax.metrics.lpips import LPIPS, lpips
