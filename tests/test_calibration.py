"""Eq. 15 calibration on label and D maps drawn with known per-class distributions, and the table file formats.

Each calibrated class k has D uniform on [a_k, b_k] (stratified: evenly spaced values in random pixel order), so
its A_k = a_k + 0.15 (b_k - a_k) in closed form, up to (b_k - a_k) / n for n pixels; the empirical reference is
the element of rank ceil(0.85 n) of the class's D values in descending order (eq. 15 read as in
desra_jax.detection.calibration).
"""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from desra_jax.data.ade20k import ade20k_class_names
from desra_jax.detection import adjustment, calibration
from desra_jax.detection import (
    ClassAdjustment,
    accumulate,
    calibrate_class_adjustment,
    class_adjustment_from_histograms,
    init_histograms,
    load_class_adjustment,
    save_class_adjustment,
)

NAMES = ade20k_class_names()
WALL, BUILDING, SKY, TREE, ROAD = (NAMES.index(n) for n in ("wall", "building", "sky", "tree", "road"))
IGNORE = 255
SHAPE = (4, 48, 64)  # (N, H, W): 12288 pixels
#: class -> (uniform D range, share of the pixels, binned A expected). Tree and building give the paper's published
#: A_tree = 0.75 and A_building = 0.80 (appendix A.2); wall sits in the lowest authors' bin (A = 0.05).
UNIFORM = {TREE: ((0.70, 0.90), 0.3, 0.75), BUILDING: ((0.76, 0.96), 0.2, 0.80), WALL: ((0.0, 0.2), 0.1, 0.05),
           ROAD: ((0.5, 1.0), 0.15, 0.60)}
#: sky: 90 % of its pixels flat (D = 1 exactly, as two flat patches give), the rest uniform on [0.2, 1]: A = 1.
SKY_SHARE, SKY_FLAT = 0.15, 0.9
IGNORE_SHARE = 0.1  # labelled 255 with D = 0: must not count anywhere


def drawn_maps(seed=0):
    """(d (N, H, W) float32, labels (N, H, W) int32) with the distributions above in random pixel order."""
    rng = np.random.default_rng(seed)
    total = int(np.prod(SHAPE))
    d_parts, label_parts = [], []

    def add(label, values):
        d_parts.append(np.asarray(values, np.float32))
        label_parts.append(np.full(len(values), label, np.int32))

    for label, ((low, high), share, _) in UNIFORM.items():
        n = int(share * total)
        add(label, low + (high - low) * (np.arange(n) + 0.5) / n)
    n_sky = int(SKY_SHARE * total)
    n_flat = int(SKY_FLAT * n_sky)
    add(SKY, np.concatenate([np.ones(n_flat), 0.2 + 0.8 * (np.arange(n_sky - n_flat) + 0.5) / (n_sky - n_flat)]))
    add(IGNORE, np.zeros(total - sum(len(p) for p in d_parts)))
    order = rng.permutation(total)
    return (np.concatenate(d_parts)[order].reshape(SHAPE), np.concatenate(label_parts)[order].reshape(SHAPE))


def descending_rank_reference(values, percentile=85):
    """Eq. 15 from all values: the element of rank ceil(P n / 100) in descending order."""
    n = len(values)
    return np.sort(values)[::-1][(percentile * n + 99) // 100 - 1]


@pytest.fixture(scope="module")
def maps():
    return drawn_maps()


@pytest.fixture(scope="module")
def calibrated(maps):
    d, labels = maps
    return calibrate_class_adjustment([(d[i : i + 1], labels[i : i + 1]) for i in range(SHAPE[0])])


def test_calibration_gives_back_the_known_percentiles(maps, calibrated):
    d, labels = maps
    resolution = 1 / calibration.DEFAULT_NUM_BINS
    assert calibrated.resolution == resolution
    for label, ((low, high), _, binned) in UNIFORM.items():
        values = d[labels == label]
        closed_form = low + 0.15 * (high - low)
        reference = descending_rank_reference(values)
        assert abs(reference - closed_form) <= (high - low) / len(values)
        # exact to the histogram resolution: the true percentile lies in [A exact, A exact + resolution)
        assert calibrated.exact[label] <= reference < calibrated.exact[label] + resolution, NAMES[label]
        assert (values >= calibrated.exact[label]).mean() >= 0.85
        assert calibrated.binned[label] == pytest.approx(binned, abs=1e-6), NAMES[label]
        assert calibrated.bins[label] == round(20 * (1 - binned))
        assert calibrated.pixels[label] == len(values)
    assert calibrated.exact[SKY] == 1 - resolution and calibrated.bins[SKY] == 0  # the flat 90 %: D = 1
    assert calibrated.pixels[SKY] == (labels == SKY).sum()
    assert calibrated.pixels.sum() == (labels != IGNORE).sum()  # the ignore label is not counted


def test_binned_value_is_the_upper_edge_of_the_twentieth_holding_the_percentile(calibrated):
    seen = calibrated.seen
    upper_edges = (np.floor(20 * calibrated.exact[seen]) + 1) / 20
    np.testing.assert_allclose(calibrated.binned[seen], np.minimum(upper_edges, 1.0), atol=1e-6)
    assert np.all(calibrated.binned >= calibrated.exact - 1e-6)


def test_unseen_classes_get_one_and_are_marked(calibrated):
    seen = {WALL, BUILDING, SKY, TREE, ROAD}
    assert set(np.flatnonzero(calibrated.seen)) == seen
    unseen = ~calibrated.seen
    assert unseen.sum() == 150 - len(seen)
    assert np.all(calibrated.exact[unseen] == 1) and np.all(calibrated.binned[unseen] == 1)
    assert np.all(calibrated.bins[unseen] == 0) and np.all(calibrated.pixels[unseen] == 0)


def test_streaming_over_batches_equals_all_at_once(maps, monkeypatch):
    d, labels = maps
    at_once = accumulate(init_histograms(150), jnp.asarray(d), jnp.asarray(labels))
    streamed = init_histograms(150)
    for i in range(SHAPE[0]):
        streamed = accumulate(streamed, jnp.asarray(d[i : i + 1]), jnp.asarray(labels[i : i + 1]))
    np.testing.assert_array_equal(np.asarray(streamed), np.asarray(at_once))
    # the same after flushes of the device counts to the host total (forced here after every 2 images)
    monkeypatch.setattr(calibration, "_DEVICE_COUNT_LIMIT", 2 * SHAPE[1] * SHAPE[2])
    flushed = calibrate_class_adjustment([(d[i : i + 1], labels[i : i + 1]) for i in range(SHAPE[0])])
    expected = class_adjustment_from_histograms(at_once)
    np.testing.assert_array_equal(flushed.pixels, expected.pixels)
    np.testing.assert_array_equal(flushed.exact, expected.exact)
    np.testing.assert_array_equal(flushed.bins, expected.bins)


def test_histogram_bins_clip_and_skip_bad_pixels():
    d = jnp.array([[[0.0, 0.49999, 0.5, 1.0, 1.2, -0.3, jnp.nan, 0.7]]])
    labels = jnp.array([[[0, 0, 0, 0, 0, 0, 0, 3]]])  # class 3 is outside K = 2: not counted
    hist = np.asarray(accumulate(init_histograms(2, 20), d, labels))
    expected = np.zeros((2, 20), int)
    np.add.at(expected[0], [0, 9, 10, 19, 19, 0], 1)  # 1.2 -> 1 (top bin), -0.3 -> 0, NaN dropped
    np.testing.assert_array_equal(hist, expected)


def test_percentile_convention_on_a_small_hand_count():
    # 20 pixels of one class, D = 0.025, 0.075, ..., 0.975 (one per authors' bin). 85 % of 20 = 17 pixels must
    # lie at or above A: the 17th largest is 0.175 -> bin [0.15, 0.20) -> b = 16, A binned = 0.20.
    hist = np.ones((1, 20), np.int64)
    result = class_adjustment_from_histograms(hist, names=["only"])
    assert result.exact[0] == pytest.approx(0.15) and result.bins[0] == 16
    assert result.binned[0] == pytest.approx(0.20)
    with pytest.raises(ValueError, match="multiple of 20"):
        init_histograms(150, 4096)


def test_json_round_trip(calibrated, tmp_path):
    path = tmp_path / "adjustment.json"
    save_class_adjustment(path, calibrated)
    binned, names = load_class_adjustment(path)
    exact, _ = load_class_adjustment(path, exact=True)
    assert names == NAMES
    np.testing.assert_array_equal(binned, calibrated.binned)
    np.testing.assert_allclose(exact, calibrated.exact, rtol=1e-7)
    table = json.loads(path.read_text())
    tree = table["classes"][TREE]
    assert (tree["name"], tree["bin"], tree["A_binned"], tree["seen"]) == ("tree", 5, 0.75, True)
    assert tree["pixels"] == calibrated.pixels[TREE] and table["percentile"] == 85
    assert sum(not c["seen"] for c in table["classes"]) == 145


def test_authors_text_format_parses_the_bundled_table():
    published, names = load_class_adjustment()
    authors, authors_names = load_class_adjustment(adjustment.ADE20K_ADJUSTMENT_AUTHORS_TXT)
    assert authors_names == names
    np.testing.assert_array_equal(authors, published)
    assert (authors[SKY], authors[TREE], authors[BUILDING]) == (1.0, 0.75, 0.80)  # the paper's examples


def test_authors_format_round_trip_in_any_order(tmp_path, calibrated):
    lines = [f"{name}--{b}" for name, b in zip(NAMES, calibrated.bins)]
    path = tmp_path / "table.txt"
    path.write_text("\n".join(reversed(lines)) + "\n")
    loaded, _ = load_class_adjustment(path)
    np.testing.assert_array_equal(loaded, calibrated.binned)
    path.write_text("\n".join(lines[1:]))
    with pytest.raises(ValueError, match=r"table\.txt: no bin for 1 ADE20K class\(es\): wall"):
        load_class_adjustment(path)
    path.write_text("\n".join(lines[:-1] + ["windowpain--1"]))
    with pytest.raises(ValueError, match=r"table\.txt: line 150: 'windowpain' is not an ADE20K class name"):
        load_class_adjustment(path)
    with pytest.raises(ValueError, match=r"table\.txt: exact=True needs our JSON"):
        load_class_adjustment(path, exact=True)


def test_json_with_a_zero_exact_value_is_refused_for_exact_use(tmp_path):
    table = ClassAdjustment(names=("a", "b"), exact=np.array([0.0, 0.5]), bins=np.array([19, 9]),
                            pixels=np.array([10, 10]), percentile=85.0, resolution=1 / 20)
    path = tmp_path / "zero.json"
    save_class_adjustment(path, table)
    np.testing.assert_allclose(load_class_adjustment(path)[0], [0.05, 0.55])
    with pytest.raises(ValueError, match=r"zero\.json: expected A in \(0, 1\] for every class, got 0.0 \(e\.g\. 'a'\)"):
        load_class_adjustment(path, exact=True)
