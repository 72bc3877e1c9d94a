"""Folders of masks -> per-case scores, means, and the burden-stratified table.

Ground truth comes in the release layout (3LABEL/ plus 1ADC_ss/, whose
non-zero voxels are the brain volume for the lesion burden); predictions are
any image files named with the case id (`<case_id>_lesion.mha` as written by
`sparseg baseline` and `sparseg predict`). Scores are those of
`sparseg.metrics.score_case` on the ground truth's voxel spacing, in (z, y, x)
order. (The organisers' script passes the spacing as (z, x, y); with the
in-plane isotropic spacing of this dataset the numbers are the same.)
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sparseg.cases import Case, find_cases, index_by_case_id
from sparseg.config import EvaluationConfig, burden_group, burden_groups
from sparseg.errors import InputError
from sparseg.io import read_image, read_mask, write_csv
from sparseg.metrics import dice, lesion_burden, score_case

log = logging.getLogger(__name__)

METRICS = ("dsc", "masd", "nsd")


@dataclass(frozen=True)
class CaseRow:
    case_id: str
    dsc: float
    masd: float
    nsd: float
    gt_voxels: int
    pred_voxels: int
    burden: float
    burden_group: str


@dataclass(frozen=True)
class Report:
    rows: list[CaseRow]
    summary: dict[str, dict[str, float]]
    """Group name ("all" and each burden stratum) -> n and the mean of each metric."""
    config: EvaluationConfig = EvaluationConfig()
    """How the scores were computed (the NSD tolerance)."""


def evaluate_case(case: Case, prediction: Path, config: EvaluationConfig = EvaluationConfig()) -> CaseRow:
    """Score one prediction file against the case's label."""
    assert case.label is not None
    gt, gt_geometry = read_mask(case.label)
    pred, pred_geometry = read_mask(prediction)
    if pred.shape != gt.shape:
        raise InputError(f"{prediction}: grid {pred.shape} (z, y, x) differs from the label's {gt.shape}")
    differences = pred_geometry.differences(gt_geometry)
    if differences:
        log.warning("%s: geometry differs from the label (%s); scored on the label's spacing",
                    prediction, "; ".join(differences))
    burden = lesion_burden(gt, read_image(case.adc).array)
    return score_row(case.case_id, gt, pred, gt_geometry.spacing_mm, burden, config)


def score_row(case_id: str, gt: np.ndarray, pred: np.ndarray, spacing_mm: tuple[float, float, float],
              burden: float, config: EvaluationConfig = EvaluationConfig()) -> CaseRow:
    """The table row of one case: challenge scores, voxel counts and burden group."""
    score = score_case(gt, pred, spacing_mm, config.nsd_tolerance_mm)
    return CaseRow(
        case_id=case_id,
        dsc=score.dsc,
        masd=score.masd,
        nsd=score.nsd,
        gt_voxels=int(np.count_nonzero(gt)),
        pred_voxels=int(np.count_nonzero(pred)),
        burden=burden,
        burden_group=burden_group(burden, config.burden_edges),
    )


def summarise(rows: list[CaseRow], config: EvaluationConfig = EvaluationConfig()) -> dict[str, dict[str, float]]:
    """Means over cases (MASD ignores its NaNs, as the challenge does), overall and per stratum."""
    groups = {"all": rows}
    for name in burden_groups(config.burden_edges):
        groups[name] = [r for r in rows if r.burden_group == name]
    summary = {}
    for name, members in groups.items():
        entry: dict[str, float] = {"n": len(members)}
        for metric in METRICS:
            values = np.array([getattr(r, metric) for r in members], dtype=float)
            finite = values[~np.isnan(values)]
            entry[metric] = float(finite.mean()) if finite.size else math.nan
        summary[name] = entry
    return summary


def evaluate(gt_root: Path | str, pred_dir: Path | str, config: EvaluationConfig = EvaluationConfig()) -> Report:
    """Score every labelled case of `gt_root` against its prediction in `pred_dir`."""
    cases = find_cases(gt_root, require_labels=True)
    predictions = index_by_case_id(Path(pred_dir))
    missing = [c.case_id for c in cases if c.case_id not in predictions]
    if missing:
        raise InputError(f"{pred_dir}: no prediction for {len(missing)} case(s): {', '.join(missing)}")
    extra = sorted(set(predictions) - {c.case_id for c in cases})
    if extra:
        log.warning("%s: %d prediction(s) without ground truth ignored: %s", pred_dir, len(extra), ", ".join(extra))
    rows = [evaluate_case(case, predictions[case.case_id], config) for case in cases]
    return Report(rows=rows, summary=summarise(rows, config), config=config)


def _fmt(value: float, digits: int = 4) -> str:
    return "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.{digits}f}"


def markdown_table(summary: dict[str, dict[str, float]], tolerance_mm: float, first: str = "burden") -> str:
    """The summary as a Markdown table like the paper's Table 3; `first` heads the row-name column and
    `tolerance_mm` is the NSD tolerance the scores were computed with."""
    lines = [f"| {first} | n | DSC | MASD (mm) | NSD ({tolerance_mm:g} mm) |", "|---|---|---|---|---|"]
    for name, entry in summary.items():
        lines.append(
            f"| {name} | {int(entry['n'])} | {_fmt(entry['dsc'])} | {_fmt(entry['masd'])} | {_fmt(entry['nsd'])} |"
        )
    return "\n".join(lines) + "\n"


def _nan_to_none(value):
    """JSON has no NaN: undefined scores (MASD with one empty mask) become null."""
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_report(report: Report, out: Path | str) -> list[Path]:
    """scores.csv (per case), summary.json, summary.md in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path, md_path = out / "scores.csv", out / "summary.json", out / "summary.md"
    write_csv(csv_path, [asdict(row) for row in report.rows])
    document = {"summary": report.summary, "cases": [asdict(r) for r in report.rows]}
    json_path.write_text(json.dumps(_nan_to_none(document), indent=2, allow_nan=False) + "\n")
    md_path.write_text(markdown_table(report.summary, report.config.nsd_tolerance_mm))
    return [csv_path, json_path, md_path]


@dataclass(frozen=True)
class MaskComparison:
    """How a mask file differs from a reference mask file (the container test's check)."""

    geometry_differences: list[str]
    differing_voxels: int
    dice: float

    def within(self, min_dice: float) -> bool:
        return not self.geometry_differences and self.dice >= min_dice

    def describe(self) -> str:
        if self.geometry_differences:
            return "geometry differs: " + "; ".join(self.geometry_differences)
        if self.differing_voxels == 0:
            return "identical"
        return f"{self.differing_voxels} voxels differ (Dice {self.dice:.6f})"


def compare_masks(mask_path: Path | str, reference_path: Path | str) -> MaskComparison:
    """Compare two mask files voxel by voxel and grid by grid.

    Geometry must agree to 1e-6 (a written mask copies its input's grid
    exactly). Dice is 1 when both masks are empty.
    """
    mask, geometry = read_mask(mask_path)
    reference, reference_geometry = read_mask(reference_path)
    differences = geometry.differences(reference_geometry, tolerance=1e-6)
    if differences:
        return MaskComparison(differences, -1, 0.0)
    return MaskComparison([], int(np.count_nonzero(mask ^ reference)), dice(reference, mask))
