from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from sparseg.cases import OUTPUT_MASK, find_any_cases, find_cases, find_input_case
from sparseg.cli import main
from sparseg.errors import InputError
from sparseg.io import read_geometry, read_image
from sparseg.jobs import default_weights, load_predictor, predict_batch, run_container_job
from sparseg.synth import SynthConfig, generate_case, write_input_case


@pytest.mark.parametrize("index", [0, 4])
def test_container_job_writes_a_binary_mask_on_the_adc_grid(tiny_checkpoint: Path, tmp_path: Path, index: int) -> None:
    case = write_input_case(tmp_path / "input", seed=8, index=index, config=SynthConfig.tiny())
    predictor = load_predictor([tiny_checkpoint], "cpu")
    path = run_container_job(find_input_case(tmp_path / "input"), tmp_path / "output", predictor)
    assert path == tmp_path / "output" / OUTPUT_MASK
    image = sitk.ReadImage(str(path))
    assert image.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayViewFromImage(image))) <= {0, 1}
    assert read_geometry(path).differences(case.geometry, tolerance=1e-9) == []


def test_oblique_case_keeps_its_direction(tiny_checkpoint: Path, tmp_path: Path) -> None:
    index = next(i for i in range(50) if generate_case(8, i, SynthConfig.tiny()).orientation == "oblique")
    case = write_input_case(tmp_path / "input", seed=8, index=index, config=SynthConfig.tiny())
    predictor = load_predictor([tiny_checkpoint], "cpu")
    path = run_container_job(find_input_case(tmp_path / "input"), tmp_path / "output", predictor)
    assert read_geometry(path).direction == pytest.approx(case.geometry.direction, abs=1e-9)


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


def test_uploaded_model_wins_over_baked_weights(tmp_path: Path) -> None:
    uploaded, baked = tmp_path / "opt-ml-model", tmp_path / "model_weights"
    baked.mkdir()
    (baked / "demo.safetensors").write_bytes(b"x")
    assert default_weights((uploaded, baked)) == [baked / "demo.safetensors"]
    uploaded.mkdir()
    (uploaded / "fold0.safetensors").write_bytes(b"x")
    assert default_weights((uploaded, baked)) == [uploaded / "fold0.safetensors"]
    with pytest.raises(InputError, match="no checkpoint"):
        default_weights((tmp_path / "none",))


def test_batch_overlays_are_pngs_of_every_case(tiny_dataset: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    predict_batch(find_any_cases(tiny_dataset), tmp_path, load_predictor([tiny_checkpoint], "cpu"), overlays=True)
    pngs = sorted(tmp_path.glob("*_overlay.png"))
    assert [p.name.removesuffix("_overlay.png") for p in pngs] == [c.case_id for c in find_cases(tiny_dataset)]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert not list(tmp_path.glob(".partial-*"))


INTERRUPT = Path(__file__).resolve().parent / "interrupt.py"


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
    process = subprocess.run([sys.executable, str(INTERRUPT), "sparseg.jobs:write_csv", "4", "after", *arguments,
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
    caplog.clear()
    summaries = predict_batch(find_any_cases(data), out, predictor)
    status = {s.case_id: s.status for s in summaries}
    assert status.pop(changed.case_id) == "ok" and set(status.values()) == {"done earlier"}
    assert any(f"{changed.case_id}: segmenting again: its input files changed" in r.getMessage()
               for r in caplog.records)
    assert read_geometry(out / f"{changed.case_id}_lesion.mha").size_xyz == grid.size_xyz
    assert _statuses(out)[changed.case_id]["inputs_sha256"] != ""


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


def test_a_full_disk_fails_the_batch_without_leaving_empty_masks(tiny_checkpoint: Path, tiny_dataset: Path,
                                                                 full_disk: Path, capsys) -> None:
    out = full_disk / "out"
    code = main(["predict", "--data", str(tiny_dataset), "--out", str(out), "--weights", str(tiny_checkpoint)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "cannot write" in err.splitlines()[-1] and "Traceback" not in err
    assert [p for p in full_disk.rglob("*") if p.is_file() and p.name != "filler"] == []


def _own_names(tiny_dataset: Path, folder: Path, suffix: str = ".nii.gz") -> dict[str, tuple[Path, Path, Path]]:
    """The tiny cases as a user's flat folder: patient<k>_adc / _zadc / _label, in `suffix` format."""
    from sparseg.io import write_image

    files = {}
    for k, case in enumerate(find_cases(tiny_dataset)):
        names = []
        for kind, path in (("adc", case.adc), ("zadc", case.z), ("label", case.label)):
            volume = read_image(path)
            names.append(write_image(volume.array, volume.geometry, folder / f"patient{k:02d}_{kind}{suffix}"))
        files[f"patient{k:02d}"] = tuple(names)
    return files


def test_a_folder_of_nifti_pairs_with_own_names_runs_end_to_end(tiny_checkpoint: Path, tiny_dataset: Path,
                                                                tmp_path: Path) -> None:
    files = _own_names(tiny_dataset, tmp_path / "scans")
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


def test_one_case_without_any_layout(tiny_checkpoint: Path, tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    files = _own_names(tiny_dataset, tmp_path, ".nii.gz")
    adc, z, _ = files["patient00"]
    assert main(["predict", "--adc", str(adc), "--zadc", str(z), "--out", str(tmp_path / "mask.nii.gz"),
                 "--weights", str(tiny_checkpoint)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert read_geometry(tmp_path / "mask.nii.gz").size_xyz == read_geometry(adc).size_xyz
    assert main(["predict", "--adc", str(adc), "--zadc", str(z), "--out", str(tmp_path / "mask.nii.gz"),
                 "--report", "--weights", str(tiny_checkpoint)]) == 2
    assert "--report: for a batch" in capsys.readouterr().err


def test_input_errors_come_before_the_network_is_loaded(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    """A typo in the data once cost the whole start-up first: here the weights do not even exist."""
    absent = str(tmp_path / "absent.safetensors")
    _own_names(tiny_dataset, tmp_path / "scans")
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


def _statuses_of(path: Path) -> dict[str, dict[str, str]]:
    with open(path) as handle:
        return {row["case_id"]: row for row in csv.DictReader(handle)}


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


@pytest.mark.parametrize("value", ["nan", "-5", "inf"])
def test_an_impossible_min_lesion_size_is_refused(tiny_checkpoint: Path, tmp_path: Path, value: str, capsys) -> None:
    code = main(["predict", "--data", str(tmp_path), "--out", str(tmp_path / "o"), f"--min-lesion-mm3={value}",
                 "--weights", str(tiny_checkpoint)])
    assert code == 2 and "--min-lesion-mm3 must be a finite number of 0 or more" in capsys.readouterr().err
