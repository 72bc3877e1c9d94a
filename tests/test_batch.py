"""Batch mode: every case of a folder or manifest, a failing case reported and the others going on."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from sparseg.batch import predict_batch
from sparseg.cases import find_any_cases, find_cases
from sparseg.cli import main
from sparseg.io import read_geometry, read_image
from sparseg.weights import load_predictor

from conftest import own_names


def test_batch_goes_on_past_a_bad_case(tiny_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    data = shutil.copytree(tiny_dataset, tmp_path / "data")
    bad = find_cases(data)[2]
    bad.z.write_bytes(b"not an image")
    summaries = predict_batch(find_any_cases(data), tmp_path / "out", load_predictor([tiny_checkpoint], "cpu"),
                              save_probabilities=True)
    status = {s.case_id: s.status for s in summaries}
    assert status.pop(bad.case_id) == "failed" and set(status.values()) == {"ok"}
    with open(tmp_path / "out" / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and "not a readable image" in next(r for r in rows if r["case_id"] == bad.case_id)["error"]
    assert not (tmp_path / "out" / f"{bad.case_id}_lesion.mha").exists()
    good = find_cases(data)[0]
    probabilities = read_image(tmp_path / "out" / f"{good.case_id}_probabilities.mha").array
    assert probabilities.shape == read_image(good.adc).array.shape


def test_predict_command_exit_codes(tiny_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    args = ["predict", "--data", str(tiny_dataset), "--out", str(tmp_path / "ok"), "--weights", str(tiny_checkpoint)]
    assert main(args) == 0
    data = shutil.copytree(tiny_dataset, tmp_path / "data")
    find_cases(data)[0].adc.write_bytes(b"")
    bad = ["predict", "--data", str(data), "--out", str(tmp_path / "bad"), "--weights", str(tiny_checkpoint)]
    assert main(bad) == 1


def test_batch_overlays_are_pngs_of_every_case(tiny_dataset: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    predict_batch(find_any_cases(tiny_dataset), tmp_path, load_predictor([tiny_checkpoint], "cpu"), overlays=True)
    pngs = sorted(tmp_path.glob("*_overlay.png"))
    assert [p.name.removesuffix("_overlay.png") for p in pngs] == [c.case_id for c in find_cases(tiny_dataset)]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert not list(tmp_path.glob(".partial-*"))


def _statuses(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "summary.csv") as handle:
        return {row["case_id"]: row for row in csv.DictReader(handle)}


def test_a_full_disk_fails_the_batch_without_leaving_empty_masks(tiny_checkpoint: Path, tiny_dataset: Path,
                                                                 full_disk: Path, capsys) -> None:
    out = full_disk / "out"
    code = main(["predict", "--data", str(tiny_dataset), "--out", str(out), "--weights", str(tiny_checkpoint)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "cannot write" in err.splitlines()[-1] and "Traceback" not in err
    assert [p for p in full_disk.rglob("*") if p.is_file() and p.name != "filler"] == []


def test_a_folder_of_nifti_pairs_with_own_names_runs_end_to_end(tiny_checkpoint: Path, tiny_dataset: Path,
                                                                tmp_path: Path) -> None:
    files = own_names(tiny_dataset, tmp_path / "scans")
    out = tmp_path / "masks"
    assert main(["predict", "--data", str(tmp_path / "scans"), "--adc", "*_adc.nii.gz", "--zadc", "*_zadc.nii.gz",
                 "--out", str(out), "--weights", str(tiny_checkpoint)]) == 0
    for case_id, (adc, _, _) in files.items():
        mask = out / f"{case_id}_lesion.nii.gz"
        assert read_geometry(mask).differences(read_geometry(adc), tolerance=1e-5) == []
    assert set(_statuses(out)) == set(files)
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("case_id,adc,zadc,label\n" + "".join(
        f"{cid},scans/{a.name},scans/{z.name},scans/{label.name}\n" for cid, (a, z, label) in files.items()))
    assert main(["evaluate", "--gt", str(manifest), "--pred", str(out), "--out", str(tmp_path / "scores")]) == 0
    with open(tmp_path / "scores" / "scores.csv") as handle:
        assert sorted(row["case_id"] for row in csv.DictReader(handle)) == sorted(files)
    assert main(["predict", "--data", str(manifest), "--out", str(tmp_path / "as-mha"), "--mask-format", "mha",
                 "--weights", str(tiny_checkpoint)]) == 0
    for case_id in files:
        np.testing.assert_array_equal(read_image(tmp_path / "as-mha" / f"{case_id}_lesion.mha").array,
                                      read_image(out / f"{case_id}_lesion.nii.gz").array)


def test_input_errors_come_before_the_network_is_loaded(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    """A typo in the data once cost the whole start-up first: here the weights do not even exist."""
    absent = str(tmp_path / "absent.safetensors")
    own_names(tiny_dataset, tmp_path / "scans")
    (tmp_path / "scans" / "patient00_zadc.nii.gz").unlink()
    assert main(["predict", "--data", str(tmp_path / "scans"), "--adc", "*_adc.nii.gz", "--zadc", "*_zadc.nii.gz",
                 "--out", str(tmp_path / "out"), "--weights", absent]) == 2
    assert "no Z_ADC (*_zadc.nii.gz) for: patient00" in capsys.readouterr().err
    assert main(["process", "--input", str(tmp_path / "nothing"), "--output", str(tmp_path / "o"),
                 "--weights", absent]) == 2
    assert "nothing/images/skull-stripped-adc-brain-mri: no such folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists()


def test_two_parts_into_one_folder_equal_one_run(tiny_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    command = ["predict", "--data", str(tiny_dataset), "--weights", str(tiny_checkpoint)]
    assert main([*command, "--out", str(tmp_path / "whole")]) == 0
    for part in ("1", "2"):
        assert main([*command, "--out", str(tmp_path / "parts"), "--part", part, "--parts", "2"]) == 0
    whole = sorted(p.name for p in (tmp_path / "whole").glob("*_lesion.mha"))
    assert sorted(p.name for p in (tmp_path / "parts").glob("*_lesion.mha")) == whole
    for name in whole:
        np.testing.assert_array_equal(read_image(tmp_path / "parts" / name).array,
                                      read_image(tmp_path / "whole" / name).array)
    shares = [set(_statuses_of(tmp_path / "parts" / f"summary_part{k}of2.csv")) for k in (1, 2)]
    assert not shares[0] & shares[1] and shares[0] | shares[1] == set(_statuses(tmp_path / "whole"))


@pytest.mark.parametrize("cluster", ["slurm", "kubernetes"])
def test_a_job_array_splits_the_cohort_without_part_options(cluster: str, tiny_checkpoint: Path, tiny_dataset: Path,
                                                            tmp_path: Path, monkeypatch, capsys) -> None:
    """docs/cluster.md's scripts: each task runs the same command; its index chooses its share."""
    command = ["predict", "--data", str(tiny_dataset), "--weights", str(tiny_checkpoint), "--out", str(tmp_path)]
    for index in range(3):
        if cluster == "slurm":
            monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(10 + index))
            monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "10")
            monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
            assert main(command) == 0
        else:
            monkeypatch.setenv("JOB_COMPLETION_INDEX", str(index))
            assert main([*command, "--parts", "3"]) == 0
        assert f"part {index + 1} of 3 (" in capsys.readouterr().out
    shares = [set(_statuses_of(tmp_path / f"summary_part{k}of3.csv")) for k in (1, 2, 3)]
    assert sum(map(len, shares)) == 6 and len(set().union(*shares)) == 6


@pytest.mark.slow
def test_an_ensemble_s_agreement_is_in_the_summary_and_flags_what_to_look_at(tiny_checkpoint: Path, tiny_dataset: Path,
                                                                         tmp_path: Path) -> None:
    import torch

    from sparseg.config import MEMBER_AGREEMENT_FLAG
    from sparseg.model import build_model, save_checkpoint

    from conftest import TINY_RUN

    torch.manual_seed(11)
    other = save_checkpoint(tmp_path / "w" / "other.safetensors",
                            build_model(TINY_RUN.model, TINY_RUN.in_channels).eval(), TINY_RUN)
    command = ["predict", "--data", str(tiny_dataset), "--weights", str(tiny_checkpoint), str(other), "--report"]
    assert main([*command, "--out", str(tmp_path / "out")]) == 0
    rows = _statuses_of(tmp_path / "out" / "summary.csv")
    values = {case: float(row["member_agreement"]) for case, row in rows.items()}
    assert all(0.0 <= v <= 1.0 for v in values.values())
    for case, row in rows.items():
        assert ("the models disagree: look" in row["flags"]) == (values[case] < MEMBER_AGREEMENT_FLAG)
    assert "<th>models agree</th>" in (tmp_path / "out" / "report.html").read_text()
    assert main([*command, "--out", str(tmp_path / "out")]) == 0  # kept from the first run, agreement kept too
    again = _statuses_of(tmp_path / "out" / "summary.csv")
    assert {case: float(row["member_agreement"]) for case, row in again.items()} == values
    assert {row["status"] for row in again.values()} == {"done earlier"}
    assert main(["predict", "--data", str(tiny_dataset), "--weights", str(tiny_checkpoint), "--out",
                 str(tmp_path / "single")]) == 0
    assert {row["member_agreement"] for row in _statuses_of(tmp_path / "single" / "summary.csv").values()} == {"nan"}


def _statuses_of(path: Path) -> dict[str, dict[str, str]]:
    with open(path) as handle:
        return {row["case_id"]: row for row in csv.DictReader(handle)}


@pytest.mark.slow
def test_without_a_terminal_each_case_is_one_log_line(tiny_checkpoint: Path, tiny_dataset: Path,
                                                     tmp_path: Path) -> None:
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "sparseg", "predict", "--data", str(tiny_dataset), "--out",
                          str(tmp_path / "out"), "--weights", str(tiny_checkpoint), "--device", "cpu"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if "] MGHNICU_" in line]
    assert len(lines) == 6 and lines[0].startswith("sparseg: INFO: [1/6] MGHNICU_")
    assert all(" mL lesion (" in line and " burden), " in line for line in lines)
    assert "cases:" not in run.stderr  # no progress bar without a terminal


class _CountingZmaker:
    """A `ZmapMaker` that counts the Z_ADC maps it computes."""

    def __init__(self, atlas_folder: Path) -> None:
        from sparseg.atlas import read_atlas
        from sparseg.zmap import ZmapMaker

        from conftest import FAST_ZMAP

        self.inner = ZmapMaker(read_atlas(atlas_folder), FAST_ZMAP)
        self.atlas, self.config, self.calls = self.inner.atlas, self.inner.config, 0

    def key(self) -> str:
        return self.inner.key()

    def __call__(self, adc):
        self.calls += 1
        return self.inner(adc)


@pytest.mark.slow
def test_adc_alone_with_an_atlas_is_segmented_and_resumed_without_registering_again(
        tiny_checkpoint: Path, population_dataset: Path, built_atlas: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    import logging

    import matplotlib.image

    from sparseg.synth import GENERATING_ATLAS

    cases = find_cases(population_dataset, with_zadc=False)[10:12]
    predictor = load_predictor([tiny_checkpoint], "cpu")
    zmaker = _CountingZmaker(population_dataset / GENERATING_ATLAS)
    out = tmp_path / "out"
    summaries = predict_batch(cases, out, predictor, report=True, zmaker=zmaker, save_zadc=True)
    assert [s.status for s in summaries] == ["ok", "ok"] and zmaker.calls == 2
    for case, summary in zip(cases, summaries):
        assert summary.atlas == zmaker.key() and summary.atlas_overlap > 0.9 and summary.adc_scale > 0
        zadc = read_image(out / f"{case.case_id}_zadc.mha")
        assert zadc.geometry.differences(read_image(case.adc).geometry) == []
        picture = matplotlib.image.imread(out / f"{case.case_id}_overlay.png")[..., :3]
        yellow = (picture[..., 0] > 0.8) & (picture[..., 1] > 0.8) & (picture[..., 2] < 0.3)
        assert yellow.sum() > 20  # the registered atlas's brain is drawn on the case
    assert "Z_ADC computed with the atlas" in (out / "report.html").read_text()

    again = predict_batch(cases, out, predictor, report=True, zmaker=zmaker, save_zadc=True)
    assert [s.status for s in again] == ["done earlier"] * 2 and zmaker.calls == 2  # no registration to keep a case
    assert [s.atlas_overlap for s in again] == pytest.approx([s.atlas_overlap for s in summaries])

    caplog.set_level(logging.INFO, logger="sparseg")
    other = _CountingZmaker(built_atlas)
    redone = predict_batch(cases, out, predictor, zmaker=other)
    assert [s.status for s in redone] == ["ok", "ok"] and other.calls == 2
    assert any("another atlas or other Z_ADC settings made its Z_ADC" in r.getMessage() for r in caplog.records)
    assert not (out / f"{cases[0].case_id}_zadc.mha").exists()  # not asked for this time: not left from before
    given = predict_batch(find_cases(population_dataset)[10:12], out, predictor)
    assert [s.status for s in given] == ["ok", "ok"] and all(s.atlas == "" for s in given)
