"""The image reader/writer and the ground-truth mask reader, on files made from the bundled photographs.

Files are written with cv2 directly (not with the code under test) so that a BGR/RGB swap or a wrong scale in
``read_image`` cannot cancel out against the same mistake in ``write_image``.
"""

import json

import cv2
import numpy as np
import pytest

from desra_jax.data.image_io import ImageFormat, list_images, read_image, read_image_and_format, write_image
from desra_jax.data.masks import read_labelme_mask, read_mask
from tests.conftest import photo_crop


@pytest.fixture
def photo():
    """A 48x64 crop of the astronaut photograph, float32 RGB in [0, 1]."""
    return photo_crop("astronaut", (48, 64), 100, 150)[0]


def bgr_levels(rgb, full_scale, dtype):
    return np.round(rgb[:, :, ::-1] * full_scale).astype(dtype)


def test_reads_8bit_as_rgb(tmp_path, photo):
    cv2.imwrite(str(tmp_path / "a.png"), bgr_levels(photo, 255, np.uint8))
    image = read_image(tmp_path / "a.png")
    assert image.dtype == np.float32 and image.shape == (48, 64, 3)
    np.testing.assert_allclose(image, photo, atol=0.5 / 255 + 1e-6)
    # red is channel 0: the astronaut's red-white-blue flag patch is not read as blue
    assert np.abs(image - photo).max() < np.abs(image[:, :, ::-1] - photo).max()


def test_reads_16bit_scaled_by_65535(tmp_path, photo):
    cv2.imwrite(str(tmp_path / "deep.png"), bgr_levels(photo, 65535, np.uint16))
    np.testing.assert_allclose(read_image(tmp_path / "deep.png"), photo, atol=0.5 / 65535 + 1e-6)


def test_gray_becomes_three_channels(tmp_path, photo):
    gray = np.round(photo.mean(axis=2) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    image = read_image(tmp_path / "gray.png")
    assert image.shape == (48, 64, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], gray / np.float32(255))


def test_alpha_is_an_error_unless_dropped(tmp_path, photo):
    bgra = np.concatenate([bgr_levels(photo, 255, np.uint8), np.full((48, 64, 1), 128, np.uint8)], axis=2)
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    with pytest.raises(ValueError, match=r"rgba\.png: has an alpha channel"):
        read_image(tmp_path / "rgba.png")
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png", alpha="drop"), photo, atol=0.5 / 255 + 1e-6)


def test_unreadable_and_missing_files_are_named(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"broken\.png: not a readable image"):
        read_image(tmp_path / "broken.png")
    with pytest.raises(ValueError, match=r"missing\.png: cannot read"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "float.tif").write_bytes(cv2.imencode(".tiff", np.zeros((4, 4, 3), np.float32))[1].tobytes())
    with pytest.raises(ValueError, match=r"float\.tif: expected 8-bit or 16-bit samples, got float32"):
        read_image(tmp_path / "float.tif")


def test_write_image_round_trip_is_atomic_and_makes_folders(tmp_path, photo):
    target = tmp_path / "deep" / "er" / "out.png"
    write_image(target, photo)
    write_image(target, photo)  # replaces an existing file
    written = cv2.imread(str(target), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint8 and written.shape == (48, 64, 3)
    np.testing.assert_array_equal(written, bgr_levels(photo, 255, np.uint8))
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.png"]  # no temporary file left
    with pytest.raises(ValueError, match="NaN"):
        write_image(tmp_path / "nan.png", np.full((2, 2, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"out\.gif: cannot write '\.gif' files"):
        write_image(tmp_path / "out.gif", photo)
    with pytest.raises(ValueError, match=r"out\.jpg: \.jpg files hold 8-bit samples, not 16-bit"):
        write_image(tmp_path / "out.jpg", photo, bit_depth=16)


@pytest.mark.parametrize("channels,bit_depth", [(1, 16), (4, 8), (4, 16), (3, 16)])
def test_gray_alpha_and_16bit_round_trip_with_their_format(tmp_path, photo, channels, bit_depth):
    """What ``read_image_and_format`` reports, ``write_image`` gives back: cv2 sees the same levels."""
    alpha = np.linspace(0, 1, photo.shape[1], dtype=np.float32)[None, :, None].repeat(photo.shape[0], 0)
    image = {1: photo[:, :, 1], 3: photo, 4: np.concatenate([photo, alpha], axis=2)}[channels]
    write_image(tmp_path / "x.png", image, bit_depth=bit_depth)
    full_scale, dtype = (255, np.uint8) if bit_depth == 8 else (65535, np.uint16)
    levels = np.round(image * full_scale).astype(dtype)
    written = cv2.imread(str(tmp_path / "x.png"), cv2.IMREAD_UNCHANGED)
    expected = levels if channels == 1 else levels[:, :, [2, 1, 0, 3][:channels]]  # cv2 holds BGR(A)
    np.testing.assert_array_equal(written, expected)
    read, found = read_image_and_format(tmp_path / "x.png", alpha="keep")
    assert found == ImageFormat(bit_depth, channels)
    assert read.shape == photo.shape[:2] + (4 if channels == 4 else 3,)
    np.testing.assert_array_equal(read[:, :, 0], levels[:, :, 0] / np.float32(full_scale) if channels > 1
                                  else levels / np.float32(full_scale))


def test_list_images_recursive_sorted_relative(tmp_path):
    for name in ("b.PNG", "a.jpg", "sub/c.tiff", "notes.txt", "other/.hidden.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert list_images(tmp_path) == ["a.jpg", "b.PNG", "sub/c.tiff"]
    assert list_images(tmp_path, recursive=False) == ["a.jpg", "b.PNG"]
    with pytest.raises(ValueError, match="no image files"):
        list_images(tmp_path / "other")  # only a hidden file
    with pytest.raises(ValueError, match="nowhere: not a folder"):
        list_images(tmp_path / "nowhere")


def labelme_file(path, shapes, height=10, width=12):
    path.write_text(json.dumps({"version": "5.2.1", "flags": {}, "shapes": shapes, "imagePath": "x.png",
                                "imageData": None, "imageHeight": height, "imageWidth": width}))
    return path


def test_labelme_rectangle_and_polygon_against_hand_drawn_masks(tmp_path):
    shapes = [
        # corners given bottom-right first, as a user may drag them: rows 1..3, columns 2..5 inclusive
        {"label": "artifact", "points": [[5, 3], [2, 1]], "shape_type": "rectangle", "flags": {}, "group_id": None},
        # a right triangle with its legs on row 9 and column 6: filled including its outline
        {"label": "artifact", "points": [[6.2, 5.9], [6, 9], [9.4, 9]], "shape_type": "polygon", "flags": {}},
    ]
    mask = read_labelme_mask(labelme_file(tmp_path / "gt.json", shapes))
    expected = np.zeros((10, 12), bool)
    expected[1:4, 2:6] = True
    for row, first, last in ((6, 6, 6), (7, 6, 7), (8, 6, 8), (9, 6, 9)):
        expected[row, first : last + 1] = True
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(read_mask(tmp_path / "gt.json", shape=(10, 12)), expected)


def test_mask_errors_name_the_file(tmp_path):
    line = [{"label": "x", "points": [[0, 0], [3, 3]], "shape_type": "line"}]
    with pytest.raises(ValueError, match=r"line\.json: shapes\[0\] \(line\)"):
        read_mask(labelme_file(tmp_path / "line.json", line))
    with pytest.raises(ValueError, match=r"size\.json: expected a mask of size \(20, 12\)"):
        read_mask(labelme_file(tmp_path / "size.json", []), shape=(20, 12))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json: not a readable labelme JSON"):
        read_mask(tmp_path / "bad.json")


def test_png_mask_nonzero_is_artifact(tmp_path, photo):
    levels = np.zeros((48, 64), np.uint8)
    levels[10:20, 5:9] = 1  # any nonzero level counts, not only 255
    cv2.imwrite(str(tmp_path / "m.png"), levels)
    mask = read_mask(tmp_path / "m.png", shape=(48, 64))
    assert mask.dtype == bool and mask.sum() == 40 and mask[10:20, 5:9].all()
    with pytest.raises(ValueError, match=r"m\.png: expected a mask of size \(64, 48\)"):
        read_mask(tmp_path / "m.png", shape=(64, 48))



def test_png_mask_artifact_value_as_the_released_scripts_read_labels(tmp_path):
    """artifact_value=255 keeps what cv2.imread(IMREAD_GRAYSCALE) reads as 255, as the released calc_*.py do."""
    levels = np.zeros((6, 8, 3), np.uint8)
    levels[0, :4] = 255  # white
    levels[1, :4] = 128  # gray: an artifact for the nonzero rule only
    levels[2, :4] = (255, 255, 254)  # near white: cv2's grayscale PNG reading gives 254
    levels[3, :4] = (0, 0, 255)  # pure red (BGR file): gray 76
    cv2.imwrite(str(tmp_path / "m.png"), levels)
    expected = cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_GRAYSCALE) == 255
    assert expected.sum() == 4
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png", artifact_value=255), expected)
    assert read_mask(tmp_path / "m.png").sum() == 16
    with pytest.raises(ValueError, match=r"m\.png: artifact_value"):
        read_mask(tmp_path / "m.png", artifact_value=256)
