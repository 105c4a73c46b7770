"""`config.data.source='tfds'`: a tiny DIV2K-shaped dataset prepared here in the array_record format (no
TensorFlow anywhere), read back pixel for pixel, its LR images given to the training sampler, and a 2-step run."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds  # in the test extra: a missing package fails, it is not skipped

from desra_jax.data.degradations import bicubic_downsample, bicubic_upsample
from desra_jax.data.image_io import encode_png
from tests.conftest import photo_crop

NAME = "div2k/bicubic_x4"
#: 64x64 HR crops of bundled photographs (top, left) per split; their LR is bicubic_downsample x4 (16x16).
CROPS = {
    "train": {"astronaut": (100, 150), "rocket": (200, 120)},
    "validation": {"coffee": (50, 200)},
}


class Div2k(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """The features, splits and config name of tfds's div2k builder, with images from the bundled photographs.

    Not registered: the code under test finds tfds's own div2k builder, as a user's would, and reads what this
    one wrote. The examples are PNG bytes, which tfds stores as given (encoding arrays would need TensorFlow).
    """

    VERSION = tfds.core.Version("2.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="bicubic_x4")]

    def _info(self):
        features = tfds.features.FeaturesDict({"hr": tfds.features.Image(), "lr": tfds.features.Image()})
        return tfds.core.DatasetInfo(builder=self, features=features)

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in CROPS}

    def _generate_examples(self, split):
        for name, (hr, lr) in expected_pairs(split).items():
            yield name, {"hr": encode_png(hr), "lr": encode_png(lr)}


def expected_pairs(split: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (HR (64, 64, 3), LR (16, 16, 3)), both on the 8-bit levels that a PNG file holds."""
    pairs = {}
    for name, (top, left) in CROPS[split].items():
        hr = photo_crop(name, (64, 64), top, left)[0]
        pairs[name] = (hr, np.round(np.clip(bicubic_downsample(hr, 4), 0, 1) * 255) / 255)
    return pairs


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("tensorflow_datasets"))
    Div2k(data_dir=path, config="bicubic_x4", file_format="array_record").download_and_prepare()
    return path


def tfds_config(data_dir: str):
    from configs import mse

    config = mse.get_config("tiny")
    config.data.update(source="tfds", tfds_name=NAME, tfds_data_dir=data_dir)
    return config


def match_photographs(loaded_hr, split: str) -> dict[str, int]:
    """Which photograph of ``split`` each loaded HR image is (tfds stores the examples in a shuffled order)."""
    expected = expected_pairs(split)
    assert len(loaded_hr) == len(expected)
    found = {}
    for index, (_, hr) in enumerate(loaded_hr):
        (name,) = [name for name, (want, _) in expected.items() if np.array_equal(hr, want)]
        found[name] = index
    assert sorted(found) == sorted(expected)
    return found


def test_load_images_returns_the_prepared_pixels_and_lr_partners(data_dir):
    from desra_jax.data.tfds_source import load_split
    from experiments.train import load_images

    train, val, train_lr = load_images(tfds_config(data_dir))
    hr_only, no_lr = load_split(NAME, "train", data_dir, with_lr=False)  # what validation loads: no LR decoded
    assert no_lr is None and len(hr_only) == len(train)
    assert all(a == b and np.array_equal(x, y) for (a, x), (b, y) in zip(hr_only, train))

    assert [name for name, _ in val] == [f"{NAME}/validation[0]"]
    assert match_photographs(val, "validation") == {"coffee": 0}
    for name, index in match_photographs(train, "train").items():
        hr, lr = expected_pairs("train")[name]
        assert train[index][1].dtype == np.float32  # and its pixels are hr exactly (match_photographs)
        # The builder's LR, as stored, not bicubic_downsample of the HR again (which is not on 8-bit levels).
        np.testing.assert_array_equal(train_lr[index], lr)
        assert np.abs(train_lr[index] - bicubic_downsample(hr, 4)).max() > 0


def test_a_missing_builder_dataset_or_format_is_named(data_dir, tmp_path):
    from desra_jax.data.tfds_source import load_split

    with pytest.raises(ValueError, match="div2kk/bicubic_x4: no such tensorflow-datasets builder"):
        load_split("div2kk/bicubic_x4", "train", data_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"{NAME}: not prepared in {empty}/div2k/bicubic_x4/2.0.0.*--data_dir={empty}"):
        load_split(NAME, "train", str(empty))
    with pytest.raises(ValueError, match=f"{NAME}: Unknown split 'test'"):
        load_split(NAME, "test", data_dir)

    # A dataset prepared as tfrecord (the older default) cannot be read without TensorFlow: the message says how
    # to rebuild it. Its info file is all that differs before reading.
    tfrecord = tmp_path / "tfrecord"
    shutil.copytree(data_dir, tfrecord)
    info_path = tfrecord / "div2k" / "bicubic_x4" / "2.0.0" / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "fileFormat": "tfrecord"}))
    with pytest.raises(ValueError, match=f"as tfrecord.*tfds build {NAME} --file_format=array_record"):
        load_split(NAME, "train", str(tfrecord))


def test_missing_tensorflow_datasets_names_the_extra(monkeypatch):
    from desra_jax.data.tfds_source import load_split

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ValueError, match=r"pip install 'desra-jax\[tfds\]'"):
        load_split(NAME, "train")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("data.source", "div2k", "config.data.source='div2k': choose one of"),
        ("data.tfds_name", "div2k/bicubic_x2",
         "config.data.tfds_name='div2k/bicubic_x2': its LR images are not for config.scale=4"),
        ("data.train_dir", ".", "config.data.train_dir='.': data.source='tfds' reads the builder's splits"),
        ("data.tfds_data_dir", "/no/such/dir", "config.data.tfds_data_dir='/no/such/dir': no such file"),
    ],
)
def test_bad_tfds_settings_fail_validation_naming_the_key(key, value, message):
    from configs.validation import check_sr as validate

    config = tfds_config("")
    section, field = key.split(".")
    config[section][field] = value
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        validate(config, num_devices=1)


@pytest.mark.slow
def test_a_two_step_run_trains_on_the_builder_pairs(data_dir, tmp_path, monkeypatch):
    from desra_jax.training import evaluation
    from experiments import train

    samplers = []

    def recording_sampler(*args, **kwargs):
        samplers.append(real_sampler(*args, **kwargs))
        return samplers[-1]

    real_sampler = train.sr_pairs.PatchSampler
    monkeypatch.setattr(train.sr_pairs, "PatchSampler", recording_sampler)
    config = tfds_config(data_dir)
    config.data.batch_size = 2
    config.train.update(num_steps=2, log_every=1, eval_every=2, checkpoint_every=2)
    train.train_and_evaluate(config, str(tmp_path))

    (sampler,) = samplers
    expected = expected_pairs("train")
    for name, index in match_photographs(list(zip(sampler.names, sampler.images)), "train").items():
        np.testing.assert_array_equal(sampler.lr_images[index], expected[name][1])
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["l_pix"] for r in records if "l_pix" in r]
    assert len(losses) == 2 and losses[1] < losses[0]  # measured: 0.606, 0.535

    # Validated on the builder's validation split: its bicubic baseline is that of the coffee crop.
    (image,) = json.loads((tmp_path / "eval_0000002.json").read_text())["per_image"]
    (pair,) = evaluation.validation_pairs([("coffee", expected_pairs("validation")["coffee"][0])], 4)
    bicubic_psnr = evaluation.image_metrics(bicubic_upsample(pair[1], 4), pair[2], 4)["psnr_y"]
    assert image["name"] == f"{NAME}/validation[0]"
    assert image["bicubic_psnr_y"] == pytest.approx(bicubic_psnr, rel=1e-6)
    assert np.isfinite(image["psnr_y"])
