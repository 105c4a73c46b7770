"""`train_localizer(config, workdir)`: the artifact-localizer training job (configs/localizer.py) behind
`python -m experiments.main`.

Loads the config's (image, mask) pairs and runs `desra_jax.training.localizer_job.train_localizer` (its docstring
describes the training and the workdir layout) with the settings `configs.arguments` makes of the config.
"""

from __future__ import annotations

from configs import arguments
from desra_jax.data import sr_pairs
from desra_jax.data.mask_pairs import MaskPair, load_mask_pairs
from desra_jax.data.synthetic import synthetic_mask_pairs
from desra_jax.detection import detect_artifacts
from desra_jax.training import localizer_job, loop, sharding


def load_data(config) -> tuple[list[MaskPair], list[MaskPair]]:
    """(train, held-out) lists of (name, image, mask): the configured folders, or DeSRA pseudo-labels on the
    bundled photographs (held out: chelsea and coffee, data.sr_pairs.bundled_split)."""
    data = config.data
    if data.image_dir:
        return load_mask_pairs(data.image_dir, data.mask_dir), load_mask_pairs(data.val_image_dir, data.val_mask_dir)
    train_photos, val_photos = sr_pairs.bundled_split()

    def label(gans, mses):
        return detect_artifacts(gans, mses, threshold=data.detect_threshold, min_area=data.detect_min_area)[0]

    # one detection call for all the photographs: one compilation
    labelled = synthetic_mask_pairs(train_photos + val_photos, data.synthetic_size, data.synthetic_variants, label)
    held_out = len(val_photos) * data.synthetic_variants
    return labelled[:-held_out], labelled[-held_out:]


def train_localizer(config, workdir: str, mesh=None) -> dict:
    """Train the localizer to `config.train.num_steps` in `workdir`, resuming from its latest checkpoint; returns
    the final held-out summary {'mean_iou', 'precision', 'recall'}."""
    mesh = mesh or sharding.data_mesh()
    workdir = loop.prepare_workdir(workdir, config.to_json_best_effort())
    if (summary := loop.finished_summary(workdir, config.train.num_steps)) is not None:
        return summary
    train_pairs, val_pairs = load_data(config)
    return localizer_job.train_localizer(arguments.localizer_training(config), arguments.localizer_model(config),
                                         train_pairs, val_pairs, workdir, mesh)
