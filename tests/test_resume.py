"""Resuming a batch: a rerun keeps only the outputs made as it would make them, and redoes the rest."""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from sparseg.batch import predict_batch
from sparseg.cases import find_any_cases, find_cases
from sparseg.cli import main
from sparseg.io import read_geometry, read_image
from sparseg.synth import SynthConfig
from sparseg.weights import load_predictor

INTERRUPT = Path(__file__).resolve().parent / "interrupt.py"


@pytest.mark.slow
def test_killed_batch_leaves_complete_files_and_a_rerun_finishes_it_identically(
        tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Killed right after it recorded its second case finished (`tests/interrupt.py`: each case is recorded twice,
    in progress and finished), a batch leaves those two cases' complete masks and a summary naming them; a rerun
    keeps them and finishes the rest as a straight run would."""
    import signal
    import subprocess
    import sys

    from sparseg.io import read_mask
    from sparseg.synth import write_dataset

    data = tmp_path / "data"
    write_dataset(data, n_cases=8, seed=3, config=SynthConfig.tiny())
    arguments = ["predict", "--data", str(data), "--weights", str(tiny_checkpoint), "--device", "cpu", "--out"]
    killed = tmp_path / "killed"
    process = subprocess.run([sys.executable, str(INTERRUPT), "sparseg.batch:write_csv", "4", "after", *arguments,
                              str(killed)], capture_output=True)
    assert process.returncode == -signal.SIGKILL, process.stderr
    done = sorted(killed.glob("*_lesion.mha"))
    ids = sorted(case.case_id for case in find_cases(data))
    assert [p.name for p in done] == [f"{case_id}_lesion.mha" for case_id in ids[:2]]
    for path in done:  # every file with a final name is complete
        assert read_mask(path)[0].ndim == 3
    recorded = _statuses(killed)
    assert {case_id for case_id, row in recorded.items() if row["status"] == "ok"} == set(ids[:2])

    rerun = subprocess.run([sys.executable, "-m", "sparseg", *arguments, str(killed)], capture_output=True)
    assert rerun.returncode == 0, rerun.stderr
    straight = tmp_path / "straight"
    assert subprocess.run([sys.executable, "-m", "sparseg", *arguments, str(straight)],
                          capture_output=True).returncode == 0
    assert not list(killed.glob(".partial-*"))
    for path in sorted(straight.glob("*_lesion.mha")):
        np.testing.assert_array_equal(read_mask(killed / path.name)[0], read_mask(path)[0])
    statuses = {case_id: row["status"] for case_id, row in _statuses(killed).items()}
    assert statuses == {case_id: "done earlier" if case_id in ids[:2] else "ok" for case_id in ids}


def _statuses(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "summary.csv") as handle:
        return {row["case_id"]: row for row in csv.DictReader(handle)}


def test_a_rerun_redoes_a_case_whose_input_changed(tiny_checkpoint: Path, tiny_dataset: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """An edited input once kept its stale mask ("done earlier"), even on another grid."""
    from sparseg.io import Geometry, write_image

    data, out = shutil.copytree(tiny_dataset, tmp_path / "data"), tmp_path / "out"
    predictor = load_predictor([tiny_checkpoint], "cpu")
    predict_batch(find_any_cases(data), out, predictor)
    changed = find_cases(data)[1]
    adc, z = read_image(changed.adc), read_image(changed.z)
    grid = Geometry.from_array_order(adc.array[:, :-4].shape, adc.geometry.spacing_mm, adc.geometry.origin_xyz_mm,
                                     adc.geometry.direction)
    write_image(adc.array[:, :-4], grid, changed.adc)
    write_image(z.array[:, :-4], grid, changed.z)
    caplog.set_level(logging.INFO, logger="sparseg")  # the reason is an INFO line of sparseg's logger
    caplog.clear()
    summaries = predict_batch(find_any_cases(data), out, predictor)
    status = {s.case_id: s.status for s in summaries}
    assert status.pop(changed.case_id) == "ok" and set(status.values()) == {"done earlier"}
    assert any(f"{changed.case_id}: segmenting again: its input files changed" in r.getMessage()
               for r in caplog.records)
    assert read_geometry(out / f"{changed.case_id}_lesion.mha").size_xyz == grid.size_xyz
    assert _statuses(out)[changed.case_id]["inputs_sha256"] != ""


@pytest.mark.slow
def test_a_rerun_with_other_weights_or_settings_redoes_every_case(tiny_checkpoint: Path, tiny_dataset: Path,
                                                                  tmp_path: Path) -> None:
    from sparseg.model import build_model, save_checkpoint

    from conftest import TINY_RUN

    out = tmp_path / "out"
    assert main(["predict", "--data", str(tiny_dataset), "--out", str(out), "--weights", str(tiny_checkpoint)]) == 0
    first = _statuses(out)
    assert main(["predict", "--data", str(tiny_dataset), "--out", str(out), "--weights", str(tiny_checkpoint)]) == 0
    assert {row["status"] for row in _statuses(out).values()} == {"done earlier"}
    retrained = save_checkpoint(tmp_path / "retrained.safetensors", build_model(TINY_RUN.model, TINY_RUN.in_channels),
                                TINY_RUN)
    assert main(["predict", "--data", str(tiny_dataset), "--out", str(out), "--weights", str(retrained)]) == 0
    second = _statuses(out)
    assert {row["status"] for row in second.values()} == {"ok"}
    assert all(second[c]["checkpoints_sha256"] != first[c]["checkpoints_sha256"] for c in first)
    assert main(["predict", "--data", str(tiny_dataset), "--out", str(out), "--weights", str(retrained),
                 "--tta"]) == 0
    third = _statuses(out)
    assert {row["status"] for row in third.values()} == {"ok"}
    assert all("tta=on" in row["settings"] for row in third.values())


def test_a_summary_without_the_record_of_what_made_the_masks_redoes_them(tiny_checkpoint: Path, tiny_dataset: Path,
                                                                         tmp_path: Path) -> None:
    out = tmp_path / "out"
    predictor = load_predictor([tiny_checkpoint], "cpu")
    predict_batch(find_any_cases(tiny_dataset), out, predictor)
    rows = list(_statuses(out).values())
    with open(out / "summary.csv", "w", newline="") as handle:  # as an earlier SPARSeg wrote it
        writer = csv.DictWriter(handle, fieldnames=["case_id", "status", "lesion_ml"])
        writer.writeheader()
        writer.writerows({k: row[k] for k in ("case_id", "status", "lesion_ml")} for row in rows)
    assert {s.status for s in predict_batch(find_any_cases(tiny_dataset), out, predictor)} == {"ok"}


def test_a_case_that_fails_on_rerun_loses_its_stale_outputs(tiny_checkpoint: Path, tiny_dataset: Path,
                                                            tmp_path: Path) -> None:
    """Its old mask once stayed under its final name, and `sparseg evaluate` scored it with exit 0."""
    data, out = shutil.copytree(tiny_dataset, tmp_path / "data"), tmp_path / "out"
    predictor = load_predictor([tiny_checkpoint], "cpu")
    predict_batch(find_any_cases(data), out, predictor)
    broken = find_cases(data)[3]
    broken.adc.write_bytes(broken.adc.read_bytes()[: broken.adc.stat().st_size // 2])
    summaries = {s.case_id: s.status for s in predict_batch(find_any_cases(data), out, predictor)}
    assert summaries[broken.case_id] == "failed"
    assert not (out / f"{broken.case_id}_lesion.mha").exists()


def test_a_mask_on_another_grid_is_not_kept(tiny_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    """Another case's mask of the same shape, copied over, was kept as "done earlier"."""
    from sparseg.io import Geometry, write_mask

    out = tmp_path / "out"
    predictor = load_predictor([tiny_checkpoint], "cpu")
    predict_batch(find_any_cases(tiny_dataset), out, predictor)
    case = find_cases(tiny_dataset)[0]
    mask = read_image(out / f"{case.case_id}_lesion.mha")
    moved = Geometry(mask.geometry.size_xyz, tuple(v * 2 for v in mask.geometry.spacing_xyz_mm),
                     mask.geometry.origin_xyz_mm, mask.geometry.direction)
    write_mask(np.ones(mask.array.shape, bool), moved, out / f"{case.case_id}_lesion.mha")
    statuses = {s.case_id: s.status for s in predict_batch(find_any_cases(tiny_dataset), out, predictor)}
    assert statuses[case.case_id] == "ok"
    assert read_geometry(out / f"{case.case_id}_lesion.mha") == read_geometry(case.adc)
