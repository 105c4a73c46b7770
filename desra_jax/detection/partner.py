"""Whether an MSE-SR partner suits the GAN-SR model it is paired with, measured without HR.

DeSRA's partner must be trained on the GAN-SR model's own degradation (Real-ESRNet for Real-ESRGAN). A partner
trained on clean bicubic LR (SPAN) keeps the 8x8 JPEG blocks of degraded input, which the GAN-SR model removes;
inside the detected masks, where eq. 10 pastes the partner's result, its blockiness then exceeds the GAN-SR
result's. `partner_blockiness` measures that per image, `partner_mismatch` turns the measurements into one
warning naming both models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from desra_jax.metrics.no_reference import JPEG_BLOCK, blockiness

#: Mean blockiness ratio (partner over GAN-SR inside the masks) above which the partner is taken to come from
#: another input domain. Measured on the held-out photographs degraded by Real-ESRGAN's pipeline with x4plus
#: (benchmarks/partner_quality.py, 8 draws): SPAN x4 (bicubic LR) 1.49, realesrnet-span-x4 (x4plus's degradation)
#: 1.09. 1.3 lies halfway, about 0.2 from either: a matched partner is not flagged for a draw that is a little
#: blockier, a mismatched one is flagged although some of its draws come lower (tests/test_partner.py).
MISMATCH_BLOCKINESS = 1.3


def partner_blockiness(gan_sr: np.ndarray, mse_sr: np.ndarray, mask: np.ndarray, scale: int) -> float:
    """8x8 JPEG blockiness (`blockiness` on the grid the LR's blocks become after x``scale``: 8 ``scale`` pixels)
    of the MSE-SR result over the GAN-SR result's, inside ``mask``. gan_sr, mse_sr: (H, W, 3) in [0, 1]; mask:
    bool (H, W). nan for an empty mask (nothing of the partner is pasted)."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return float("nan")
    block = JPEG_BLOCK * int(scale)
    return blockiness(mse_sr, block, mask) / max(blockiness(gan_sr, block, mask), 1e-6)


def partner_mismatch(ratios: Sequence[float | None], gan_model: str, mse_model: str,
                     threshold: float = MISMATCH_BLOCKINESS) -> str | None:
    """The warning for a partner from another input domain, or None: the mean of the images' `partner_blockiness`
    ``ratios`` (None and nan ones left out) above ``threshold``. Names both models and says what to pair
    instead."""
    ratios = [r for r in ratios if r is not None and np.isfinite(r)]
    if not ratios or (mean := float(np.mean(ratios))) <= threshold:
        return None
    return (f"the MSE-SR partner {mse_model} looks trained on another degradation than the GAN-SR model "
            f"{gan_model}: inside the detected artifacts its results have {mean:.2f}x the 8x8 blockiness of "
            f"{gan_model}'s (over {len(ratios)} image(s); above {threshold:g} means it keeps JPEG blocks that "
            f"{gan_model} removes), so DeSRA measures the partner's failures and pastes them into the result. "
            "Pair the GAN-SR model with an MSE-SR model trained on its own degradation (Real-ESRNet for "
            "Real-ESRGAN; realesrnet-span-x4 for realesrgan-x4plus).")
