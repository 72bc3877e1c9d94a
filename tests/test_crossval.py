from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sparseg.cases import find_cases
from sparseg.config import ModelConfig, PreprocessingConfig, RunConfig, TrainConfig
from sparseg.crossval import OUT_OF_FOLD, SCORES, SWEEP, SWEEP_THRESHOLDS, fold_dir, outputs, run_cv
from sparseg.errors import InputError
from sparseg.evaluation import _nan_to_none, evaluate
from sparseg.inference import Predictor
from sparseg.io import read_image, read_mask
from sparseg.outputs import prediction_name, probabilities_name
from sparseg.train import BEST, FINAL, FINISHED, SPLIT

TWO_FOLDS = RunConfig(
    preprocessing=PreprocessingConfig(slice_size=(64, 64)),
    model=ModelConfig(encoder="timm-mobilenetv3_small_100", decoder_channels=(32, 32, 16, 16, 16)),
    train=TrainConfig(epochs=1, batch_size=8, folds=2, workers=0, learning_rate=1e-3),
)


@pytest.fixture(scope="module")
def cross_validated(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("cv")
    return out, run_cv(tiny_dataset, TWO_FOLDS, out, device_name="cpu")


@pytest.mark.slow
def test_every_case_is_segmented_by_the_fold_that_did_not_train_on_it(tiny_dataset: Path, cross_validated) -> None:
    out, result = cross_validated
    assert result.folds == [0, 1] and result.waiting == [] and result.checkpoint == FINAL
    split = json.loads((fold_dir(out, 0) / SPLIT).read_text())["folds"]
    cases = {c.case_id: c for c in find_cases(tiny_dataset)}
    assert sorted(split[0] + split[1]) == sorted(cases)
    for fold, held_out in enumerate(split):
        predictor = Predictor.load([fold_dir(out, fold) / FINAL], __import__("torch").device("cpu"))
        for case_id in held_out:
            adc, z = read_image(cases[case_id].adc), read_image(cases[case_id].z)
            expected = predictor.predict(adc, z)
            np.testing.assert_array_equal(read_mask(out / OUT_OF_FOLD / prediction_name(case_id))[0], expected.mask)
            probabilities = read_image(out / OUT_OF_FOLD / probabilities_name(case_id)).array
            np.testing.assert_allclose(probabilities, expected.probabilities, atol=1e-6)


@pytest.mark.slow
def test_one_evaluation_of_all_out_of_fold_masks(tiny_dataset: Path, cross_validated) -> None:
    out, result = cross_validated
    assert len(result.report.rows) == 6
    assert result.report.summary == evaluate(tiny_dataset, out / OUT_OF_FOLD).summary
    document = json.loads((out / SCORES / "summary.json").read_text())
    assert document["summary"]["all"]["n"] == 6 and {"masd_physical", "masd_2023"} <= set(document["summary"]["all"])


@pytest.mark.slow
def test_the_threshold_sweep_is_the_dsc_of_the_thresholded_probabilities(tiny_dataset: Path, cross_validated) -> None:
    out, result = cross_validated
    with open(out / SWEEP) as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["threshold"]) for r in rows] == list(SWEEP_THRESHOLDS)
    at_threshold = {row["threshold"]: row["dsc"] for row in result.sweep}
    # At the checkpoints' own threshold the sweep reproduces the out-of-fold masks' mean DSC.
    assert TWO_FOLDS.threshold in at_threshold
    assert at_threshold[TWO_FOLDS.threshold] == pytest.approx(result.report.summary["all"]["dsc"], abs=1e-9)
    assert result.best_threshold == max(result.sweep, key=lambda r: r["dsc"])["threshold"]


@pytest.mark.slow
def test_a_rerun_trains_nothing_and_keeps_the_masks(tiny_dataset: Path, cross_validated) -> None:
    out, _ = cross_validated
    stamps = {p: p.stat().st_mtime_ns for p in [*out.glob(f"fold*/{FINAL}"), *(out / OUT_OF_FOLD).glob("*.mha")]}
    again = run_cv(tiny_dataset, TWO_FOLDS, out, device_name="cpu")
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    written = json.loads((out / SCORES / "summary.json").read_text())["summary"]
    assert _nan_to_none(again.report.summary) == written  # JSON has no NaN: undefined rates are null


@pytest.mark.slow
def test_out_of_fold_masks_made_with_other_settings_are_made_again(cross_validated, tiny_dataset: Path,
                                                                   tmp_path: Path) -> None:
    """The out-of-fold masks are keyed like `sparseg predict`'s: inputs' hash, weights, resolved settings (a mask
    made on a GPU in bf16 is not kept by a CPU rerun)."""
    import shutil

    out = shutil.copytree(cross_validated[0], tmp_path / "cv")
    summary = out / OUT_OF_FOLD / "summary_fold0.csv"
    with open(summary, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert all("device=cpu engine=openvino precision=fp32" in row["settings"] for row in rows)
    gpu = rows[0]["settings"].replace("device=cpu engine=openvino precision=fp32", "device=cuda engine=torch "
                                      "precision=bf16")
    rows[0]["settings"] = gpu  # as if a GPU had made this one
    with open(summary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    masks = {p: p.stat().st_mtime_ns for p in (out / OUT_OF_FOLD).glob("*_lesion.mha")}
    run_cv(tiny_dataset, TWO_FOLDS, out, device_name="cpu")
    redone = {p.name for p in masks if p.stat().st_mtime_ns != masks[p]}
    assert redone == {prediction_name(rows[0]["case_id"])}


@pytest.mark.slow
def test_finished_folds_are_not_reused_on_other_data(tiny_dataset: Path, cross_validated, tmp_path: Path) -> None:
    """A finished fold is not trained again: rerun on changed or other cases it once rescored without a word, and a
    case removed since raised a KeyError."""
    import shutil

    out = shutil.copytree(cross_validated[0], tmp_path / "cv")
    data = shutil.copytree(tiny_dataset, tmp_path / "data")
    case = find_cases(data)[0]
    label = read_image(case.label)
    from sparseg.io import write_image

    changed = label.array.copy()
    changed[0] = 1 - changed[0]
    write_image(changed, label.geometry, case.label)
    with pytest.raises(InputError, match="split.json: the cases' files changed since this fold was split"):
        run_cv(data, TWO_FOLDS, out, device_name="cpu")
    for path in (case.adc, case.z, case.label):
        path.unlink()
    gone = f"split.json: this fold was split over other cases \\(gone: {case.case_id}\\)"
    with pytest.raises(InputError, match=gone):
        run_cv(data, TWO_FOLDS, out, device_name="cpu")


@pytest.mark.slow
def test_folds_shared_between_machines_are_scored_once_all_are_finished(tiny_dataset: Path, tmp_path: Path) -> None:
    first = run_cv(tiny_dataset, TWO_FOLDS, tmp_path, only=[1], device_name="cpu")
    assert first.report is None and first.waiting == [0]
    assert (fold_dir(tmp_path, 1) / FINISHED).is_file() and not fold_dir(tmp_path, 0).exists()
    second = run_cv(tiny_dataset, TWO_FOLDS, tmp_path, only=[0], device_name="cpu")
    assert second.report is not None and len(second.report.rows) == 6


@pytest.mark.slow
def test_a_fold_trained_with_another_config_is_refused(tiny_dataset: Path, cross_validated, tmp_path: Path) -> None:
    out, _ = cross_validated
    other = replace(TWO_FOLDS, train=replace(TWO_FOLDS.train, learning_rate=0.01))
    with pytest.raises(InputError, match=r"fold0/config.json: this fold was trained with another config "
                                         r"\(train.learning_rate 0.001 there, 0.01 now\)"):
        run_cv(tiny_dataset, other, out, device_name="cpu")
    with pytest.raises(InputError, match="fold 5: expected 0 to 1"):
        run_cv(tiny_dataset, TWO_FOLDS, tmp_path, only=[5], device_name="cpu")


@pytest.mark.slow
def test_the_best_epochs_can_be_scored_instead(tiny_dataset: Path, cross_validated) -> None:
    out, final = cross_validated
    final_scores = (out / SCORES / "summary.json").read_bytes()
    best = run_cv(tiny_dataset, TWO_FOLDS, out, device_name="cpu", checkpoint="best")
    assert best.checkpoint == BEST and len(best.report.rows) == 6
    masks, scores, sweep = outputs(out, "best")
    assert len(list(masks.glob("*_lesion.mha"))) == 6 and (scores / "summary.json").is_file() and sweep.is_file()
    assert (out / SCORES / "summary.json").read_bytes() == final_scores  # the default's scores are kept
    # One epoch per fold: the best epoch is the last, so the two networks and their scores are the same.
    assert best.report.summary == final.report.summary
    with pytest.raises(InputError, match="checkpoint 'last'"):
        run_cv(tiny_dataset, TWO_FOLDS, out, device_name="cpu", checkpoint="last")


def test_missing_data_is_named_before_any_fold_folder_is_made(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no-data: no such folder"):
        run_cv(tmp_path / "no-data", TWO_FOLDS, tmp_path / "cv", device_name="cpu")
    assert not (tmp_path / "cv").exists()
