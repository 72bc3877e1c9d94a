from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sparseg.cases import find_cases, prediction_name
from sparseg.errors import InputError
from sparseg.evaluation import CaseRow, Report, compare_masks, evaluate, markdown_table, summarise, write_report
from sparseg.io import read_geometry, read_image, read_mask, write_mask
from sparseg.metrics import score_case


def _predict_labels(dataset: Path, out: Path) -> Path:
    for case in find_cases(dataset):
        mask, geometry = read_mask(case.label)
        write_mask(mask, geometry, out / prediction_name(case.case_id))
    return out


def test_perfect_predictions_score_perfectly(tiny_dataset: Path, tmp_path: Path) -> None:
    report = evaluate(tiny_dataset, _predict_labels(tiny_dataset, tmp_path / "pred"))
    assert len(report.rows) == 6
    for row in report.rows:
        assert (row.dsc, row.nsd) == (1.0, 1.0) and row.masd == 0.0
    assert report.summary["all"]["dsc"] == 1.0


def test_rows_equal_direct_scores(tiny_dataset: Path, tmp_path: Path) -> None:
    pred = tmp_path / "pred"
    for case in find_cases(tiny_dataset):
        z = read_image(case.z).array
        write_mask(z < -1.0, read_geometry(case.adc), pred / prediction_name(case.case_id))
    report = evaluate(tiny_dataset, pred)
    for case, row in zip(find_cases(tiny_dataset), report.rows):
        gt, geometry = read_mask(case.label)
        expected = score_case(gt, read_image(case.z).array < -1.0, geometry.spacing_mm)
        assert row.case_id == case.case_id
        assert row.dsc == expected.dsc and row.nsd == expected.nsd
        assert row.masd == expected.masd or (math.isnan(row.masd) and math.isnan(expected.masd))
        adc = read_image(case.adc).array
        assert row.burden == pytest.approx(np.count_nonzero(gt) / np.count_nonzero(adc))


def test_missing_prediction_is_named(tiny_dataset: Path, tmp_path: Path) -> None:
    pred = _predict_labels(tiny_dataset, tmp_path / "pred")
    (pred / prediction_name("MGHNICU_003-VISIT_01")).unlink()
    with pytest.raises(InputError, match="no prediction for 1 case.*MGHNICU_003-VISIT_01"):
        evaluate(tiny_dataset, pred)


def test_prediction_on_another_grid_is_rejected(tiny_dataset: Path, tmp_path: Path) -> None:
    pred = _predict_labels(tiny_dataset, tmp_path / "pred")
    geometry = read_geometry(find_cases(tiny_dataset)[0].label)
    x, y, z = geometry.size_xyz
    smaller = replace(geometry, size_xyz=(x - 1, y, z))
    write_mask(np.zeros(smaller.shape, bool), smaller, pred / prediction_name("MGHNICU_001-VISIT_01"))
    with pytest.raises(InputError, match="MGHNICU_001-VISIT_01_lesion.mha: grid .* differs from the label"):
        evaluate(tiny_dataset, pred)


def _row(case_id: str, dsc: float, masd: float, nsd: float, burden: float, group: str) -> CaseRow:
    return CaseRow(case_id, dsc, masd, nsd, 1, 1, burden, group)


def test_summary_means_skip_undefined_masd_and_stratify() -> None:
    rows = [
        _row("a", 0.5, 2.0, 0.6, 0.001, "<1%"),
        _row("b", 0.0, math.nan, 0.0, 0.002, "<1%"),
        _row("c", 0.9, 1.0, 0.9, 0.10, ">5%"),
    ]
    summary = summarise(rows)
    assert summary["all"]["n"] == 3
    assert summary["all"]["dsc"] == pytest.approx(1.4 / 3)
    assert summary["all"]["masd"] == pytest.approx(1.5)
    assert summary["<1%"]["masd"] == pytest.approx(2.0) and summary["<1%"]["nsd"] == pytest.approx(0.3)
    assert summary["1%-5%"]["n"] == 0 and math.isnan(summary["1%-5%"]["dsc"])
    table = markdown_table(summary, tolerance_mm=2.0)
    assert "| >5% | 1 | 0.9000 | 1.0000 | 0.9000 |" in table and "| 1%-5% | 0 | n/a" in table
    assert "NSD (2 mm)" in table and "NSD (1.5 mm)" in markdown_table(summary, tolerance_mm=1.5)


def test_report_files(tmp_path: Path) -> None:
    rows = [_row("a", 0.0, math.nan, 0.0, 0.0, "<1%"), _row("b", 1.0, 0.0, 1.0, 0.2, ">5%")]
    paths = write_report(Report(rows, summarise(rows)), tmp_path)
    assert [p.name for p in paths] == ["scores.csv", "summary.json", "summary.md"]
    document = json.loads((tmp_path / "summary.json").read_text())
    assert document["cases"][0]["masd"] is None and document["summary"]["all"]["masd"] == 0.0
    with open(tmp_path / "scores.csv") as handle:
        assert [r["case_id"] for r in csv.DictReader(handle)] == ["a", "b"]


def test_compare_masks_counts_differences_and_checks_the_grid(tiny_dataset: Path, tmp_path: Path) -> None:
    case = find_cases(tiny_dataset)[0]
    label, geometry = read_mask(case.label)
    assert label.any()
    same = compare_masks(case.label, write_mask(label, geometry, tmp_path / "same.mha"))
    assert same.within(1.0) and same.differing_voxels == 0 and same.describe() == "identical"
    changed = label.copy()
    changed[np.nonzero(label)[0][0], np.nonzero(label)[1][0], np.nonzero(label)[2][0]] = False
    one_off = compare_masks(write_mask(changed, geometry, tmp_path / "one_off.mha"), case.label)
    assert one_off.differing_voxels == 1 and not one_off.within(1.0) and one_off.within(0.9)
    moved = replace(geometry, origin_xyz_mm=tuple(v + 0.5 for v in geometry.origin_xyz_mm))
    shifted = compare_masks(write_mask(label, moved, tmp_path / "shifted.mha"), case.label)
    assert not shifted.within(0.0) and "origin" in shifted.describe()
