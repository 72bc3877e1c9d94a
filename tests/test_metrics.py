from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from surface_distance import metrics as oracle

from sparseg.metrics import dice, score_case, surface_distances

SPACING = (2.0, 1.0, 0.5)  # uneven, (z, y, x)


def _voxel(shape: tuple[int, int, int], *where: tuple[int, int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for index in where:
        mask[index] = True
    return mask


def test_both_empty() -> None:
    empty = np.zeros((4, 5, 6), bool)
    score = score_case(empty, empty, SPACING)
    assert (score.dsc, score.masd, score.nsd) == (1.0, 0.0, 1.0)


@pytest.mark.parametrize("gt_empty", [True, False])
def test_exactly_one_empty(gt_empty: bool) -> None:
    empty, full = np.zeros((4, 5, 6), bool), _voxel((4, 5, 6), (1, 2, 3))
    gt, pred = (empty, full) if gt_empty else (full, empty)
    score = score_case(gt, pred, SPACING)
    assert score.dsc == 0.0 and math.isnan(score.masd) and score.nsd == 0.0


def test_identical_masks() -> None:
    mask = np.zeros((6, 7, 8), bool)
    mask[1:4, 2:6, 3:5] = True
    score = score_case(mask, mask.copy(), SPACING)
    assert (score.dsc, score.masd, score.nsd) == (1.0, 0.0, 1.0)


def test_dice_by_hand() -> None:
    gt = np.zeros((3, 10, 10), bool)
    pred = np.zeros((3, 10, 10), bool)
    gt[1, 0:4, 0:5] = True  # 20 voxels
    pred[1, 2:4, 0:5] = True  # 10 voxels, all inside gt
    pred[0, 9, 9] = True  # 1 voxel outside
    assert dice(gt, pred) == pytest.approx(2 * 10 / (20 + 11))


def test_shifted_voxel_along_slices_by_hand() -> None:
    # One voxel each, 3 slices apart at 2 mm: the surfels are the 8 voxel corners.
    # From corners at z = 0 and z = 1 (grid units) to the nearest at z = 3:
    # 3 * 2 mm = 6 mm and 2 * 2 mm = 4 mm, equal areas by symmetry, so each
    # directed average is 5 mm and MASD = 5 mm. No surfel is within 2 mm (NSD 0);
    # half of them are within 4 mm.
    gt = _voxel((6, 3, 3), (0, 1, 1))
    pred = _voxel((6, 3, 3), (3, 1, 1))
    score = score_case(gt, pred, SPACING)
    assert score.dsc == 0.0
    assert score.masd == pytest.approx(5.0)
    assert score.nsd == pytest.approx(0.0)
    assert score_case(gt, pred, SPACING, tolerance_mm=4.0).nsd == pytest.approx(0.5)


def test_shifted_voxel_in_plane_by_hand() -> None:
    # 4 columns apart at 0.5 mm: corners at 2 mm and 1.5 mm, MASD 1.75 mm, all within 2 mm.
    gt = _voxel((3, 3, 8), (1, 1, 0))
    pred = _voxel((3, 3, 8), (1, 1, 4))
    score = score_case(gt, pred, SPACING)
    assert score.masd == pytest.approx(1.75)
    assert score.nsd == pytest.approx(1.0)
    assert score_case(gt, pred, SPACING, tolerance_mm=1.75).nsd == pytest.approx(0.5)


def test_spacing_order_matters() -> None:
    gt = _voxel((6, 3, 3), (0, 1, 1))
    pred = _voxel((6, 3, 3), (3, 1, 1))
    assert score_case(gt, pred, (1.0, 1.0, 2.0)).masd == pytest.approx(2.5)


def _oracle(gt: np.ndarray, pred: np.ndarray, spacing: tuple[float, float, float], tolerance: float):
    """DeepMind's surface-distance with the challenge's empty-mask rules."""
    if not gt.any() and not pred.any():
        return 1.0, 0.0, 1.0
    if not gt.any() or not pred.any():
        return 0.0, math.nan, 0.0
    distances = oracle.compute_surface_distances(gt, pred, spacing)
    return (
        oracle.compute_dice_coefficient(gt, pred),
        float(np.mean(oracle.compute_average_surface_distance(distances))),
        oracle.compute_surface_dice_at_tolerance(distances, tolerance),
    )


def _random_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    shape = tuple(int(v) for v in rng.integers(2, 28, 3))
    kind = rng.integers(5)
    def one() -> np.ndarray:
        if kind == 0:  # sparse specks, often a single voxel or empty
            return rng.random(shape) < rng.uniform(0.0, 0.01)
        density = rng.uniform(0.002, 0.05)
        return ndimage.binary_dilation(rng.random(shape) < density, iterations=int(rng.integers(0, 3)))
    gt = one()
    if kind == 1:  # prediction = perturbed ground truth
        pred = ndimage.binary_dilation(gt) if rng.random() < 0.5 else ndimage.binary_erosion(gt)
        pred ^= rng.random(shape) < 0.01
    else:
        pred = one()
    spacing = tuple(float(v) for v in rng.choice([0.4, 0.5, 0.7, 0.9375, 1.0, 1.2, 2.0, 3.0, 4.5, 6.0], 3))
    return gt, pred, spacing


def test_equal_to_the_oracle_on_random_pairs() -> None:
    rng = np.random.default_rng(2023)
    kinds = {"both_empty": 0, "one_empty": 0, "scored": 0}
    for _ in range(300):
        gt, pred, spacing = _random_pair(rng)
        tolerance = float(rng.choice([1.0, 2.0, 3.0]))
        expected = _oracle(gt, pred, spacing, tolerance)
        got = score_case(gt, pred, spacing, tolerance)
        for value, reference in zip((got.dsc, got.masd, got.nsd), expected):
            if math.isnan(reference):
                assert math.isnan(value)
            else:
                assert value == pytest.approx(reference, abs=1e-6)
        empty = (not gt.any()) + (not pred.any())
        key = ("scored", "one_empty", "both_empty")[empty]
        kinds[key] += 1
    assert kinds["scored"] >= 200 and kinds["one_empty"] > 0 and kinds["both_empty"] > 0, kinds


def test_distances_match_the_oracle_surfel_by_surfel() -> None:
    rng = np.random.default_rng(5)
    gt = ndimage.binary_dilation(rng.random((12, 30, 30)) < 0.01, iterations=2)
    pred = ndimage.binary_dilation(rng.random((12, 30, 30)) < 0.01, iterations=2)
    ours = surface_distances(gt, pred, (3.0, 0.9, 0.9))
    theirs = oracle.compute_surface_distances(gt, pred, (3.0, 0.9, 0.9))
    np.testing.assert_allclose(np.sort(ours.gt_to_pred), theirs["distances_gt_to_pred"], atol=1e-9)
    np.testing.assert_allclose(np.sort(ours.pred_to_gt), theirs["distances_pred_to_gt"], atol=1e-9)
    assert ours.areas_gt.sum() == pytest.approx(theirs["surfel_areas_gt"].sum())


def test_rejects_non_boolean_masks() -> None:
    with pytest.raises(TypeError):
        score_case(np.zeros((2, 2, 2), np.uint8), np.zeros((2, 2, 2), bool), SPACING)


@settings(max_examples=40, deadline=None)
@given(shape=st.tuples(st.integers(1, 8), st.integers(2, 16), st.integers(2, 16)),
       spacing=st.tuples(st.floats(0.5, 6.0), st.floats(0.3, 2.0), st.floats(0.3, 2.0)),
       density=st.floats(0.0, 0.5), seed=st.integers(0, 2**16))
def test_scores_equal_the_oracle_on_any_masks(shape, spacing, density, seed) -> None:
    rng = np.random.default_rng(seed)
    gt, pred = rng.random(shape) < density, rng.random(shape) < density
    ours = score_case(gt, pred, spacing, tolerance_mm=2.0)
    expected = _oracle(gt, pred, spacing, 2.0)
    for got, want in zip((ours.dsc, ours.masd, ours.nsd), expected):
        assert (math.isnan(got) and math.isnan(want)) or abs(got - want) <= 1e-6
