"""DSC, MASD and NSD exactly as the BONBID-HIE challenge scores them.

Pure numpy functions of boolean (z, y, x) masks and `spacing_mm` in the same
(z, y, x) order. The challenge uses DeepMind's surface-distance library:
surfels on the corners of the voxel grid, each weighted by the area its
2x2x2 neighbour code has under marching cubes, and Euclidean distances (with
the voxel spacing) from each surfel to the nearest surfel of the other mask.
Surface distances are computed once and MASD and NSD derived from them.

This module reproduces that definition with the library's own surfel-area
table, but finds nearest surfels with a k-d tree over the surfel points
instead of two Euclidean distance transforms over the whole bounding box.
The distances are recomputed from the integer offsets the same way
`scipy.ndimage.distance_transform_edt` computes them, so the numbers are
those of the library (tests compare them on hundreds of random pairs), at a
fraction of the time for the small, scattered lesions of this dataset.

Empty-mask rules of the challenge:

* ground truth and prediction both empty: DSC 1, MASD 0, NSD 1;
* exactly one empty: DSC 0, MASD NaN (left out of means), NSD 0;
* otherwise: DSC = 2|P & G| / (|P| + |G|), MASD = mean of the two directed
  average surface distances, NSD = surface Dice at `tolerance_mm`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from surface_distance import lookup_tables

from sparseg.config import EvaluationConfig


@functools.lru_cache(maxsize=32)
def _surfel_area_table(spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """Area (mm^2) of the surface in each of the 256 neighbour codes, from surface-distance."""
    return lookup_tables.create_table_neighbour_code_to_surface_area(spacing_mm)


@dataclass(frozen=True)
class SurfaceDistances:
    """Distances (mm) from each surfel of one mask to the other surface, and surfel areas (mm^2)."""

    gt_to_pred: np.ndarray
    pred_to_gt: np.ndarray
    areas_gt: np.ndarray
    areas_pred: np.ndarray


@dataclass(frozen=True)
class CaseScore:
    dsc: float
    masd: float
    nsd: float


def _check(gt: np.ndarray, pred: np.ndarray, spacing_mm: tuple[float, float, float]) -> None:
    if gt.dtype != bool or pred.dtype != bool:
        raise TypeError(f"masks must be boolean, got {gt.dtype} and {pred.dtype}")
    if gt.ndim != 3 or gt.shape != pred.shape:
        raise ValueError(f"masks must be 3D of one shape, got {gt.shape} and {pred.shape}")
    if len(spacing_mm) != 3:
        raise ValueError(f"spacing_mm must have 3 elements (z, y, x), got {spacing_mm}")


def dice(gt: np.ndarray, pred: np.ndarray) -> float:
    """Dice similarity coefficient; 1.0 when both masks are empty (challenge rule)."""
    total = int(np.count_nonzero(gt)) + int(np.count_nonzero(pred))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(gt & pred)) / total


def lesion_burden(lesion: np.ndarray, adc: np.ndarray) -> float:
    """Lesion voxels over brain voxels (non-zero ADC): the quantity of the burden strata; 0 without brain."""
    brain = int(np.count_nonzero(adc))
    return float(np.count_nonzero(lesion)) / brain if brain else 0.0


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Slices of the smallest (z, y, x) box holding every True voxel, from two projections."""
    in_plane = mask.any(axis=0)
    present = (
        np.flatnonzero(mask.any(axis=(1, 2))),
        np.flatnonzero(in_plane.any(axis=1)),
        np.flatnonzero(in_plane.any(axis=0)),
    )
    return tuple(slice(int(p[0]), int(p[-1]) + 1) for p in present)


def _neighbour_codes(cropped: np.ndarray) -> np.ndarray:
    """2x2x2 neighbour code of every grid corner, bits as in surface-distance's kernel.

    Shape: (Z, Y, X) bool -> (Z+1, Y+1, X+1) uint8. The voxel at offset (a, b, c)
    from a corner contributes bit 7 - (4a + 2b + c), built one axis at a time.
    """
    padded = np.pad(cropped, 1).view(np.uint8)
    codes = (padded[:, :, :-1] << 1) | padded[:, :, 1:]
    codes = (codes[:, :-1] << 2) | codes[:, 1:]
    return (codes[:-1] << 4) | codes[1:]


def _surfels(codes: np.ndarray, areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer corner coordinates (N, 3) of the surface corners and their areas (N,)."""
    border = (codes != 0) & (codes != 255)
    points = np.argwhere(border)
    return points, areas[codes[border]]


def _nearest_distances(points: np.ndarray, targets: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance (mm) from each point to its nearest target, computed like scipy's EDT."""
    if len(targets) == 0:
        return np.full(len(points), np.inf)
    tree = cKDTree(targets * spacing, balanced_tree=False, compact_nodes=False)
    _, nearest = tree.query(points * spacing, k=1)
    offsets = (targets[nearest] - points).astype(np.float64) * spacing
    return np.sqrt(np.add.reduce(offsets * offsets, axis=1))


def surface_distances(gt: np.ndarray, pred: np.ndarray, spacing_mm: tuple[float, float, float]) -> SurfaceDistances:
    """Surfel distances in both directions and surfel areas, as surface-distance computes them."""
    _check(gt, pred, spacing_mm)
    union = gt | pred
    if not union.any():
        empty = np.zeros(0)
        return SurfaceDistances(empty, empty, empty, empty)
    # Crop to the union's bounding box: distances and codes are translation-invariant.
    box = _bounding_box(union)
    return _cropped_surface_distances(gt[box], pred[box], spacing_mm)


def _cropped_surface_distances(
    gt: np.ndarray, pred: np.ndarray, spacing_mm: tuple[float, float, float]
) -> SurfaceDistances:
    spacing = tuple(float(s) for s in spacing_mm)
    table = _surfel_area_table(spacing)
    gt_points, areas_gt = _surfels(_neighbour_codes(gt), table)
    pred_points, areas_pred = _surfels(_neighbour_codes(pred), table)
    spacing_arr = np.asarray(spacing)
    return SurfaceDistances(
        gt_to_pred=_nearest_distances(gt_points, pred_points, spacing_arr),
        pred_to_gt=_nearest_distances(pred_points, gt_points, spacing_arr),
        areas_gt=areas_gt,
        areas_pred=areas_pred,
    )


def mean_average_surface_distance(distances: SurfaceDistances) -> float:
    """Mean of the two area-weighted directed average surface distances (mm)."""
    gt_to_pred = np.sum(distances.gt_to_pred * distances.areas_gt) / np.sum(distances.areas_gt)
    pred_to_gt = np.sum(distances.pred_to_gt * distances.areas_pred) / np.sum(distances.areas_pred)
    return float((gt_to_pred + pred_to_gt) / 2.0)


def normalized_surface_dice(distances: SurfaceDistances, tolerance_mm: float) -> float:
    """Surface Dice: area of both surfaces within `tolerance_mm` of the other, over the total area."""
    overlap = np.sum(distances.areas_gt[distances.gt_to_pred <= tolerance_mm]) + np.sum(
        distances.areas_pred[distances.pred_to_gt <= tolerance_mm]
    )
    return float(overlap / (np.sum(distances.areas_gt) + np.sum(distances.areas_pred)))


def score_case(
    gt: np.ndarray,
    pred: np.ndarray,
    spacing_mm: tuple[float, float, float],
    tolerance_mm: float = EvaluationConfig.nsd_tolerance_mm,
) -> CaseScore:
    """DSC, MASD and NSD of one case with the challenge's empty-mask rules (module docstring)."""
    _check(gt, pred, spacing_mm)
    union = gt | pred
    if not union.any():
        return CaseScore(dsc=1.0, masd=0.0, nsd=1.0)
    # Everything below is computed on the union's bounding box: nothing lies outside it.
    box = _bounding_box(union)
    gt, pred = gt[box], pred[box]
    if not gt.any() or not pred.any():
        return CaseScore(dsc=0.0, masd=math.nan, nsd=0.0)
    distances = _cropped_surface_distances(gt, pred, spacing_mm)
    return CaseScore(
        dsc=dice(gt, pred),
        masd=mean_average_surface_distance(distances),
        nsd=normalized_surface_dice(distances, tolerance_mm),
    )
