"""The bundled photographs and the LR sets made from them (desra_jax.data.bundled)."""

import os

import numpy as np
import pytest
import skimage.data

from desra_jax.data.bundled import (MORE_PHOTOGRAPH_NAMES, bundled_photograph, centre_crop, lr_photograph,
                                    write_lr_sets)
from desra_jax.data.degradations import bicubic_downsample
from desra_jax.data.image_io import read_image


def test_more_photographs_are_scikit_image_files_as_rgb():
    assert bundled_photograph("motorcycle").shape == (500, 741, 3)
    gravel = bundled_photograph("gravel")
    np.testing.assert_array_equal(gravel[:, :, 0] * 255, skimage.data.gravel())
    np.testing.assert_array_equal(gravel[:, :, 0], gravel[:, :, 2])
    assert set(MORE_PHOTOGRAPH_NAMES) == {"motorcycle", "grass", "gravel", "brick"}
    with pytest.raises(ValueError, match="unknown bundled photograph 'lena'"):
        bundled_photograph("lena")


def test_centre_crop_keeps_the_centre_and_multiples_of_the_scale():
    image = np.arange(10 * 13).reshape(10, 13, 1)
    np.testing.assert_array_equal(centre_crop(image, 6, 4), image[3:7, 4:8])
    np.testing.assert_array_equal(centre_crop(image, 64, 4), image[1:9, :12])  # shorter sides: the whole, cut


def test_lr_sets_are_written_once_with_their_settings(tmp_path):
    sets = {"fine_tune": ("astronaut", "gravel"), "held_out": ("chelsea",)}
    folders = write_lr_sets(str(tmp_path), sets, 4, "bicubic", 0, 64)
    assert sorted(os.listdir(folders["fine_tune_lr"])) == ["astronaut.png", "gravel.png"]
    hr = read_image(os.path.join(folders["held_out_hr"], "chelsea.png"))
    np.testing.assert_array_equal(hr * 255, skimage.data.chelsea()[118:182, 193:257])
    lr = read_image(os.path.join(folders["held_out_lr"], "chelsea.png"))
    np.testing.assert_allclose(lr, np.clip(bicubic_downsample(hr, 4), 0, 1), rtol=0, atol=0.5 / 255 + 1e-6)

    written = os.path.getmtime(os.path.join(folders["held_out_lr"], "chelsea.png"))
    assert write_lr_sets(str(tmp_path), sets, 4, "bicubic", 0, 64) == folders  # a rerun: found, nothing written
    assert os.path.getmtime(os.path.join(folders["held_out_lr"], "chelsea.png")) == written
    with pytest.raises(ValueError, match=f"{tmp_path / 'index.json'}: the LR sets there were made with"):
        write_lr_sets(str(tmp_path), sets, 4, "realesrgan", 0, 64)


def test_a_photographs_realesrgan_lr_depends_on_its_name_and_seed_only():
    hr = centre_crop(bundled_photograph("coffee"), 64, 4)
    lr = lr_photograph("coffee", hr, 4, "realesrgan", 0)
    assert lr.shape == (16, 16, 3) and lr.dtype == np.float32
    np.testing.assert_allclose(lr * 255, np.round(lr * 255), rtol=0, atol=1e-3)  # 8-bit levels
    np.testing.assert_array_equal(lr_photograph("coffee", hr, 4, "realesrgan", 0), lr)
    assert np.abs(lr_photograph("coffee", hr, 4, "realesrgan", 1) - lr).max() > 0.05
    assert np.abs(lr_photograph("other", hr, 4, "realesrgan", 0) - lr).max() > 0.05
    assert np.abs(lr - np.clip(bicubic_downsample(hr, 4), 0, 1)).mean() > 0.01  # degraded, not just resized
    with pytest.raises(ValueError, match="unknown LR degradation 'jpeg'"):
        lr_photograph("coffee", hr, 4, "jpeg", 0)
