"""Detection metrics (DeSRA eq. 11-13, section 4.3) against counts worked out by hand on small drawn masks."""

import math

import numpy as np
import pytest

from desra_jax.metrics.detection import (
    evaluate_detection,
    iou,
    mean_iou,
    region_counts,
    removal_addition,
    removal_addition_rates,
)


def boxes(shape, *rects):
    """A boolean mask with the given (top, left, height, width) rectangles set."""
    mask = np.zeros(shape, dtype=bool)
    for top, left, h, w in rects:
        mask[top : top + h, left : left + w] = True
    return mask


def test_iou_partial_overlap_and_empty_cases():
    gt = boxes((10, 10), (0, 0, 4, 4))  # 16 px
    pred = boxes((10, 10), (2, 2, 4, 4))  # 16 px, overlap 2x2 = 4
    assert iou(pred, gt) == pytest.approx(4 / 28)
    assert iou(gt, gt) == 1.0
    empty = np.zeros((10, 10), bool)
    assert iou(empty, gt) == 0.0
    # an empty union: 0 / 0 in the released calc_iou.py, which then sums it into the mean
    assert math.isnan(iou(empty, empty)) and math.isnan(mean_iou([pred, empty], [gt, empty]))
    assert iou(empty, empty, convention="paper") == 1.0
    assert mean_iou([pred, empty], [gt, empty], convention="paper") == pytest.approx((4 / 28 + 1.0) / 2)
    assert mean_iou([pred], [gt]) == mean_iou([pred], [gt], convention="paper")
    with pytest.raises(ValueError, match="convention"):
        iou(pred, gt, convention="strict")


def test_region_counts_with_the_p_threshold_edge():
    gt = boxes((12, 20), (0, 0, 4, 4), (6, 10, 4, 6))
    pred = boxes(
        (12, 20),
        (0, 2, 4, 4),  # 16 px, 8 inside gt -> exactly p = 0.5: correct at >= p (released), not at > p (paper)
        (6, 9, 4, 4),  # 16 px, 12 inside the second gt box -> correct; covers 12 / 24 of it -> exactly p
        (0, 15, 2, 2),  # false alarm
    )
    # the first gt box is covered 8 / 16 and the second 12 / 24: both exactly p
    assert region_counts(pred, gt, convention="paper") == {"n_s": 3, "n_t": 1, "n_g": 2, "n_r": 0}
    assert region_counts(pred, gt) == {"n_s": 3, "n_t": 2, "n_g": 2, "n_r": 2}
    assert region_counts(pred, gt, p=0.49, convention="paper") == {"n_s": 3, "n_t": 2, "n_g": 2, "n_r": 2}
    assert region_counts(pred, gt, p=0.51) == region_counts(pred, gt, p=0.51, convention="paper") == {
        "n_s": 3, "n_t": 1, "n_g": 2, "n_r": 0}


def test_evaluate_detection_conventions_differ_only_at_the_edges():
    gt = boxes((12, 20), (0, 0, 4, 4), (6, 10, 4, 6))
    pred = boxes((12, 20), (0, 2, 4, 4), (6, 9, 4, 4), (0, 15, 2, 2))  # as above: every overlap exactly 0.5
    empty = np.zeros((5, 6), bool)
    released = evaluate_detection([pred, empty], [gt, empty])
    paper = evaluate_detection([pred, empty], [gt, empty], convention="paper")
    assert (released["precision"], released["recall"]) == pytest.approx((2 / 3, 1.0))
    assert (paper["precision"], paper["recall"]) == pytest.approx((1 / 3, 0.0))
    iou_first = 20 / (36 + 40 - 20)  # 36 predicted, 40 labelled pixels, 8 + 12 shared
    assert math.isnan(released["mean_iou"]) and paper["mean_iou"] == pytest.approx((iou_first + 1.0) / 2)
    assert released["per_image"][0]["iou"] == paper["per_image"][0]["iou"] == pytest.approx(iou_first)


def test_regions_are_eight_connected():
    diagonal = np.eye(5, dtype=bool)  # one region under 8-connectivity, five under 4-connectivity
    counts = region_counts(diagonal, diagonal)
    assert counts == {"n_s": 1, "n_t": 1, "n_g": 1, "n_r": 1}


def test_evaluate_detection_counts_regions_over_the_data_set():
    gt_a = boxes((8, 8), (0, 0, 4, 4))
    pred_a = boxes((8, 8), (0, 0, 4, 3), (6, 6, 2, 2))  # one correct, one false alarm; gt found (12/16)
    gt_b = boxes((6, 10), (0, 0, 2, 2), (3, 5, 3, 5))  # images of another size
    pred_b = boxes((6, 10), (3, 5, 3, 5))  # one correct; finds 1 of 2 gt regions
    result = evaluate_detection([pred_a, pred_b], [gt_a, gt_b])
    assert (result["n_s"], result["n_t"], result["n_g"], result["n_r"]) == (3, 2, 3, 2)
    assert result["precision"] == pytest.approx(2 / 3)  # region totals: (1 + 1) / (2 + 1), not mean(1/2, 1)
    assert result["recall"] == pytest.approx(2 / 3)
    iou_a, iou_b = 12 / 20, 15 / 19
    assert result["mean_iou"] == pytest.approx((iou_a + iou_b) / 2)
    first, second = result["per_image"]
    assert (first["precision"], first["recall"], first["iou"]) == pytest.approx((0.5, 1.0, iou_a))
    assert (second["precision"], second["recall"], second["iou"]) == pytest.approx((1.0, 0.5, iou_b))


def test_ratios_without_regions_are_nan_and_bad_shapes_are_refused():
    empty = np.zeros((4, 4), bool)
    result = evaluate_detection([empty], [boxes((4, 4), (0, 0, 2, 2))])
    assert math.isnan(result["precision"]) and result["recall"] == 0.0
    with pytest.raises(ValueError, match=r"\(4, 4\) and \(4, 5\)"):
        iou(empty, np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="as many"):
        evaluate_detection([empty], [])


def test_removal_and_addition_follow_section_4_3():
    before = boxes((10, 20), (0, 0, 3, 3), (0, 6, 3, 3), (6, 0, 3, 3), (6, 10, 3, 3))
    after = boxes(
        (10, 20),
        (1, 1, 1, 1),  # shrunk inside the first region: neither removed nor added
        (6, 11, 3, 3),  # shifted by one pixel: the fourth region is kept, 3 of 9 pixels are new -> added
        (0, 15, 2, 2),  # a new artifact
    )
    counts = removal_addition(before, after)
    assert counts == {"n_before": 4, "n_removed": 2, "n_after": 3, "n_added": 2}
    assert removal_addition(before, after, new_fraction=0.5)["n_added"] == 1  # only the wholly new one

    clean = np.zeros((10, 20), bool)
    rates = removal_addition_rates([before, before], [after, clean])
    assert rates["removal_rate"] == pytest.approx((2 + 4) / 8)
    assert rates["addition_rate"] == pytest.approx(2 / 3)
    assert [image["n_removed"] for image in rates["per_image"]] == [2, 4]
    assert removal_addition_rates([before], [clean])["addition_rate"] == 0.0
