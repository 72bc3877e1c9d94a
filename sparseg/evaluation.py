"""Folders of masks -> per-case scores, means, and the burden-stratified table, as the leaderboard computes them.

Ground truth comes in the release layout (3LABEL/ plus 1ADC_ss/, whose
non-zero voxels are the brain volume for the lesion burden); predictions are
any image files named with the case id (`<case_id>_lesion.mha` as written by
`sparseg baseline` and `sparseg predict`). Scores are those of
`sparseg.metrics.score_case` (the challenge's empty-mask rules, DeepMind's
surface distances). DSC does not depend on the spacing; MASD and NSD are
computed under three spacing rules (`RULES`), because the organisers' script
(bonbidhie_eval/evaluation.py of baorina/BONBID-HIE-MICCAI2023) has paired
SimpleITK's spacing with the (z, y, x) arrays in two ways:

* `masd`, `nsd`: the current script (commit f5b2c78, September 2024), the
  BONBID-HIE 2024 evaluation where the paper's numbers were computed. It
  passes `[sp[-1], sp[0], sp[1]]` of SimpleITK's (x, y, z) spacing: (z, x, y).
  The slice axis is right; x and y are swapped, which changes nothing for
  square pixels. The default, first in every table.
* `masd_physical`, `nsd_physical`: (z, y, x), the voxels' own order.
* `masd_2023`, `nsd_2023`: the 2023 script (commits 2fecf11 to e9d4a22), which
  passes the spacing as it comes, (x, y, z): the slice axis is measured with
  the x spacing and the x axis with the slice spacing. For comparison with the
  2023 leaderboard.

Means over cases are taken as the organisers' evaluation aggregates (pandas'
`describe()`): each column over the cases where it is defined, so a case with
exactly one empty mask (MASD NaN) drops out of the MASD mean while its DSC 0
and NSD 0 count. The organisers also score the prediction voxel for voxel on
the label's grid, whatever geometry its header says (they overwrite it); a
prediction whose geometry differs is scored the same way here, with a
warning, and the difference is kept in `scores.csv`.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sparseg.cases import Case, case_id_of, data_inputs, find_cases
from sparseg.config import EvaluationConfig, burden_group, burden_groups, lesion_band_names
from sparseg.errors import InputError
from sparseg.io import Geometry, image_files, read_image, read_mask, write_csv, write_text
from sparseg.lesions import lesion_counts, lesion_rates, pooled
from sparseg.metrics import CaseScore, dice, lesion_burden, score_case
from sparseg.outputs import find_masks
from sparseg.paths import remove_stale, require_apart

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpacingRule:
    """One way of pairing a label's spacing with the (z, y, x) mask arrays for MASD and NSD."""

    suffix: str
    """What the rule's MASD and NSD keys end with: "" (the default), "_physical" or "_2023"."""
    label: str
    """The rule in a few words, for table headers and logs."""
    axes_xyz: tuple[int, int, int]
    """Which of SimpleITK's (x, y, z) spacings is passed for array axes 0, 1 and 2."""
    source: str
    """Where the rule comes from, written into every summary.json."""

    def spacing(self, geometry: Geometry) -> tuple[float, float, float]:
        """The spacing (mm) this rule pairs with the (z, y, x) arrays of a mask on `geometry`."""
        return tuple(geometry.spacing_xyz_mm[axis] for axis in self.axes_xyz)  # type: ignore[return-value]

    @property
    def keys(self) -> tuple[str, str]:
        return f"masd{self.suffix}", f"nsd{self.suffix}"


RULES = (
    SpacingRule("", "BONBID-HIE 2024", (2, 0, 1),
                "the organisers' current evaluation.py (f5b2c78, 2024-09-03; the 2024 edition, where the paper's "
                "numbers were computed): spacing [sp[-1], sp[0], sp[1]] of GetSpacing(), (z, x, y)"),
    SpacingRule("_physical", "physical", (2, 1, 0),
                "the spacing in the arrays' own (z, y, x) order, as the voxels lie"),
    SpacingRule("_2023", "BONBID-HIE 2023", (0, 1, 2),
                "the organisers' 2023 evaluation.py (2fecf11 to e9d4a22): GetSpacing() as it comes, (x, y, z), "
                "for comparison with the 2023 leaderboard"),
)
"""The spacing rules of MASD and NSD, the default first (module docstring)."""
METRICS = ("dsc", *(key for rule in RULES for key in rule.keys))
"""Every score of a row: DSC, then MASD and NSD under each rule of `RULES`."""
SCORING = {"dsc": "Dice; does not depend on the spacing",
           **{", ".join(rule.keys): rule.source for rule in RULES},
           "means": "over the cases where each score is defined (pandas' describe(), as the organisers): a MASD of "
                    "NaN (exactly one mask empty) is left out of the MASD mean, its DSC 0 and NSD 0 count"}
"""What the columns of scores.csv and the keys of summary.json mean, written into summary.json."""
LESION_NOTE = ("Lesions: 26-connected components; a true lesion is detected when any of its voxels is predicted, a "
               "predicted lesion is false when it touches no true lesion; counts pooled over the row's cases.")
"""One line under every lesion-wise table."""
RULE_NOTE = ("DSC, MASD, NSD: the BONBID-HIE 2024 evaluation (the organisers' current script, spacing (z, x, y)); "
             "physical: spacing (z, y, x); 2023: the 2023 script's (x, y, z)")
"""One line under every table of scores, saying which rule each column follows."""


@dataclass(frozen=True)
class CaseRow:
    case_id: str
    dsc: float
    masd: float
    """Mean average surface distance (mm), BONBID-HIE 2024 rule (the default)."""
    nsd: float
    """Normalised surface Dice, BONBID-HIE 2024 rule (the default)."""
    masd_physical: float
    """Mean average surface distance (mm) with the spacing in (z, y, x), as the voxels lie."""
    nsd_physical: float
    masd_2023: float
    """Mean average surface distance (mm), BONBID-HIE 2023 rule (spacing (x, y, z))."""
    nsd_2023: float
    gt_voxels: int
    pred_voxels: int
    burden: float
    burden_group: str
    lesions_true: int = 0
    lesions_pred: int = 0
    lesions_detected: int = 0
    lesions_missed: int = 0
    lesions_false: int = 0
    lesions_merged: int = 0
    """Lesion-wise counts (`sparseg.lesions`): 26-connected lesions of the label and the prediction, the true ones
    detected (any overlap) or missed, the predicted ones overlapping no true lesion, and the true ones whose
    predicted lesion touches another true lesion too."""
    lesions_true_small: int = 0
    lesions_detected_small: int = 0
    lesions_false_small: int = 0
    lesions_true_medium: int = 0
    lesions_detected_medium: int = 0
    lesions_false_medium: int = 0
    lesions_true_large: int = 0
    lesions_detected_large: int = 0
    lesions_false_large: int = 0
    """The same by lesion volume band (`config.LESION_BANDS`)."""
    lesion_sensitivity: float = math.nan
    lesion_precision: float = math.nan
    lesion_f1: float = math.nan
    grid_warning: str = ""
    """What differs between the prediction's header geometry and the label's, if anything."""


@dataclass(frozen=True)
class Report:
    rows: list[CaseRow]
    summary: dict[str, dict[str, float]]
    """Group name ("all" and each burden stratum) -> n and the mean of each metric."""
    config: EvaluationConfig = EvaluationConfig()
    """How the scores were computed (the NSD tolerance)."""


def evaluate_case(case: Case, prediction: Path, config: EvaluationConfig = EvaluationConfig()) -> CaseRow:
    """Score one prediction file against the case's label (both binary; the label on the ADC image's grid)."""
    assert case.label is not None
    gt, gt_geometry = read_mask(case.label)
    adc = read_image(case.adc)
    label_differs = gt_geometry.differences(adc.geometry)
    if label_differs:
        raise InputError(f"{case.label}: the label's grid differs from its ADC image {case.adc.name} "
                         f"({'; '.join(label_differs)}); the lesion burden needs both on one grid")
    pred, pred_geometry = read_mask(prediction)
    if pred.shape != gt.shape:
        raise InputError(f"{prediction}: grid {pred.shape} (z, y, x) differs from the label's {gt.shape}")
    differences = "; ".join(pred_geometry.differences(gt_geometry))
    if differences:
        log.warning("%s: its geometry differs from the label's (%s): scored voxel for voxel on the label's grid, "
                    "as the organisers' evaluation does without a word (it overwrites the prediction's geometry); "
                    "a viewer will show this mask elsewhere", prediction, differences)
    burden = lesion_burden(gt, adc.array)
    return score_row(case.case_id, gt, pred, gt_geometry, burden, config, grid_warning=differences)


def score_row(case_id: str, gt: np.ndarray, pred: np.ndarray, geometry: Geometry, burden: float,
              config: EvaluationConfig = EvaluationConfig(), grid_warning: str = "") -> CaseRow:
    """The table row of one case on the label's `geometry`: DSC, MASD and NSD under each spacing rule
    (`RULES`; rules that give the same spacing, as all but the 2023 one do for square pixels, are scored once),
    voxel counts, burden group and the lesion-wise counts and rates (`sparseg.lesions`)."""
    by_spacing: dict[tuple[float, float, float], CaseScore] = {}
    scores = {}
    for rule in RULES:
        spacing = rule.spacing(geometry)
        if spacing not in by_spacing:
            by_spacing[spacing] = score_case(gt, pred, spacing, config.nsd_tolerance_mm)
        scores[rule.keys[0]], scores[rule.keys[1]] = by_spacing[spacing].masd, by_spacing[spacing].nsd
    lesions = lesion_counts(gt, pred, geometry.voxel_volume_mm3 / 1000.0, config.lesion_band_edges_ml)
    return CaseRow(
        case_id=case_id,
        dsc=next(iter(by_spacing.values())).dsc,
        **scores,
        gt_voxels=int(np.count_nonzero(gt)),
        pred_voxels=int(np.count_nonzero(pred)),
        burden=burden,
        burden_group=burden_group(burden, config.burden_edges),
        **lesions,
        **lesion_rates(lesions),
        grid_warning=grid_warning,
    )


def summarise(rows: list[CaseRow], config: EvaluationConfig = EvaluationConfig()) -> dict[str, dict[str, float]]:
    """Means over cases, overall and per stratum: each score over the cases where it is defined, as the
    organisers' `describe()` takes them (a MASD of NaN drops out of the MASD mean only); then the lesion-wise
    counts summed over the cases and their rates (`lesions.pooled`)."""
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
        entry.update(pooled(asdict(r) for r in members))
        summary[name] = entry
    return summary


REPORT_FILES = ("scores.csv", "summary.json", "summary.md")
"""What `write_report` writes into its folder."""


def evaluate(gt_root: Path | str, pred_dir: Path | str, config: EvaluationConfig = EvaluationConfig(),
             case_ids: set[str] | None = None, out: Path | str | None = None) -> Report:
    """Score every labelled case of `gt_root` (or those of `case_ids`) against its mask in `pred_dir`: the one
    its last run recorded in its summary, else the one file named for the case (`cases.find_masks`). With `out`,
    the folder the report will be written to, its files are first checked against every input."""
    cases = [c for c in find_cases(gt_root, require_labels=True) if case_ids is None or c.case_id in case_ids]
    pred_dir = Path(pred_dir)
    predictions = find_masks(pred_dir, [c.case_id for c in cases])
    if out is not None:
        report_files = [Path(out) / name for name in REPORT_FILES]
        require_apart(report_files,
                      [*data_inputs(gt_root, cases), *(p for path in predictions.values() for p in image_files(path))])
        remove_stale(report_files)  # an evaluation that fails leaves no earlier table to look like its own
    missing = [c.case_id for c in cases if c.case_id not in predictions]
    if missing:
        raise InputError(f"{pred_dir}: no prediction for {len(missing)} case(s): {', '.join(missing[:20])}"
                         + (f" and {len(missing) - 20} more" if len(missing) > 20 else ""))
    if case_ids is None:
        ids = {c.case_id for c in cases}
        extra = sorted({cid for path in pred_dir.iterdir() if (cid := case_id_of(path)) and cid not in ids})
        if extra:
            log.warning("%s: %d prediction(s) without ground truth ignored: %s", pred_dir, len(extra), ", ".join(extra))
    rows = [evaluate_case(case, predictions[case.case_id], config) for case in cases]
    return Report(rows=rows, summary=summarise(rows, config), config=config)


def _fmt(value: float, digits: int = 4) -> str:
    return "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.{digits}f}"


def markdown_table(summary: dict[str, dict[str, float]], tolerance_mm: float, first: str = "burden") -> str:
    """The summary as a Markdown table like the paper's Table 3, then `RULE_NOTE`; `first` heads the row-name
    column and `tolerance_mm` is the NSD tolerance the scores were computed with.

    DSC, MASD and NSD first under the BONBID-HIE 2024 rule (comparable with the paper), then MASD and NSD
    under the physical and the 2023 rule (module docstring)."""
    nsd = f"NSD ({tolerance_mm:g} mm)"
    columns = ["DSC", "MASD (mm)", nsd]
    for rule in RULES[1:]:
        name = rule.suffix.lstrip("_")
        columns += [f"MASD (mm), {name}", f"{nsd}, {name}"]
    lines = [f"| {first} | n | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 2)]
    for name, entry in summary.items():
        lines.append(f"| {name} | {int(entry['n'])} | " + " | ".join(_fmt(entry[m]) for m in METRICS) + " |")
    return "\n".join(lines) + f"\n\n{RULE_NOTE}.\n"


def lesion_table(summary: dict[str, dict[str, float]], edges_ml: tuple[float, float], first: str = "burden") -> str:
    """The lesion-wise figures of `summary` as a Markdown table (counts pooled over each row's cases; module
    `sparseg.lesions`), with the sensitivity and the false lesions per volume band of `edges_ml`."""
    bands = lesion_band_names(edges_ml)
    columns = ["lesions", "detected", "missed", "false", "sensitivity", "precision", "F1",
               *(f"sensitivity {name}" for name in bands.values()), *(f"false {name}" for name in bands.values())]
    lines = [f"| {first} | n | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 2)]
    for name, entry in summary.items():
        cells = [str(int(entry[key])) for key in ("lesions_true", "lesions_detected", "lesions_missed",
                                                   "lesions_false")]
        cells += [_fmt(entry[key], 3) for key in ("lesion_sensitivity", "lesion_precision", "lesion_f1")]
        cells += [_fmt(entry[f"lesion_sensitivity_{band}"], 3) for band in bands]
        cells += [str(int(entry[f"lesions_false_{band}"])) for band in bands]
        lines.append(f"| {name} | {int(entry['n'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + LESION_NOTE + "\n"


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
    csv_path, json_path, md_path = (out / name for name in REPORT_FILES)
    write_csv(csv_path, [asdict(row) for row in report.rows])
    document = {"summary": report.summary, "scoring": {**SCORING, "lesions": LESION_NOTE},
                "nsd_tolerance_mm": report.config.nsd_tolerance_mm,
                "cases": [asdict(r) for r in report.rows]}
    write_text(json_path, json.dumps(_nan_to_none(document), indent=2, allow_nan=False) + "\n")
    write_text(md_path, markdown_table(report.summary, report.config.nsd_tolerance_mm) + "\n"
               + lesion_table(report.summary, report.config.lesion_band_edges_ml))
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
