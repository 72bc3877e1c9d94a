from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sparseg.cases import find_cases
from sparseg.errors import InputError
from sparseg.evaluation import CaseRow, Report, compare_masks, evaluate, markdown_table, summarise, write_report
from sparseg.io import read_geometry, read_image, read_mask, write_mask
from sparseg.outputs import prediction_name


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


ORGANISERS_SPACING = {
    "2024": lambda sp: [sp[-1], sp[0], sp[1]],  # evaluation.py at f5b2c78 (2024-09-03), as written there
    "2023": lambda sp: sp,  # evaluation.py at 2fecf11..e9d4a22 (2023): GetSpacing() as it comes
    "physical": lambda sp: sp[::-1],  # the arrays' own (z, y, x)
}
"""What each rule passes to surface-distance with the (z, y, x) arrays, from SimpleITK's (x, y, z) spacing."""


def _organisers_scores(label: Path, prediction: Path, rule: str) -> tuple[float, float, float]:
    """DSC, MASD, NSD computed the way the organisers' evaluation container does, independently of sparseg:
    SimpleITK reads and casts to uint8, the prediction takes the label's geometry, Dice from SimpleITK's label
    overlap filter, surface-distance with the spacing `rule` passes beside the (z, y, x) arrays."""
    import SimpleITK as sitk
    from surface_distance import metrics as oracle

    gt, pred = (sitk.Cast(sitk.ReadImage(str(p)), sitk.sitkUInt8) for p in (label, prediction))
    gt_array, pred_array = sitk.GetArrayFromImage(gt).astype(bool), sitk.GetArrayFromImage(pred).astype(bool)
    pred.CopyInformation(gt)
    if not gt_array.any() or not pred_array.any():
        return (1.0, 0.0, 1.0) if not (gt_array.any() or pred_array.any()) else (0.0, math.nan, 0.0)
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(gt, pred)
    distances = oracle.compute_surface_distances(gt_array, pred_array, ORGANISERS_SPACING[rule](gt.GetSpacing()))
    return (overlap.GetDiceCoefficient(), float(np.mean(oracle.compute_average_surface_distance(distances))),
            float(oracle.compute_surface_dice_at_tolerance(distances, 2.0)))


ROW_KEYS = {"2024": ("masd", "nsd"), "physical": ("masd_physical", "nsd_physical"), "2023": ("masd_2023", "nsd_2023")}


def _non_square_dataset(out: Path) -> Path:
    """Eight tiny synthetic cases whose pixels are not square (x, y and slice spacing all differ, so the three
    rules give three answers), in identity, flipped and oblique orientations."""
    from sparseg.io import write_image
    from sparseg.synth import SynthConfig, generate_case, write_dataset

    config = SynthConfig.tiny()
    write_dataset(out, n_cases=8, seed=23, config=config)
    assert {generate_case(23, i, config).orientation for i in range(8)} >= {"oblique", "flipped", "identity"}
    for index, case in enumerate(find_cases(out)):
        spacing_xyz = (0.6 + 0.1 * index, 1.3 + 0.05 * index, 4.0 + 0.3 * index)
        for path in (case.adc, case.z, case.label):
            volume = read_image(path)
            geometry = replace(volume.geometry, spacing_xyz_mm=spacing_xyz)
            write_image(volume.array.astype(np.float32), geometry, path)
    return out


def test_each_spacing_rule_equals_an_independent_computation(tmp_path: Path) -> None:
    data = _non_square_dataset(tmp_path / "data")
    pred = _dilated_z_predictions(data, tmp_path / "pred")
    report = evaluate(data, pred)
    scored = 0
    for case, row in zip(find_cases(data), report.rows):
        for rule, (masd, nsd) in ROW_KEYS.items():
            organisers = _organisers_scores(case.label, pred / prediction_name(case.case_id), rule)
            ours = (row.dsc, getattr(row, masd), getattr(row, nsd))
            assert ours == pytest.approx(organisers, abs=1e-6, nan_ok=True), (case.case_id, rule)
        if not math.isnan(row.masd):
            scored += 1
            assert len({round(row.masd, 6), round(row.masd_physical, 6), round(row.masd_2023, 6)}) == 3, row
        adc = read_image(case.adc).array
        assert row.burden == pytest.approx(np.count_nonzero(read_mask(case.label)[0]) / np.count_nonzero(adc))
    assert scored >= 4


def _dilated_z_predictions(dataset: Path, out: Path) -> Path:
    """Z_ADC < -1 as predictions: near the labels, not on them, some empty where the label is not."""
    for case in find_cases(dataset):
        write_mask(read_image(case.z).array < -1.0, read_geometry(case.adc), out / prediction_name(case.case_id))
    return out


def test_the_2023_and_2024_rules_differ_on_anisotropic_voxels(tmp_path: Path) -> None:
    """1 mm pixels, 5 mm slices, a prediction one slice off: the 2023 script measures that slice as 1 mm; the
    2024 one, like the physical order, as 5 mm."""
    from sparseg.io import Geometry

    geometry = Geometry.from_array_order((12, 40, 40), (5.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    gt = np.zeros(geometry.shape, bool)
    gt[4:7, 10:25, 12:30] = True
    pred = np.roll(gt, 1, axis=0)
    data = tmp_path / "data"
    write_mask(gt, geometry, data / "3LABEL" / "MGHNICU_001-VISIT_01_lesion.mha")
    write_mask(np.ones_like(gt), geometry, data / "1ADC_ss" / "MGHNICU_001-VISIT_01-ADC_ss.mha")
    write_mask(np.ones_like(gt), geometry, data / "2Z_ADC" / "Zmap_MGHNICU_001-VISIT_01-ADC_smooth2mm_clipped10.mha")
    write_mask(pred, geometry, tmp_path / "pred" / prediction_name("MGHNICU_001-VISIT_01"))
    [row] = evaluate(data, tmp_path / "pred").rows
    assert row.masd > 1.1 * row.masd_2023
    assert row.masd == row.masd_physical and row.nsd == row.nsd_physical  # square pixels: (z, x, y) = (z, y, x)
    for rule in ROW_KEYS:
        organisers = _organisers_scores(data / "3LABEL" / "MGHNICU_001-VISIT_01_lesion.mha",
                                        tmp_path / "pred" / prediction_name("MGHNICU_001-VISIT_01"), rule)
        assert (row.dsc, *(getattr(row, key) for key in ROW_KEYS[rule])) == pytest.approx(organisers, abs=1e-6)


def test_a_prediction_with_another_geometry_is_scored_on_the_labels_grid_with_a_warning(
        tiny_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pred = _predict_labels(tiny_dataset, tmp_path / "pred")
    case = find_cases(tiny_dataset)[0]
    label, geometry = read_mask(case.label)
    moved = replace(geometry, origin_xyz_mm=tuple(v + 20.0 for v in geometry.origin_xyz_mm))
    write_mask(label, moved, pred / prediction_name(case.case_id))
    report = evaluate(tiny_dataset, pred)
    assert report.rows[0].dsc == 1.0 and "origin" in report.rows[0].grid_warning
    assert all(row.grid_warning == "" for row in report.rows[1:])
    assert "organisers' evaluation does without a word" in caplog.text


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
    return CaseRow(case_id, dsc, masd, nsd, masd + 1.0, nsd / 2, masd * 3, nsd / 4, 1, 1, burden, group)


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
    assert summary["all"]["masd_physical"] == pytest.approx(2.5) and summary["all"]["masd_2023"] == pytest.approx(4.5)
    assert summary["all"]["nsd_2023"] == pytest.approx(1.5 / 4 / 3)
    table = markdown_table(summary, tolerance_mm=2.0)
    assert "| >5% | 1 | 0.9000 | 1.0000 | 0.9000 | 2.0000 | 0.4500 | 3.0000 | 0.2250 |" in table
    assert "| 1%-5% | 0 | n/a" in table and "BONBID-HIE 2024" in table and "(z, x, y)" in table
    assert "NSD (2 mm)" in table and "NSD (1.5 mm)" in markdown_table(summary, tolerance_mm=1.5)


def test_report_files(tmp_path: Path) -> None:
    rows = [_row("a", 0.0, math.nan, 0.0, 0.0, "<1%"), _row("b", 1.0, 0.0, 1.0, 0.2, ">5%")]
    paths = write_report(Report(rows, summarise(rows)), tmp_path)
    assert [p.name for p in paths] == ["scores.csv", "summary.json", "summary.md"]
    document = json.loads((tmp_path / "summary.json").read_text())
    assert document["cases"][0]["masd"] is None and document["summary"]["all"]["masd"] == 0.0
    metrics = ["dsc", "masd", "nsd", "masd_physical", "nsd_physical", "masd_2023", "nsd_2023"]
    assert list(document["summary"]["all"])[:8] == ["n", *metrics]  # the challenge's first, then lesion-wise
    assert {"lesions_true", "lesions_false", "lesion_f1", "lesion_sensitivity_small"} <= set(document["summary"]["all"])
    assert "f5b2c78" in document["scoring"]["masd, nsd"] and "(x, y, z)" in document["scoring"]["masd_2023, nsd_2023"]
    with open(tmp_path / "scores.csv") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames[:8] == ["case_id", *metrics]
        assert [r["case_id"] for r in reader] == ["a", "b"]


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


@pytest.mark.parametrize("value", [255, 2, 0.5, -1])
def test_a_mask_of_other_values_than_0_and_1_is_refused(tiny_dataset: Path, tmp_path: Path, value: float) -> None:
    """The organisers' uint8 cast and label-overlap Dice count such voxels otherwise (255 as another label than 1,
    0.5 as background): a DSC of 0.56 here was 0.0 there."""
    from sparseg.io import write_image

    pred = _predict_labels(tiny_dataset, tmp_path / "pred")
    case = find_cases(tiny_dataset)[0]
    label, geometry = read_mask(case.label)
    write_image(np.where(label, value, 0).astype(np.float32), geometry, pred / prediction_name(case.case_id))
    refused = rf"{case.case_id}_lesion.mha: a mask holds 0 and 1 only, this holds {value:g}"
    with pytest.raises(InputError, match=refused):
        evaluate(tiny_dataset, pred)


def test_a_label_on_another_grid_than_its_adc_is_refused(tiny_dataset: Path, tmp_path: Path) -> None:
    import shutil

    data = shutil.copytree(tiny_dataset, tmp_path / "data")
    pred = _predict_labels(data, tmp_path / "pred")
    case = find_cases(data)[0]
    label, geometry = read_mask(case.label)
    write_mask(label, replace(geometry, spacing_xyz_mm=tuple(v * 2 for v in geometry.spacing_xyz_mm)), case.label)
    with pytest.raises(InputError, match="_lesion.mha: the label's grid differs from its ADC image"):
        evaluate(data, pred)


def _sphere(shape: tuple[int, int, int], centre: tuple[int, int, int], radius: float) -> np.ndarray:
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


def test_lesion_wise_counts_of_hand_made_cases() -> None:
    """Known answers: two lesions, one missed; a false one; one lesion split in two; lesions touching by a corner
    (26-connected: one lesion); the volume bands (1 mm voxels: 1000 voxels = 1 mL)."""
    from sparseg.lesions import lesion_counts, lesion_rates, pooled

    shape, ml = (24, 40, 40), 0.001
    big, small = _sphere(shape, (12, 10, 10), 7), _sphere(shape, (12, 30, 30), 2)  # 1.4 mL and 0.03 mL
    assert big.sum() * ml >= 1.0 and small.sum() * ml < 0.1
    gt = big | small
    one_missed = lesion_counts(gt, big, ml)
    assert (one_missed["lesions_true"], one_missed["lesions_detected"], one_missed["lesions_missed"],
            one_missed["lesions_false"]) == (2, 1, 1, 0)
    assert one_missed["lesions_true_small"] == 1 and one_missed["lesions_detected_small"] == 0
    assert one_missed["lesions_true_large"] == one_missed["lesions_detected_large"] == 1
    rates = lesion_rates(one_missed)
    assert rates["lesion_sensitivity"] == 0.5 and rates["lesion_precision"] == 1.0
    assert rates["lesion_f1"] == pytest.approx(1 / 1.5)

    false = _sphere(shape, (4, 30, 8), 3)  # 123 voxels: the middle band (0.1-1 mL)
    with_false = lesion_counts(gt, gt | false, ml)
    assert (with_false["lesions_pred"], with_false["lesions_detected"], with_false["lesions_false"]) == (3, 2, 1)
    assert with_false["lesions_false_medium"] == 1 and with_false["lesions_false_small"] == 0
    assert lesion_rates(with_false)["lesion_precision"] == pytest.approx(2 / 3)

    split = big.copy()
    split[12] = False  # one true lesion, predicted as two halves
    halves = lesion_counts(big, split, ml)
    assert (halves["lesions_true"], halves["lesions_pred"], halves["lesions_detected"], halves["lesions_false"]) == \
        (1, 2, 1, 0)
    assert lesion_rates(halves)["lesion_f1"] == 1.0

    corner = np.zeros(shape, bool)
    corner[5, 5, 5] = corner[6, 6, 6] = True  # touching by a corner only
    assert lesion_counts(corner, corner, ml)["lesions_true"] == 1

    empty = lesion_counts(np.zeros(shape, bool), np.zeros(shape, bool), ml)
    assert all(math.isnan(v) for v in lesion_rates(empty).values())
    cohort = pooled([one_missed, with_false, empty])
    assert (cohort["lesions_true"], cohort["lesions_detected"], cohort["lesions_false"]) == (4, 3, 1)
    assert cohort["lesion_sensitivity_small"] == 0.5 and cohort["lesion_sensitivity_large"] == 1.0


def test_lesion_wise_scores_reach_scores_csv_summary_json_and_summary_md(tmp_path: Path) -> None:
    from sparseg.evaluation import score_row
    from sparseg.io import Geometry

    shape = (24, 40, 40)
    geometry = Geometry.from_array_order(shape, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    gt = _sphere(shape, (12, 10, 10), 7) | _sphere(shape, (12, 30, 30), 2)
    row = score_row("p1", gt, _sphere(shape, (12, 10, 10), 7), geometry, 0.02)
    assert (row.lesions_true, row.lesions_detected, row.lesions_missed, row.lesion_sensitivity) == (2, 1, 1, 0.5)
    paths = write_report(Report([row], summarise([row])), tmp_path)
    with open(paths[0]) as handle:
        written = next(csv.DictReader(handle))
    assert written["lesions_missed"] == "1" and float(written["lesion_f1"]) == pytest.approx(1 / 1.5)
    summary = json.loads(paths[1].read_text())["summary"]["all"]
    assert summary["lesions_true"] == 2 and summary["lesion_sensitivity_large"] == 1.0
    assert summary["lesion_sensitivity_small"] == 0.0
    table = paths[2].read_text()
    assert "| all | 1 | 2 | 1 | 1 | 0 | 0.500 | 1.000 | 0.667 | 0.000 | n/a | 1.000 | 0 | 0 | 0 |" in table
