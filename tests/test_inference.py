"""Tiled whole-image SR: the tiles cover the image, and tiling leaves no seams."""

import jax
import numpy as np
import pytest

from desra_jax import inference
from desra_jax.inference import tile_spans, upscale
from desra_jax.models import RRDBNet, SRVGGNetCompact
from tests.conftest import photo_crop


@pytest.mark.parametrize("length,tile,overlap", [(100, 32, 8), (97, 40, 30), (64, 64, 8), (20, 64, 8), (33, 32, 2),
                                                 (512, 256, 32), (1000, 256, 32), (2048, 256, 32), (260, 256, 32)])
def test_tile_spans_partition_the_axis_with_the_overlap(length, tile, overlap):
    spans = tile_spans(length, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(stop - start == min(tile, length) for start, stop, _, _ in spans)
    kept = np.concatenate([np.arange(keep, keep_stop) for _, _, keep, keep_stop in spans])
    np.testing.assert_array_equal(kept, np.arange(length))
    for (start, stop, _, cut), (next_start, _, _, _) in zip(spans, spans[1:]):
        assert stop - next_start >= overlap  # adjacent tiles share at least `overlap` pixels
        assert min(cut - next_start, stop - cut) >= overlap // 2  # kept pixels have that context


def test_tile_spans_refuse_an_overlap_as_large_as_the_tile():
    with pytest.raises(ValueError, match="tile"):
        tile_spans(100, 16, 16)


@pytest.fixture(scope="module")
def tiny_generator():
    model = RRDBNet(scale=2, num_feat=8, num_block=1, num_grow_ch=4)
    params = model.init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.float32))["params"]
    return model, params


def test_tiles_wider_than_the_receptive_field_give_the_whole_image_result(tiny_generator):
    """The x2 model's receptive radius: pixel-unshuffle 2 px + 17 convs at half resolution (2 px each) + 2 at
    full resolution -> under 40 input pixels, so an overlap of 80 leaves every kept pixel its whole context."""
    model, params = tiny_generator
    lr = photo_crop("astronaut", (140, 124), 60, 180)[0]
    whole = np.asarray(model.apply({"params": params}, lr[None]))[0]
    tiled = upscale(model, params, lr, tile=100, overlap=80, batch_size=3)
    assert tiled.shape == whole.shape == (280, 248, 3)
    np.testing.assert_allclose(tiled, whole, atol=2e-5)


def test_small_overlaps_leave_no_visible_seam(tiny_generator):
    """With a small overlap the tiles differ from the whole image only near the cuts, far below a grey level."""
    model, params = tiny_generator
    lr = photo_crop("coffee", (96, 96), 100, 100)
    whole = np.asarray(model.apply({"params": params}, lr))
    tiled = upscale(model, params, lr, tile=48, overlap=16, batch_size=8)
    assert np.abs(tiled - whole).max() < 1 / 255
    assert np.abs(tiled - whole).max() > 0  # the overlap is within the receptive field: not trivially equal


def test_an_image_smaller_than_a_tile_runs_whole_and_batches_keep_images_apart(tiny_generator):
    model, params = tiny_generator
    lr = np.concatenate([photo_crop("astronaut", (40, 56), 10, 10), photo_crop("chelsea", (40, 56), 50, 80)])
    whole = np.asarray(model.apply({"params": params}, lr))
    np.testing.assert_allclose(upscale(model, params, lr, tile=64, overlap=8, batch_size=1), whole, atol=2e-5)


def test_a_call_holds_as_many_tiles_as_fit_its_memory_and_the_result_does_not_change(tiny_generator):
    """`tile_bytes` is one tile's share of the compiled call, which grows in proportion to the tiles it holds."""
    model, params = tiny_generator
    variables = {"params": params}
    each = inference.tile_bytes(model, variables, (48, 48, 3))
    three = inference._apply.lower(model, variables, jax.ShapeDtypeStruct((3, 48, 48, 3), np.float32)).compile()
    stats = three.memory_analysis()
    assert 2.7 * each <= stats.temp_size_in_bytes + stats.output_size_in_bytes <= 3.3 * each
    assert inference.tiles_per_call(model, variables, (48, 48, 3), 9, 8, 1, int(2.5 * each)) == 2
    assert inference.tiles_per_call(model, variables, (48, 48, 3), 9, 8, 1, 0) == 1  # one tile, whatever it takes
    assert inference.tiles_per_call(model, variables, (48, 48, 3), 9, 8, 2, int(2.5 * each)) == 4  # 2 per device
    assert inference.tiles_per_call(model, variables, (48, 48, 3), 3, 8, 1, 10 * each) == 3  # no more than there are
    lr = photo_crop("coffee", (120, 120), 100, 100)[0]
    roomy = upscale(model, params, lr, tile=48, overlap=16, batch_size=8, max_batch_bytes=2**40)
    np.testing.assert_allclose(upscale(model, params, lr, tile=48, overlap=16, batch_size=8, max_batch_bytes=1),
                               roomy, rtol=0, atol=1e-6)


def test_upscale_names_a_bad_shape(tiny_generator):
    model, params = tiny_generator
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        upscale(model, params, np.zeros((8, 8), np.float32))


def test_sizes_in_one_bucket_compile_once_and_keep_their_results_away_from_the_padding():
    """A compact x2 network of four 3x3 convolutions sees 4 LR pixels around each pixel: padding beyond the bottom
    and right borders leaves every output pixel further than that from them as the unpadded image gives it."""
    model = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=2, act_type="relu")
    params = model.init(jax.random.key(1), np.zeros((1, 8, 8, 3), np.float32))["params"]
    images = [photo_crop("astronaut", (40, 52), 10, 10)[0], photo_crop("chelsea", (45, 90), 20, 30)[0]]
    assert {inference.bucket_length(side, 96, 48) for image in images for side in image.shape[:2]} == {48, 96}
    before = inference._apply._cache_size()
    for image in images:
        height, width = image.shape[:2]
        got = upscale(model, params, image, tile=96, overlap=8, bucket=48)
        whole = np.asarray(model.apply({"params": params}, image[None]))[0]
        assert got.shape == whole.shape == (2 * height, 2 * width, 3)
        radius = 4
        np.testing.assert_allclose(got[: 2 * (height - radius), : 2 * (width - radius)],
                                   whole[: 2 * (height - radius), : 2 * (width - radius)], rtol=0, atol=1e-5)
    assert inference._apply._cache_size() - before == 1  # one (1, 48, 96, 3) program for both sizes


def test_buckets_never_pad_past_a_tile_nor_a_side_that_fills_one():
    assert [inference.bucket_length(n, 256, 64) for n in (1, 64, 65, 200, 250, 256, 300)] == [64, 64, 128, 256, 256,
                                                                                               256, 300]
    assert inference.bucket_length(65, 256, None) == 65
