"""Lesion by lesion: how many lesions a mask finds, misses and invents, by lesion volume.

HIE lesions are often many and tiny, so one DSC can hide a missed lesion or
ten false ones. Lesions are the 26-connected components of each mask
(`scipy.ndimage.label`, the labelling SciPy already gives this project; the
matching rule below is a few lines of counting, so neither `panoptica` nor
`connected-components-3d` is added as a dependency: panoptica matches
instances one-to-one by IoU, which would call a lesion split in two half
missed, and cc3d only labels, faster, what SciPy labels here in milliseconds).

Matching is by any overlap, the rule of lesion-wise F1 in ISLES'22:

* a true lesion is *detected* when at least one of its voxels is predicted,
  else *missed*;
* a predicted lesion is *false* when none of its voxels is a true lesion's;
* sensitivity = detected / true lesions; precision = (predicted - false) /
  predicted lesions; F1 = detected / (detected + (missed + false) / 2).
  Any overlap lets one predicted lesion detect many true ones (a mask of the
  whole brain finds every lesion: F1 1 beside a DSC near 0), so each case also
  counts its *merged* true lesions: those whose predicted lesion touches
  another true lesion too.
  Each is NaN where its denominator is 0 (no lesion to find, or none
  predicted), and cohort figures pool the counts of all cases.

Bands: a true lesion counts in the band of its own volume, a false one in the
band of the predicted lesion's volume (`EvaluationConfig.lesion_band_edges_ml`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
from scipy import ndimage

from sparseg.config import LESION_BANDS, EvaluationConfig

CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
"""26-connectivity: voxels touching by a face, an edge or a corner are one lesion."""
TOTALS = ("lesions_true", "lesions_pred", "lesions_detected", "lesions_missed", "lesions_false", "lesions_merged")
BY_BAND = tuple(f"{total}_{band}" for band in LESION_BANDS for total in ("lesions_true", "lesions_detected",
                                                                          "lesions_false"))
COUNTS = (*TOTALS, *BY_BAND)
"""Every count of one case, in table order."""
RATES = ("lesion_sensitivity", "lesion_precision", "lesion_f1")


def lesion_counts(gt: np.ndarray, pred: np.ndarray, voxel_ml: float,
                  edges_ml: tuple[float, float] = EvaluationConfig.lesion_band_edges_ml) -> dict[str, int]:
    """The `COUNTS` of one case: boolean (z, y, x) masks on one grid, `voxel_ml` the volume of a voxel in mL."""
    if gt.shape != pred.shape:
        raise ValueError(f"masks of different shapes: {gt.shape} and {pred.shape}")
    true_labels, true_count = ndimage.label(gt, structure=CONNECTIVITY)
    pred_labels, pred_count = ndimage.label(pred, structure=CONNECTIVITY)
    both = gt & pred
    detected = np.zeros(true_count + 1, dtype=bool)
    detected[true_labels[both]] = True
    matched = np.zeros(pred_count + 1, dtype=bool)
    matched[pred_labels[both]] = True
    true_band = np.digitize(np.bincount(true_labels.ravel(), minlength=true_count + 1)[1:] * voxel_ml, edges_ml)
    pred_band = np.digitize(np.bincount(pred_labels.ravel(), minlength=pred_count + 1)[1:] * voxel_ml, edges_ml)
    pairs = np.unique(np.stack([true_labels[both], pred_labels[both]]), axis=1)  # (true, predicted) that overlap
    trues_per_pred = np.bincount(pairs[1], minlength=pred_count + 1)
    merged = np.unique(pairs[0][trues_per_pred[pairs[1]] >= 2])
    counts = {"lesions_true": true_count, "lesions_pred": pred_count, "lesions_detected": int(detected[1:].sum()),
              "lesions_missed": int(true_count - detected[1:].sum()), "lesions_false": int((~matched[1:]).sum()),
              "lesions_merged": int(merged.size)}
    for index, band in enumerate(LESION_BANDS):
        counts[f"lesions_true_{band}"] = int((true_band == index).sum())
        counts[f"lesions_detected_{band}"] = int((detected[1:] & (true_band == index)).sum())
        counts[f"lesions_false_{band}"] = int((~matched[1:] & (pred_band == index)).sum())
    return counts


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def lesion_rates(counts: Mapping[str, int]) -> dict[str, float]:
    """`RATES` of one case's counts, or of counts pooled over cases (module docstring)."""
    detected, missed, false = counts["lesions_detected"], counts["lesions_missed"], counts["lesions_false"]
    return {"lesion_sensitivity": _ratio(detected, counts["lesions_true"]),
            "lesion_precision": _ratio(counts["lesions_pred"] - false, counts["lesions_pred"]),
            "lesion_f1": _ratio(detected, detected + (missed + false) / 2)}


def pooled(rows: Iterable[Mapping[str, int]]) -> dict[str, float]:
    """A cohort's lesion-wise figures: the counts summed over its cases, their `RATES`, and the sensitivity in each
    volume band (`lesion_sensitivity_<band>`)."""
    totals = {name: 0 for name in COUNTS}
    for row in rows:
        for name in COUNTS:
            totals[name] += int(row[name])
    bands = {f"lesion_sensitivity_{band}": _ratio(totals[f"lesions_detected_{band}"], totals[f"lesions_true_{band}"])
             for band in LESION_BANDS}
    return {**totals, **lesion_rates(totals), **bands}
