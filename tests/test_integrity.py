"""The integrity rules of docs/integrity.md, one section each, with the symptom that showed each rule missing.

1. No output path ever replaces an input.
2. A resume key covers every byte that made a mask, and a killed run leaves nothing a rerun could take as finished.
3. `sparseg evaluate` scores the masks the last run made.
4. A header must agree with its data, both ways (the bad-input matrix of tests/test_bad_input.py holds the rest).
5. No traceback and no silent skip.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sparseg.cases import find_any_cases, find_cases
from sparseg.cli import main
from sparseg.errors import InputError
from sparseg.io import read_image, write_image

INTERRUPT = Path(__file__).resolve().parent / "interrupt.py"


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _refused(capsys: pytest.CaptureFixture, code: int, *fragments: str) -> str:
    """The command failed with exit 2 and one error line holding every fragment; that line."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("sparseg: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert all(fragment in lines[0] for fragment in fragments), lines[0]
    return lines[0]


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["case_id"]: row for row in csv.DictReader(handle)}


@pytest.fixture
def data(tiny_dataset: Path, tmp_path: Path) -> Path:
    """A writable copy of the six tiny labelled cases (release layout)."""
    return shutil.copytree(tiny_dataset, tmp_path / "data")


# Rule 1: no output path ever replaces an input

def test_predict_into_the_label_folder_is_refused(data: Path, tiny_checkpoint: Path, capsys) -> None:
    """It once replaced every `<id>_lesion.mha` label by the prediction, and the report showed DSC 1.000."""
    before = _digests(data)
    code = main(["predict", "--data", str(data), "--out", str(data / "3LABEL"), "--weights", str(tiny_checkpoint),
                 "--report"])
    _refused(capsys, code, "3LABEL/MGHNICU_", "_lesion.mha: this command would write there, but it is an input")
    assert _digests(data) == before


def test_a_manifest_s_labels_in_the_output_folder_are_refused(data: Path, tiny_checkpoint: Path, tmp_path: Path,
                                                              capsys) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    rows = ["case_id,adc,zadc,label"]
    for case in find_cases(data)[:2]:
        for path in (case.adc, case.z):
            shutil.copyfile(path, folder / path.name)
        shutil.copyfile(case.label, folder / f"{case.case_id}_lesion.mha")
        rows.append(f"{case.case_id},{case.adc.name},{case.z.name},{case.case_id}_lesion.mha")
    (folder / "cohort.csv").write_text("\n".join(rows) + "\n")
    before = _digests(folder)
    code = main(["predict", "--data", str(folder / "cohort.csv"), "--out", str(folder), "--weights",
                 str(tiny_checkpoint), "--mask-format", "nii.gz"])  # the .mha label is still an output name: refused
    _refused(capsys, code, "_lesion.mha: this command would write there, but it is an input")
    assert _digests(folder) == before


@pytest.mark.parametrize("how", ["same path", "symbolic link", "hard link"])
def test_one_case_onto_its_own_adc_is_refused(data: Path, tiny_checkpoint: Path, tmp_path: Path, how: str,
                                             capsys) -> None:
    case = find_cases(data)[0]
    out = {"same path": case.adc, "symbolic link": tmp_path / "link.mha", "hard link": tmp_path / "hard.mha"}[how]
    if how == "symbolic link":
        out.symlink_to(case.adc)
    elif how == "hard link":
        os.link(case.adc, out)
    before = case.adc.read_bytes()
    code = main(["predict", "--adc", str(case.adc), "--zadc", str(case.z), "--out", str(out), "--weights",
                 str(tiny_checkpoint)])
    _refused(capsys, code, str(out), "it is an input", case.adc.name)
    assert case.adc.read_bytes() == before


def test_package_over_its_own_checkpoint_is_refused(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    checkpoint = Path(shutil.copyfile(tiny_checkpoint, tmp_path / "ck.safetensors"))
    before = checkpoint.read_bytes()
    code = main(["package", "--weights", str(checkpoint), "--out", str(checkpoint)])
    _refused(capsys, code, "ck.safetensors: a model tarball is a .tar.gz file")
    (tmp_path / "model.tar.gz").symlink_to(checkpoint)
    code = main(["package", "--weights", str(checkpoint), "--out", str(tmp_path / "model.tar.gz")])
    _refused(capsys, code, "model.tar.gz: this command would write there, but it is an input")
    assert checkpoint.read_bytes() == before


def test_baseline_and_evaluate_never_write_over_their_inputs(data: Path, tmp_path: Path, capsys) -> None:
    before = _digests(data)
    _refused(capsys, main(["baseline", "--data", str(data), "--out", str(data / "3LABEL")]), "it is an input")
    cases = find_cases(data)
    manifest = tmp_path / "scores" / "scores.csv"  # a manifest where evaluate writes its table
    manifest.parent.mkdir()
    manifest.write_text("case_id,adc,zadc,label\n" + "".join(f"{c.case_id},{c.adc},{c.z},{c.label}\n" for c in cases))
    written = manifest.read_text()
    assert main(["baseline", "--data", str(data), "--out", str(tmp_path / "pred")]) == 0
    code = main(["evaluate", "--gt", str(manifest), "--pred", str(tmp_path / "pred"), "--out", str(manifest.parent)])
    _refused(capsys, code, "scores.csv: this command would write there, but it is an input")
    assert manifest.read_text() == written and _digests(data) == before


def test_training_over_its_own_config_file_is_refused(data: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    config = run / "config.json"
    config.write_text('{"train": {"epochs": 1}}\n')
    code = main(["train", "--data", str(data), "--config", str(config), "--out", str(run), "--device", "cpu"])
    _refused(capsys, code, "run/config.json: this command would write there, but it is an input")
    assert config.read_text() == '{"train": {"epochs": 1}}\n'


def test_a_mask_file_type_that_is_not_one_file_or_not_asked_for_is_refused(data: Path, tmp_path: Path,
                                                                          capsys) -> None:
    """`--out mask.mhd` once raised ValueError after the network had run; here the weights do not even exist."""
    case, absent = find_cases(data)[0], str(tmp_path / "absent.safetensors")
    one = ["predict", "--adc", str(case.adc), "--zadc", str(case.z), "--weights", absent, "--out"]
    _refused(capsys, main([*one, str(tmp_path / "mask.mhd")]), "mask.mhd: with --adc and --zadc files, name the mask")
    _refused(capsys, main([*one, str(tmp_path / "mask.mha"), "--mask-format", "nii.gz"]),
             "mask.mha is a .mha file but --mask-format says nii.gz")
    assert not list(tmp_path.glob("mask*"))


# Rule 2: a resume key covers every byte that made the mask

def _predict(data: Path, out: Path, checkpoint: Path, *options: str) -> int:
    return main(["predict", "--data", str(data), "--out", str(out), "--weights", str(checkpoint), "--device", "cpu",
                 *options])


def test_a_changed_raw_file_under_the_same_mhd_header_is_segmented_again(data: Path, tiny_checkpoint: Path,
                                                                         tmp_path: Path) -> None:
    import SimpleITK as sitk

    case = find_cases(data)[0]
    for path in (case.adc, case.z):  # the case as .mhd headers with .raw data files
        sitk.WriteImage(sitk.ReadImage(str(path)), str(path.with_suffix(".mhd")))
        path.unlink()
    out = tmp_path / "out"
    assert _predict(data, out, tiny_checkpoint) == 0
    raw = case.adc.with_suffix(".raw")
    values = np.fromfile(raw, dtype=read_image(case.adc.with_suffix(".mhd")).array.dtype)
    (values * 0.5).astype(values.dtype).tofile(raw)  # same header, other pixels
    assert _predict(data, out, tiny_checkpoint) == 0
    statuses = {cid: row["status"] for cid, row in _rows(out / "summary.csv").items()}
    assert statuses.pop(case.case_id) == "ok" and set(statuses.values()) == {"done earlier"}


@pytest.mark.slow
@pytest.mark.parametrize("kill", [("sparseg.batch:write_csv", "1", "after"),  # recorded in progress, nothing else
                                  ("sparseg.segment:write_mask", "1", "after"),  # its mask renamed into place
                                  ("sparseg.segment:write_bytes", "1", "after")])  # its overlay too
def test_a_run_killed_at_any_step_leaves_nothing_a_rerun_keeps_as_finished(data: Path, tiny_checkpoint: Path,
                                                                         tmp_path: Path, kill) -> None:
    """A run with other settings, killed between writing a case's mask and recording it, once left that mask to a
    rerun with the first settings, which kept it as "done earlier" under its own key."""
    straight, out = tmp_path / "straight", tmp_path / "out"
    assert _predict(data, straight, tiny_checkpoint, "--overlays") == 0
    assert _predict(data, out, tiny_checkpoint, "--overlays") == 0
    arguments = ["predict", "--data", str(data), "--out", str(out), "--weights", str(tiny_checkpoint), "--device",
                 "cpu", "--overlays", "--overwrite", "--min-lesion-mm3", "1e9"]  # other settings, other masks
    killed = subprocess.run([sys.executable, str(INTERRUPT), *kill, *arguments], capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    first = find_cases(data)[0].case_id
    assert _rows(out / "summary.csv")[first]["status"] == "in progress"
    assert _predict(data, out, tiny_checkpoint, "--overlays") == 0
    assert _rows(out / "summary.csv")[first]["status"] == "ok"  # segmented again, not kept
    for case in find_cases(data):
        name = f"{case.case_id}_lesion.mha"
        np.testing.assert_array_equal(read_image(out / name).array, read_image(straight / name).array)


def test_outputs_another_tool_wrote_over_are_not_kept(data: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The threshold baseline written into a batch's folder between two identical runs was kept as the network's."""
    out = tmp_path / "out"
    assert _predict(data, out, tiny_checkpoint) == 0
    assert main(["baseline", "--data", str(data), "--out", str(out)]) == 0  # same names, other masks
    assert _predict(data, out, tiny_checkpoint) == 0
    assert {row["status"] for row in _rows(out / "summary.csv").values()} == {"ok"}  # all segmented again


@pytest.mark.slow
def test_a_changed_label_redraws_the_overlay(data: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _predict(data, out, tiny_checkpoint, "--overlays") == 0
    case = find_cases(data)[0]
    label = read_image(case.label)
    write_image(1 - label.array, label.geometry, case.label)
    assert _predict(data, out, tiny_checkpoint, "--overlays") == 0
    statuses = {cid: row["status"] for cid, row in _rows(out / "summary.csv").items()}
    assert statuses.pop(case.case_id) == "ok" and set(statuses.values()) == {"done earlier"}


@pytest.mark.slow
def test_another_int8_model_of_the_same_weights_redoes_the_cases(data: Path, tmp_path: Path) -> None:
    """An int8 model is not made from the weights alone: quantized again, its masks can differ."""
    import openvino as ov
    import torch

    from sparseg.derived import INT8, OPENVINO, Derived, current
    from sparseg.model import build_model, read_metadata, save_checkpoint
    from sparseg.quantization import with_logit_offset

    from conftest import TINY_RUN

    torch.manual_seed(0)
    model = build_model(TINY_RUN.model, TINY_RUN.in_channels)
    mine = save_checkpoint(tmp_path / "net0" / "net.safetensors", model.eval(), TINY_RUN)
    weights = read_metadata(mine)["weights_sha256"]
    agreement = {"agreement": {"held_out_cases": 1, "holds": True, "dice_int8_vs_fp32": {"smallest": 1.0}}}
    fp32 = current(mine, OPENVINO, weights)
    for offset in (0.0, 0.5):  # stand-ins for two quantizations of one network: its logits shifted or not
        network = with_logit_offset(ov.Core().read_model(str(fp32.files[".xml"])), offset)
        Derived.of(mine, INT8).save(network, {"weights_sha256": weights, **agreement})
        assert _predict(data, tmp_path / "out", mine, "--precision", "int8") == 0
    assert {row["status"] for row in _rows(tmp_path / "out" / "summary.csv").values()} == {"ok"}


@pytest.mark.slow
def test_every_output_of_a_case_belongs_to_one_run(data: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _predict(data, out, tiny_checkpoint, "--save-probabilities", "--overlays") == 0
    assert _predict(data, out, tiny_checkpoint, "--tta") == 0  # redone without probabilities or overlays
    left = sorted(p.name for p in out.iterdir() if p.name.endswith((".png", "_probabilities.mha")))
    assert left == []
    assert _predict(data, out, tiny_checkpoint, "--save-probabilities", "--overlays") == 0
    broken = find_cases(data)[2]
    broken.z.write_bytes(b"not an image")
    assert _predict(data, out, tiny_checkpoint, "--save-probabilities", "--overlays") == 1
    assert not [p.name for p in out.iterdir() if p.name.startswith(broken.case_id)]


def test_an_empty_part_writes_its_summary_and_keeps_no_earlier_rows(data: Path, tiny_checkpoint: Path,
                                                                   tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _predict(data, out, tiny_checkpoint, "--part", "7", "--parts", "7") == 0  # six cases: part 7 has none
    summary = out / "summary_part7of7.csv"
    assert _rows(summary) == {} and summary.read_text().startswith("case_id,status,mask,")
    assert str(summary) in capsys.readouterr().out


def test_a_run_that_fails_leaves_no_earlier_output_that_looks_like_its_own(data: Path, tiny_checkpoint: Path,
                                                                           tmp_path: Path, capsys) -> None:
    cases = find_cases(data)
    mask = tmp_path / "mask.mha"
    one = ["predict", "--adc", str(cases[0].adc), "--weights", str(tiny_checkpoint), "--out", str(mask), "--zadc"]
    assert main([*one, str(cases[0].z)]) == 0 and mask.is_file()
    assert main([*one, str(cases[1].z)]) == 2  # another case's Z_ADC: another grid
    assert not mask.exists()
    scores = tmp_path / "scores"
    assert main(["baseline", "--data", str(data), "--out", str(tmp_path / "pred")]) == 0
    assert main(["evaluate", "--gt", str(data), "--pred", str(tmp_path / "pred"), "--out", str(scores)]) == 0
    (tmp_path / "pred" / f"{cases[0].case_id}_lesion.mha").write_bytes(b"damaged")
    assert main(["evaluate", "--gt", str(data), "--pred", str(tmp_path / "pred"), "--out", str(scores)]) == 2
    assert not any(scores.iterdir())
    capsys.readouterr()


# Rule 3: evaluate scores the masks the last run made

def test_after_a_switch_of_mask_format_evaluate_scores_the_current_masks(data: Path, tiny_checkpoint: Path,
                                                                         tmp_path: Path, capsys) -> None:
    """The folder once held both formats' masks after a rerun, and evaluate scored the stale .mha."""
    out = tmp_path / "out"
    assert _predict(data, out, tiny_checkpoint) == 0
    stale = {p.name: p.read_bytes() for p in out.glob("*_lesion.mha")}
    assert _predict(data, out, tiny_checkpoint, "--mask-format", "nii.gz") == 0
    assert not list(out.glob("*_lesion.mha")) and len(list(out.glob("*_lesion.nii.gz"))) == 6  # the rerun removed them
    assert main(["evaluate", "--gt", str(data), "--pred", str(out), "--out", str(tmp_path / "current")]) == 0
    for name, content in stale.items():  # put back, as a copy from elsewhere would; one of them wrong
        (out / name).write_bytes(content)
    first, second = (case.case_id for case in find_cases(data)[:2])
    (out / f"{first}_lesion.mha").write_bytes(stale[f"{second}_lesion.mha"])
    assert main(["evaluate", "--gt", str(data), "--pred", str(out), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "scores.csv").read_text() == (tmp_path / "current" / "scores.csv").read_text()
    (out / "summary.csv").unlink()  # nothing says which is current any more
    _refused(capsys, main(["evaluate", "--gt", str(data), "--pred", str(out), "--out", str(tmp_path / "x")]),
             f"{first} has 2 masks and no summary says which is current: {first}_lesion.mha, {first}_lesion.nii.gz")


def test_evaluate_takes_no_mask_of_a_case_the_last_run_did_not_finish(data: Path, tiny_checkpoint: Path,
                                                                      tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _predict(data, out, tiny_checkpoint) == 0
    rows = list(_rows(out / "summary.csv").values())
    rows[0]["status"] = "in progress"
    with open(out / "summary.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _refused(capsys, main(["evaluate", "--gt", str(data), "--pred", str(out), "--out", str(tmp_path / "s")]),
             f"no prediction for 1 case(s): {rows[0]['case_id']}")


# Rule 4: a header must agree with its data (files of every type; the bad-input matrix has the container's view)

def test_a_manifest_row_whose_adc_and_z_adc_are_one_file_is_refused(data: Path, tmp_path: Path) -> None:
    case = find_cases(data)[0]
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(f"case_id,adc,zadc\np1,{case.adc},{case.adc}\n")
    with pytest.raises(InputError, match=r"line 2 \(p1\): its ADC and Z_ADC are the same file"):
        find_any_cases(manifest)
    (tmp_path / "z.mha").symlink_to(case.adc)
    manifest.write_text(f"case_id,adc,zadc\np1,{case.adc},{tmp_path / 'z.mha'}\n")
    with pytest.raises(InputError, match="its ADC and Z_ADC are the same file"):
        find_any_cases(manifest)


# Rule 5: no traceback, no silent skip

def test_a_label_on_another_grid_is_flagged_in_the_report_not_a_traceback(data: Path, tiny_checkpoint: Path,
                                                                          tmp_path: Path) -> None:
    from dataclasses import replace

    case = find_cases(data)[0]
    label = read_image(case.label)
    smaller = replace(label.geometry, size_xyz=(label.geometry.size_xyz[0] - 2, *label.geometry.size_xyz[1:]))
    write_image(label.array[:, :, :-2], smaller, case.label)
    out = tmp_path / "out"
    assert _predict(data, out, tiny_checkpoint, "--report") == 0
    rows = _rows(out / "summary.csv")
    assert rows[case.case_id]["status"] == "ok" and "label on another grid" in rows[case.case_id]["flags"]
    assert "label on another grid" in (out / "report.html").read_text()


def test_an_absolute_or_unusable_pattern_is_one_line(data: Path, tmp_path: Path, capsys) -> None:
    code = main(["predict", "--data", str(data), "--adc", str(data / "*ADC_ss.mha"), "--zadc", "*clipped10.mha",
                 "--out", str(tmp_path / "o")])
    _refused(capsys, code, "a pattern names files inside --data")
    code = main(["predict", "--data", str(data), "--adc", "a**b_adc.mha", "--zadc", "*_z.mha", "--out",
                 str(tmp_path / "o")])
    _refused(capsys, code, "not a usable pattern")


def test_a_deeply_nested_checkpoint_header_is_one_line(data: Path, tmp_path: Path, capsys) -> None:
    """A safetensors header of deeply nested JSON raised RecursionError in predict and info --verify."""
    import json

    nested = json.dumps({"__metadata__": {"sparseg": "[" * 100_000 + "]" * 100_000}})
    body = nested.encode() + b" " * (-len(nested) % 8)
    checkpoint = tmp_path / "deep.safetensors"
    checkpoint.write_bytes(len(body).to_bytes(8, "little") + body)
    _refused(capsys, main(["info", str(checkpoint), "--verify"]), "deep.safetensors: not a SPARSeg checkpoint")
    case = find_cases(data)[0]
    code = main(["predict", "--adc", str(case.adc), "--zadc", str(case.z), "--out", str(tmp_path / "m.mha"),
                 "--weights", str(checkpoint), "--device", "cpu"])
    _refused(capsys, code, "deep.safetensors: not a SPARSeg checkpoint")


def test_a_file_name_with_a_newline_is_refused_not_skipped(tmp_path: Path) -> None:
    for name in ("ok_adc.mha", "ok_z.mha", "nl\nx_adc.mha", "nl\nx_z.mha"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(InputError, match=r"case id 'nl\\nx' holds a control character"):
        find_any_cases(tmp_path, "*_adc.mha", "*_z.mha")


def test_a_recursive_pattern_takes_every_level_and_names_cases_by_their_path(tmp_path: Path) -> None:
    for name in ("c_adc.mha", "c_z.mha", "s1/c_adc.mha", "s1/c_z.mha", "s2/x/d_adc.mha", "s2/x/d_z.mha"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = find_any_cases(tmp_path, "**/*_adc.mha", "**/*_z.mha")
    assert [case.case_id for case in found] == ["c", "s1_c", "s2_x_d"]
    assert found[1].adc == tmp_path / "s1" / "c_adc.mha"


# Messages

def test_manifest_problems_are_named_by_their_own_lines(tmp_path: Path) -> None:
    (tmp_path / "a.mha").write_bytes(b"x")
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("case_id,adc,zadc\n\np1,a.mha,missing.mha\n\n\np2,a.mha,also-missing.mha\n")
    with pytest.raises(InputError) as info:
        find_any_cases(manifest)
    assert "line 3 (p1): zadc missing.mha does not exist" in str(info.value)
    assert "line 6 (p2): zadc also-missing.mha does not exist" in str(info.value)


def test_a_manifest_that_is_a_folder_or_not_csv_says_so(tmp_path: Path) -> None:
    (tmp_path / "cohort.csv").mkdir()
    with pytest.raises(InputError, match="cohort.csv: a folder, not a CSV manifest"):
        find_any_cases(tmp_path / "cohort.csv")
    (tmp_path / "cohort.tsv").write_text("case_id\tadc\tzadc\n")
    with pytest.raises(InputError, match="cohort.tsv: a file, not a folder of cases; a manifest is a CSV file"):
        find_any_cases(tmp_path / "cohort.tsv")


def test_a_pattern_the_glob_matches_is_not_called_unmatched(tmp_path: Path) -> None:
    for name in ("1_adc.mha", "1_z.mha", "2_adc.mha", "2_z.mha", "3_adc.mha", "3_z.mha"):
        (tmp_path / name).write_bytes(b"x")
    assert [c.case_id for c in find_any_cases(tmp_path, "[12]*_adc.mha", "[12]*_z.mha")] == ["1", "2"]
    (tmp_path / "_adc.mha").write_bytes(b"x")
    (tmp_path / "_z.mha").write_bytes(b"x")
    with pytest.raises(InputError, match="'' is empty"):  # the * matched nothing: a file, but no case id
        find_any_cases(tmp_path, "*_adc.mha", "*_z.mha")


@pytest.mark.slow
def test_a_huge_manifest_s_error_lists_twenty_problems_and_counts_the_rest(tmp_path: Path) -> None:
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("case_id,adc,zadc\n" + "".join(f"p{k},a{k}.mha,z{k}.mha\n" for k in range(50_000)))
    with pytest.raises(InputError) as info:
        find_any_cases(manifest)
    message = str(info.value)
    assert message.count("does not exist") == 20 and message.endswith("; and 99980 more") and len(message) < 4000


# Second round: variants of each rule

def test_an_input_named_like_a_temporary_file_is_never_cleaned_up(data: Path, tiny_checkpoint: Path,
                                                                   tmp_path: Path) -> None:
    case = find_cases(data)[0]
    folder = tmp_path / "s"
    folder.mkdir()
    shutil.copyfile(case.adc, folder / ".partial-a.mha")
    shutil.copyfile(case.z, folder / "z.mha")
    (folder / ".partial-m.csv").write_text("case_id,adc,zadc\np1,.partial-a.mha,z.mha\n")
    mine = folder / ".partial-0123abcd-p1_lesion.mha"  # an interrupted run's temporary of this batch's mask
    mine.write_bytes(b"x")
    assert _predict(folder / ".partial-m.csv", folder, tiny_checkpoint) == 0
    assert (folder / ".partial-a.mha").is_file() and (folder / ".partial-m.csv").is_file() and not mine.exists()


def test_parts_leave_each_other_s_temporaries_alone(data: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    ids = sorted(case.case_id for case in find_cases(data))
    theirs = out / f".partial-0123abcd-{ids[1]}_lesion.mha"  # part 2's mask being written at this moment
    theirs.write_bytes(b"x")
    assert _predict(data, out, tiny_checkpoint, "--part", "1", "--parts", "2") == 0
    assert theirs.is_file()


def test_export_never_writes_over_its_checkpoint(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    """A derived file's name that is a link to the checkpoint itself: writing the export there would replace the
    weights."""
    checkpoint = Path(shutil.copyfile(tiny_checkpoint, tmp_path / "m.safetensors"))
    (tmp_path / "m.openvino.bin").symlink_to(checkpoint)
    _refused(capsys, main(["export", str(checkpoint)]), "m.openvino.bin: this command would write there")
    assert checkpoint.read_bytes() == tiny_checkpoint.read_bytes()


def test_an_export_made_at_start_up_never_writes_over_the_data(data: Path, tiny_checkpoint: Path, tmp_path: Path,
                                                                capsys) -> None:
    """A .mhd whose data file is named like the checkpoint's export beside it lost its pixels to the weights."""
    import SimpleITK as sitk

    folder = tmp_path / "w"
    folder.mkdir()
    checkpoint = Path(shutil.copyfile(tiny_checkpoint, folder / "t.safetensors"))
    case = find_cases(data)[0]
    sitk.WriteImage(sitk.ReadImage(str(case.adc)), str(folder / "c_adc.mhd"))
    (folder / "c_adc.raw").rename(folder / "t.openvino.bin")
    header = (folder / "c_adc.mhd").read_text()
    (folder / "c_adc.mhd").write_text(header.replace("= c_adc.raw", "= t.openvino.bin"))
    shutil.copyfile(case.z, folder / "c_z.mha")
    before = (folder / "t.openvino.bin").read_bytes()
    code = main(["predict", "--data", str(folder), "--adc", "*_adc.mhd", "--zadc", "*_z.mha", "--out",
                 str(tmp_path / "o"), "--weights", str(checkpoint), "--device", "cpu"])
    _refused(capsys, code, "t.openvino.bin: this command would write there, but it is an input")
    assert (folder / "t.openvino.bin").read_bytes() == before


def test_synth_never_writes_into_a_dataset(data: Path, capsys) -> None:
    before = _digests(data)
    _refused(capsys, main(["synth", "--out", str(data), "--cases", "2"]), "1ADC_ss: holds images already")
    assert _digests(data) == before


def test_cv_checks_its_scoring_outputs_before_any_fold_trains(data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cv"
    out.mkdir()
    (out / "out_of_fold").symlink_to(data / "3LABEL")
    config = Path(__file__).resolve().parent.parent / "resources" / "configs" / "smoke.json"
    code = main(["cv", "--data", str(data), "--config", str(config), "--out", str(out), "--device", "cpu"])
    _refused(capsys, code, "out_of_fold/MGHNICU_", "it is an input")
    assert not (out / "fold0").exists()


def test_an_output_differing_from_an_input_in_letter_case_only_is_refused(data: Path, tmp_path: Path,
                                                                          capsys) -> None:
    """On macOS, Windows or a Docker Desktop mount, P1_lesion.mha would replace the label P1_lesion.MHA."""
    folder = tmp_path / "m"
    folder.mkdir()
    case = find_cases(data)[0]
    for name, source in (("a.mha", case.adc), ("z.mha", case.z), ("P1_lesion.MHA", case.label)):
        shutil.copyfile(source, folder / name)
    (folder / "c.csv").write_text("case_id,adc,zadc,label\nP1,a.mha,z.mha,P1_lesion.MHA\n")
    _refused(capsys, main(["baseline", "--data", str(folder / "c.csv"), "--out", str(folder)]),
             "P1_lesion.mha: this command would write there, but it is an input")


def test_the_resume_key_holds_the_minimum_lesion_size_exactly(tiny_checkpoint: Path) -> None:
    from sparseg.weights import load_predictor

    settings = [load_predictor([tiny_checkpoint], "cpu", min_lesion_mm3=v).made_by()["settings"]
                for v in (1961848.0, 1961849.0)]
    assert settings[0] != settings[1] and "min_lesion_mm3=1961848.0" in settings[0]


@pytest.mark.slow
def test_a_rerun_removes_the_earlier_qa_page(data: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _predict(data, out, tiny_checkpoint, "--report") == 0
    assert _predict(data, out, tiny_checkpoint, "--min-lesion-mm3", "1e9") == 0
    assert not (out / "report.html").exists()


@pytest.mark.slow
def test_a_finished_run_resumed_with_more_epochs_is_not_finished_until_it_is(data: Path, tmp_path: Path) -> None:
    """Killed in its new epochs, such a run once kept finished.json, and `sparseg cv` scored its old network."""
    import json
    from dataclasses import replace

    from sparseg.config import to_dict
    from sparseg.train import FINISHED

    from conftest import TINY_RUN

    one = replace(TINY_RUN, train=replace(TINY_RUN.train, epochs=1, folds=3, batch_size=4, slices_per_epoch=8))
    configs = {}
    for epochs in (1, 2):
        configs[epochs] = tmp_path / f"e{epochs}.json"
        configs[epochs].write_text(json.dumps(to_dict(replace(one, train=replace(one.train, epochs=epochs)))))
    run = tmp_path / "run"
    train = ["train", "--data", str(data), "--out", str(run), "--device", "cpu", "--config"]
    first = subprocess.run([sys.executable, "-m", "sparseg", *train, str(configs[1])], capture_output=True)
    assert first.returncode == 0, first.stderr
    assert (run / FINISHED).is_file()
    killed = subprocess.run([sys.executable, str(INTERRUPT), "sparseg.train:plot_history", "1", "before", *train,
                             str(configs[2]), "--resume", "--allow-config-change"], capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (run / FINISHED).exists()


def test_a_baseline_that_fails_leaves_no_earlier_mask(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["baseline", "--data", str(data), "--out", str(out)]) == 0
    broken = find_cases(data)[2]
    broken.z.write_bytes(b"junk")
    assert main(["baseline", "--data", str(data), "--out", str(out)]) == 2
    assert not (out / f"{broken.case_id}_lesion.mha").exists()


def test_evaluate_takes_the_newest_summary_and_only_a_case_s_own_unchanged_mask(data: Path, tiny_checkpoint: Path,
                                                                                tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    for part in ("1", "2"):
        assert _predict(data, out, tiny_checkpoint, "--part", part, "--parts", "2", "--mask-format", "nii.gz") == 0
    assert _predict(data, out, tiny_checkpoint) == 0  # newer, whole, .mha
    assert main(["evaluate", "--gt", str(data), "--pred", str(out), "--out", str(tmp_path / "e1")]) == 0
    first = find_cases(data)[0]
    assert main(["baseline", "--data", str(data), "--out", str(out)]) == 0  # another tool writes the masks
    _refused(capsys, main(["evaluate", "--gt", str(data), "--pred", str(out), "--out", str(tmp_path / "e2")]),
             "_lesion.mha is not the mask its run wrote")
    assert _predict(data, out, tiny_checkpoint) == 0
    rows = list(_rows(out / "summary.csv").values())
    rows[0]["mask"] = f"../data/3LABEL/{first.case_id}_lesion.mha"  # a summary pointing elsewhere
    with open(out / "summary.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _refused(capsys, main(["evaluate", "--gt", str(data), "--pred", str(out), "--out", str(tmp_path / "e3")]),
             f"{first.case_id}: its summary names '../data/3LABEL/{first.case_id}_lesion.mha', which is not its mask "
             "in this folder")


def test_two_masks_differing_in_suffix_case_are_refused(data: Path, tmp_path: Path, capsys) -> None:
    pred = tmp_path / "pred"
    assert main(["baseline", "--data", str(data), "--out", str(pred)]) == 0
    case = find_cases(data)[0]
    shutil.copyfile(pred / f"{case.case_id}_lesion.mha", pred / f"{case.case_id}_lesion.nrrd")
    (pred / f"{case.case_id}_lesion.nrrd").rename(pred / f"{case.case_id}_lesion.NRRD")
    _refused(capsys, main(["evaluate", "--gt", str(data), "--pred", str(pred), "--out", str(tmp_path / "e")]),
             "has 2 masks and no summary says which is current")


def test_an_adc_and_z_adc_header_naming_one_data_file_are_refused(data: Path, tmp_path: Path) -> None:
    import SimpleITK as sitk

    case = find_cases(data)[0]
    sitk.WriteImage(sitk.ReadImage(str(case.adc)), str(tmp_path / "c_adc.mhd"))
    (tmp_path / "c_z.mhd").write_text((tmp_path / "c_adc.mhd").read_text())
    with pytest.raises(InputError, match="its ADC and Z_ADC are the same file"):
        find_any_cases(tmp_path, "*_adc.mhd", "*_z.mhd")


def test_an_empty_or_doubled_manifest_is_one_line(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"")
    with pytest.raises(InputError, match="a manifest needs the columns case_id, adc, zadc"):
        find_any_cases(manifest)
    manifest.write_text("case_id,adc,zadc,adc\np1,a.mha,z.mha,b.mha\n")
    with pytest.raises(InputError, match="the column adc appears more than once"):
        find_any_cases(manifest)


def test_a_class_pattern_matches_as_the_glob_does_and_non_files_are_named(tmp_path: Path) -> None:
    for name in ("a", "b", "^x"):
        for kind in ("adc", "z"):
            (tmp_path / f"{name}_{kind}.mha").write_bytes(b"x")
    assert [c.case_id for c in find_any_cases(tmp_path, "[!b]*_adc.mha", "[!b]*_z.mha")] == ["^x", "a"]
    assert [c.case_id for c in find_any_cases(tmp_path, "[^b]*_adc.mha", "[^b]*_z.mha")] == ["^x", "b"]  # fnmatch
    (tmp_path / "k_adc.mha").symlink_to(tmp_path / "nowhere")
    (tmp_path / "k_z.mha").symlink_to(tmp_path / "nowhere")
    with pytest.raises(InputError, match="k_adc.mha matches, but is a link to nothing"):
        find_any_cases(tmp_path, "*_adc.mha", "*_z.mha")


def test_every_problem_of_a_release_folder_is_in_one_error(data: Path) -> None:
    (data / "1ADC_ss" / "noid.mha").write_bytes(b"x")
    (data / "2Z_ADC" / "other.mha").write_bytes(b"x")
    next((data / "3LABEL").iterdir()).unlink()
    with pytest.raises(InputError) as info:
        find_cases(data)
    message = str(info.value)
    assert "1ADC_ss/ has files with no case id" in message and "2Z_ADC/ has files with no case id" in message
    assert "3LABEL/ lacks" in message


def test_ablate_refuses_two_configs_of_one_name(data: Path, tmp_path: Path, capsys) -> None:
    config = Path(__file__).resolve().parent.parent / "resources" / "configs" / "smoke.json"
    for folder in ("c1", "c2"):
        (tmp_path / folder).mkdir()
        shutil.copyfile(config, tmp_path / folder / "smoke.json")
    code = main(["ablate", "--data", str(data), "--configs", str(tmp_path / "c1" / "smoke.json"),
                 str(tmp_path / "c2" / "smoke.json"), "--out", str(tmp_path / "a"), "--device", "cpu"])
    _refused(capsys, code, "several files are named smoke")


# Round 4. Rule 3 for every reader of a run folder: what a page or a score shows is what the run wrote

def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _page_rows(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def test_the_page_scores_only_the_masks_the_run_wrote(data: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Copying a case's label over its mask once gave it DSC 1.000 on `sparseg report --data`, and a summary row
    naming a mask outside the folder was scored."""
    out = tmp_path / "out"
    assert _predict(data, out, tiny_checkpoint, "--report") == 0
    first, second = find_cases(data)[:2]
    shutil.copyfile(first.label, out / f"{first.case_id}_lesion.mha")
    rows = list(_rows(out / "summary.csv").values())
    rows[1]["mask"] = f"../data/3LABEL/{second.case_id}_lesion.mha"
    _write_rows(out / "summary.csv", rows)
    assert main(["report", str(out), "--data", str(data)]) == 0
    page = _page_rows(out / "report.html")
    assert "is not the mask its run wrote" in page and "not its mask in this folder" in page
    assert "1.000" not in page.split(first.case_id, 2)[1].split("</tr>")[0]  # its row shows no score


def test_evaluate_refuses_a_mask_no_summary_names(data: Path, tiny_checkpoint: Path, tmp_path: Path,
                                                   capsys) -> None:
    """A first run on two cases, a second on one into the same folder: the first run's other mask was scored."""
    out = tmp_path / "out"
    cases = find_cases(data)
    manifest = tmp_path / "two.csv"
    manifest.write_text("case_id,adc,zadc,label\n" + "".join(
        f"{c.case_id},{c.adc},{c.z},{c.label}\n" for c in cases[:2]))
    assert _predict(manifest, out, tiny_checkpoint) == 0
    manifest.write_text("case_id,adc,zadc,label\n" + f"{cases[0].case_id},{cases[0].adc},{cases[0].z},"
                        f"{cases[0].label}\n")
    assert _predict(manifest, out, tiny_checkpoint, "--overwrite") == 0
    assert set(_rows(out / "summary.csv")) == {cases[0].case_id}
    _refused(capsys, main(["evaluate", "--gt", str(data), "--pred", str(out), "--out", str(tmp_path / "e")]),
             f"{cases[1].case_id}: no summary of this folder names it, so {cases[1].case_id}_lesion.mha is an "
             "earlier run's")


def test_a_label_that_is_not_binary_is_read_by_one_rule_everywhere(data: Path, tiny_checkpoint: Path,
                                                                   tmp_path: Path, capsys) -> None:
    """A label of 0 and 0.5 was refused by evaluate and report --data, scored by predict --report, counted as
    lesion by training; one bad label stopped report --data whole and left the old page in place."""
    from sparseg.data import read_validation_case

    case = find_cases(data)[0]
    label = read_image(case.label)
    write_image(np.where(label.array > 0, 0.5, 0).astype(np.float32), label.geometry, case.label)
    out = tmp_path / "out"
    assert _predict(data, out, tiny_checkpoint, "--report") == 0  # the case is segmented, its label flagged
    assert _rows(out / "summary.csv")[case.case_id]["status"] == "ok"
    assert "label unusable: not scored" in _rows(out / "summary.csv")[case.case_id]["flags"]
    before = (out / "report.html").stat().st_mtime_ns
    assert main(["report", str(out), "--data", str(data)]) == 0
    assert (out / "report.html").stat().st_mtime_ns != before and "a mask holds 0 and 1 only" in _page_rows(
        out / "report.html")
    with pytest.raises(InputError, match="a mask holds 0 and 1 only, this holds 0.5 too"):
        read_validation_case(case)
    _refused(capsys, main(["evaluate", "--gt", str(data), "--pred", str(out), "--out", str(tmp_path / "e")]),
             "a mask holds 0 and 1 only")


@pytest.mark.parametrize("damage, fragment", [
    (lambda text: text.encode("utf-8") + b"\xff\xfe,x\n", "line 8: not UTF-8 text"),
    (lambda text: text.replace("case_id", "case", 1).encode(), "line 1: no case_id column"),
    (lambda text: b"", "empty: not a summary a run wrote"),
    (lambda text: text.replace(",ok,", "," + "x" * 200_000 + ",", 1).encode(), "line 2: "),
    (lambda text: text[: text.index("\n", text.index("\n") + 1) + 30].encode(), "line 3: "),
    (lambda text: text.replace("\n", ",extra\n", 3).encode(), "line 4: 19 cells where the header has 20"),
    (lambda text: text.replace("MGHNICU_", "../MGHNICU_", 1).encode(), "case id '../MGHNICU_"),
])
def test_a_damaged_summary_is_one_line_naming_the_file_and_line(data: Path, tiny_checkpoint: Path, tmp_path: Path,
                                                                capsys, damage, fragment: str) -> None:
    """sparseg report once said "0 cases" with exit 0, dropped cases, or gave a traceback."""
    out = tmp_path / "out"
    assert _predict(data, out, tiny_checkpoint, "--report") == 0
    (out / "summary.csv").write_bytes(damage((out / "summary.csv").read_text(encoding="utf-8")))
    _refused(capsys, main(["report", str(out)]), "summary.csv: ", fragment)
    assert not (out / "report.html").exists()  # the earlier page is not left to look like this one
    _refused(capsys, main(["evaluate", "--gt", str(data), "--pred", str(out), "--out", str(tmp_path / "e")]),
             "summary.csv: ", fragment)


def test_an_overlay_that_is_not_a_png_is_flagged_and_the_page_built(data: Path, tiny_checkpoint: Path,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _predict(data, out, tiny_checkpoint, "--report") == 0
    first, second = find_cases(data)[:2]
    (out / f"{first.case_id}_overlay.png").write_bytes(b"not a picture")
    picture = (out / f"{second.case_id}_overlay.png").read_bytes()
    (out / f"{second.case_id}_overlay.png").write_bytes(picture[:100] + picture[-12:])  # cut, its ends intact
    assert main(["report", str(out)]) == 0
    page = _page_rows(out / "report.html")
    assert f"{first.case_id}_overlay.png is not a whole PNG: not shown" in page
    assert f"{second.case_id}_overlay.png not shown: its files are not those its run wrote" in page
    rows = list(_rows(out / "summary.csv").values())  # a run that recorded no hash of its files (an older one)
    rows[1]["outputs_sha256"] = ""
    _write_rows(out / "summary.csv", rows)
    assert main(["report", str(out)]) == 0
    assert f"{second.case_id}_overlay.png does not decode" in _page_rows(out / "report.html")


def test_a_mask_of_the_whole_brain_is_not_taken_for_finding_every_lesion() -> None:
    """An all-ones mask scored lesion-wise F1 1.000 beside DSC 0.001."""
    from sparseg.lesions import lesion_counts

    truth = np.zeros((8, 32, 32), bool)
    for z, y, x in ((2, 4, 4), (2, 20, 20), (5, 10, 25), (6, 25, 8)):
        truth[z, y : y + 2, x : x + 2] = True
    counts = lesion_counts(truth, np.ones_like(truth), 0.001)
    assert counts["lesions_detected"] == 4 and counts["lesions_merged"] == 4
    separate = lesion_counts(truth, truth, 0.001)
    assert separate["lesions_merged"] == 0


# Round 4. Rule 2: every byte that made a mask is in its key, headers and detached data included

def _nhdr(volume, folder: Path, name: str, data_file: str) -> Path:
    """`volume` as a detached NRRD header `name` naming the raw file `data_file` (written beside it)."""
    array = np.ascontiguousarray(volume.array, dtype="<f4")
    array.tofile(folder / data_file)
    g = volume.geometry
    d = np.reshape(g.direction, (3, 3)) * np.array(g.spacing_xyz_mm)
    directions = " ".join(f"({d[0, i]},{d[1, i]},{d[2, i]})" for i in range(3))
    header = (f"NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\n"
              f"sizes: {' '.join(map(str, g.size_xyz))}\nspace directions: {directions}\n"
              f"kinds: domain domain domain\nendian: little\nencoding: raw\n"
              f"space origin: ({','.join(map(str, g.origin_xyz_mm))})\ndata file: {data_file}\n")
    (folder / name).write_text(header)
    return folder / name


def test_detached_nrrd_data_is_an_input_in_every_rule(data: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A changed data file kept the old mask; an output named like it replaced it; two headers naming it were not
    refused as one file."""
    from sparseg.io import image_files

    case = find_cases(data)[0]
    scans = tmp_path / "scans"
    scans.mkdir()
    adc, z = read_image(case.adc), read_image(case.z)
    _nhdr(adc, scans, "p1_adc.nhdr", "p1_adc.raw")
    _nhdr(z, scans, "p1_zadc.nhdr", "p1_zadc.raw")
    assert image_files(scans / "p1_adc.nhdr") == [scans / "p1_adc.nhdr", scans / "p1_adc.raw"]
    np.testing.assert_array_equal(read_image(scans / "p1_adc.nhdr").array, adc.array)
    out = tmp_path / "out"
    args = ["predict", "--data", str(scans), "--adc", "*_adc.nhdr", "--zadc", "*_zadc.nhdr", "--out", str(out),
            "--weights", str(tiny_checkpoint), "--device", "cpu"]
    assert main(args) == 0
    (adc.array * 0.5).astype("<f4").tofile(scans / "p1_adc.raw")
    assert main(args) == 0 and _rows(out / "summary.csv")["p1"]["status"] == "ok"  # done again, not kept
    with pytest.raises(InputError, match="is an input"):
        from sparseg.paths import require_apart

        require_apart([scans / "p1_adc.raw"], image_files(scans / "p1_adc.nhdr"))
    (scans / "p1_zadc.nhdr").write_text((scans / "p1_zadc.nhdr").read_text().replace("p1_zadc.raw", "p1_adc.raw"))
    with pytest.raises(InputError, match="its ADC and Z_ADC are the same file"):
        find_any_cases(scans, "*_adc.nhdr", "*_zadc.nhdr")


@pytest.mark.parametrize("listing", ["LIST", "pattern"])
def test_nrrd_data_in_several_files_is_every_one_of_them(tmp_path: Path, listing: str) -> None:
    from sparseg.io import image_files

    header = "NRRD0004\ntype: float\ndimension: 3\nsizes: 4 4 2\nencoding: raw\nendian: little\n"
    header += "data file: LIST\ns0.raw\ns1.raw\n" if listing == "LIST" else "data file: s%d.raw 0 1 1\n"
    (tmp_path / "v.nhdr").write_text(header)
    for index in range(2):
        np.full((4, 4), index, "<f4").tofile(tmp_path / f"s{index}.raw")
    assert image_files(tmp_path / "v.nhdr") == [tmp_path / "v.nhdr", tmp_path / "s0.raw", tmp_path / "s1.raw"]
    (tmp_path / "s1.raw").unlink()
    with pytest.raises(InputError, match="s1.raw missing"):
        read_image(tmp_path / "v.nhdr")


def test_header_fields_beyond_the_config_are_covered_by_the_hash(tiny_checkpoint: Path, tmp_path: Path,
                                                                capsys) -> None:
    """Emptying `data` turned the synthetic demo weights into "trained on real data", and info --verify still said
    "verified"."""
    from conftest import edit_checkpoint_header

    for field, change in {"data": lambda m: m.update(data={}), "notice": lambda m: m.update(notice="checked"),
                          "validation": lambda m: m.update(validation={"dsc": 0.99}), "epoch": lambda m: m.update(
                              epoch=99), "probe": lambda m: m["probe"]["logits"].__setitem__(0, 5.0)}.items():
        path = shutil.copyfile(tiny_checkpoint, tmp_path / f"{field}.safetensors")
        edit_checkpoint_header(path, change)
        _refused(capsys, main(["info", str(path), "--verify"]),
                 f"{field}.safetensors: the header was edited after the checkpoint was saved")
    # an earlier format is read, but cannot be verified whole: info --verify says which fields and fails
    older = shutil.copyfile(tiny_checkpoint, tmp_path / "older.safetensors")
    edit_checkpoint_header(older, lambda m: (m.update(format="sparseg-checkpoint/2", notice="x"), m.pop("probe")),
                           resign=True)
    assert main(["info", str(older), "--verify"]) == 1
    captured = capsys.readouterr()
    assert "NOT verified whole" in captured.out and "notice" in captured.out and "format" in captured.out
    assert captured.err.startswith("sparseg: error: ") and captured.err.count("\n") == 1
    # relabelling a /3 checkpoint as /2 (whose hash covers less) while keeping what only /3 writes is refused
    relabelled = shutil.copyfile(tiny_checkpoint, tmp_path / "relabelled.safetensors")
    edit_checkpoint_header(relabelled, lambda m: m.update(format="sparseg-checkpoint/2"), resign=True)
    _refused(capsys, main(["info", str(relabelled), "--verify"]),
             "relabelled.safetensors: says format sparseg-checkpoint/2 but holds the probe logits only")


@pytest.mark.slow
def test_an_export_of_another_network_under_a_forged_stamp_is_found_by_the_probe(tiny_checkpoint: Path,
                                                                                tmp_path: Path) -> None:
    """An OpenVINO export swapped for another network's, its stamp re-hashed, ran, and its masks were kept."""
    import json

    import torch

    from sparseg.derived import OPENVINO, Derived, make
    from sparseg.model import build_model, save_checkpoint
    from sparseg.networks import load_network
    from sparseg.paths import file_sha256
    from sparseg.runtime import resolve_runtime

    from conftest import TINY_RUN

    mine = shutil.copyfile(tiny_checkpoint, tmp_path / "mine.safetensors")
    torch.manual_seed(5)
    other = save_checkpoint(tmp_path / "other" / "other.safetensors", build_model(TINY_RUN.model, 3).eval(), TINY_RUN)
    made, theirs = make(mine), make(other)
    for extension, path in made.files.items():  # their network under my stamp, re-hashed to fit
        shutil.copyfile(theirs.files[extension], path)
    stamp = json.loads(made.stamp_path.read_text())
    stamp["files_sha256"] = {extension: file_sha256(path) for extension, path in made.files.items()}
    made.stamp_path.write_text(json.dumps(stamp))
    forged = Derived.of(mine, OPENVINO).identity()
    checkpoint, network = load_network(mine, resolve_runtime("cpu", "openvino", "fp32"))
    assert network.identity.startswith("openvino:") and network.identity != f"openvino:{forged}"  # made again
    assert Derived.of(mine, OPENVINO).stale_because(checkpoint.metadata["weights_sha256"]) is None


def test_export_writes_nothing_unless_every_checkpoint_is_good(tiny_checkpoint: Path, tmp_path: Path,
                                                               capsys) -> None:
    good = shutil.copyfile(tiny_checkpoint, tmp_path / "good.safetensors")
    damaged = shutil.copyfile(tiny_checkpoint, tmp_path / "damaged.safetensors")
    content = bytearray(damaged.read_bytes())
    content[-10] ^= 0xFF
    damaged.write_bytes(bytes(content))
    for second in (tmp_path / "missing.safetensors", damaged):
        _refused(capsys, main(["export", str(good), str(second)]), second.name)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.safetensors", "good.safetensors"]


def test_checkpoints_whose_names_differ_in_letter_case_only_are_refused(tiny_checkpoint: Path, tmp_path: Path,
                                                                        capsys) -> None:
    """a.safetensors and a.SAFETENSORS shared a.openvino.* and a.int8.*, and were packed twice under one name."""
    lower = shutil.copyfile(tiny_checkpoint, tmp_path / "a.safetensors")
    upper = shutil.copyfile(tiny_checkpoint, tmp_path / "a.SAFETENSORS")
    _refused(capsys, main(["export", str(lower)]), "a.SAFETENSORS beside it differs from its name in letter case")
    _refused(capsys, main(["package", "--weights", str(lower), str(upper), "--out", str(tmp_path / "m.tar.gz")]),
             "differs from its name in letter case")
    assert not list(tmp_path.glob("*.openvino.*")) and not (tmp_path / "m.tar.gz").exists()


@pytest.mark.slow
def test_a_killed_export_s_staging_folder_is_removed_by_the_next(tiny_checkpoint: Path, tmp_path: Path) -> None:
    import socket

    from sparseg.derived import make

    checkpoint = shutil.copyfile(tiny_checkpoint, tmp_path / "c.safetensors")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    killed = tmp_path / f".partial-0123abcd-{socket.gethostname()}-{dead}-openvino"
    elsewhere = tmp_path / f".partial-0123abcd-another-host-{dead}-openvino"
    for folder in (killed, elsewhere):
        folder.mkdir()
        (folder / "c.openvino.bin").write_bytes(b"half")
    make(checkpoint)
    assert not killed.exists() and elsewhere.exists()


@contextlib.contextmanager
def _read_only_copy(checkpoint: Path, folder: Path) -> Iterator[Path]:
    """A copy of `checkpoint` in `folder`, bind-mounted read-only for the block (as /opt/ml/model/ is); the test is
    skipped where that needs root or cannot be done."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a read-only folder (CI runs as root)")
    folder.mkdir()
    copy = Path(shutil.copyfile(checkpoint, folder / "c.safetensors"))
    if subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True, capture_output=True)
        yield copy
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_a_checkpoint_in_a_read_only_folder_leaves_no_temporary_export(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Each run left a /tmp/sparseg-openvino-* folder behind (6.6 MB for the demo network)."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    with _read_only_copy(tiny_checkpoint, tmp_path / "ro") as checkpoint:
        probe = ("from sparseg.networks import load_network; from sparseg.runtime import resolve_runtime; "
                 f"load_network({str(checkpoint)!r}, resolve_runtime('cpu', 'openvino', 'fp32'))")
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                env={**os.environ, "TMPDIR": str(temporary)})
        assert result.returncode == 0, result.stderr
        assert list(temporary.iterdir()) == []


def test_quantize_into_a_folder_it_cannot_write_is_refused_before_calibrating(data: Path, tiny_checkpoint: Path,
                                                                             tmp_path: Path, capsys) -> None:
    """It calibrated and exported twice (99 s) before failing to write its stamp."""
    with _read_only_copy(tiny_checkpoint, tmp_path / "ro") as checkpoint:
        _refused(capsys, main(["quantize", str(checkpoint), "--data", str(data)]),
                 f"{checkpoint.parent}: cannot write there")


# Round 4. Rule 5 and the smaller items: no traceback, no silent skip

@pytest.mark.parametrize("variable, value", [("SLURM_ARRAY_TASK_ID", "²"), ("SLURM_ARRAY_TASK_ID", "--1"),
                                             ("SLURM_ARRAY_TASK_MIN", "²"), ("SLURM_ARRAY_TASK_COUNT", "9" * 5000),
                                             ("JOB_COMPLETION_INDEX", "--0")])
def test_scheduler_indices_are_ascii_digits_with_a_bound(variable: str, value: str) -> None:
    from sparseg.cases import resolve_part

    environ = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", variable: value}
    if variable == "JOB_COMPLETION_INDEX":
        environ = {variable: value}
    with pytest.raises(InputError, match=f"^{variable}=.*: not a whole number"):
        resolve_part(None, 2 if variable == "JOB_COMPLETION_INDEX" else None, environ)


def test_parts_default_to_the_array_s_count_even_with_part_given() -> None:
    from sparseg.cases import resolve_part

    assert resolve_part(2, None, {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"})[:2] == (2, 2)


def test_an_input_that_is_a_fifo_or_a_device_says_so(data: Path, tmp_path: Path) -> None:
    """They were reported as missing ("does not exist", "lacks <id>", "no image file found")."""
    case = find_cases(data)[0]
    os.mkfifo(tmp_path / "p1_adc.mha")
    shutil.copyfile(case.z, tmp_path / "p1_zadc.mha")
    (tmp_path / "p2_adc.mha").symlink_to("/dev/zero")
    shutil.copyfile(case.z, tmp_path / "p2_zadc.mha")
    with pytest.raises(InputError, match="p1_adc.mha matches, but is not a regular file"):
        find_any_cases(tmp_path, "*_adc.mha", "*_zadc.mha")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"case_id,adc,zadc\np2,p2_adc.mha,{case.z}\n")
    with pytest.raises(InputError, match="line 2 \\(p2\\): adc p2_adc.mha is not a regular file"):
        find_any_cases(manifest)
    with pytest.raises(InputError, match="p2_adc.mha: is not a regular file"):
        read_image(tmp_path / "p2_adc.mha")


def test_outputs_aliasing_inputs_in_any_folder_s_letter_case_are_refused(data: Path, tiny_checkpoint: Path,
                                                                        capsys) -> None:
    """`--out RELEASE/3LABEL` was refused, `--out RELEASE/3label` accepted."""
    _refused(capsys, _predict(data, data / "3label", tiny_checkpoint), "is an input")


def test_no_cell_from_a_name_reaches_a_spreadsheet_as_a_formula(tmp_path: Path) -> None:
    from sparseg.io import write_csv

    write_csv(tmp_path / "t.csv", [{"error": "=HYPERLINK(\"x\").mha: not a readable image", "value": "-0.5",
                                    "number": -2.0, "plain": "@home", "dash": "-x.mha"}])
    row = _rows_any(tmp_path / "t.csv")
    assert row == {"error": "'=HYPERLINK(\"x\").mha: not a readable image", "value": "-0.5", "number": "-2.0",
                   "plain": "'@home", "dash": "'-x.mha"}


def _rows_any(path: Path) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8") as handle:
        return next(csv.DictReader(handle))


@pytest.mark.parametrize("mark", ["\u200b", "\u200c", "\u200d", "\ufeff", "\u200e", "\u200f", "\u061c"])
def test_case_ids_with_invisible_characters_are_refused(mark: str) -> None:
    from sparseg.cases import case_id_problem

    assert "invisible" in (case_id_problem(f"case{mark}1") or "") or "bidirectional" in (
        case_id_problem(f"case{mark}1") or "")


def test_a_negative_zero_minimum_lesion_size_is_zero(data: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """`--min-lesion-mm3 -0` was recorded as -0.0, so a plain rerun redid every case."""
    out = tmp_path / "out"
    assert _predict(data, out, tiny_checkpoint, "--min-lesion-mm3", "-0") == 0
    assert _predict(data, out, tiny_checkpoint) == 0
    assert {row["status"] for row in _rows(out / "summary.csv").values()} == {"done earlier"}


def test_a_reader_that_goes_away_ends_the_command_quietly(tiny_checkpoint: Path) -> None:
    """`sparseg ... | head -1` ended with "sparseg: error: Broken pipe" and exit 2."""
    result = subprocess.run(f"{sys.executable} -m sparseg info {tiny_checkpoint} | head -c 1", shell=True,
                            capture_output=True, text=True, executable="/bin/bash")
    assert result.stdout == "{" and result.stderr == ""
    piped = subprocess.run(["bash", "-c", f"set -o pipefail; {sys.executable} -m sparseg info {tiny_checkpoint} | "
                                          "head -c 1 > /dev/null; echo ${PIPESTATUS[0]}"], capture_output=True,
                           text=True)
    assert piped.stdout.strip() in ("0", "141") and piped.stderr == ""


# Round 5: the hostile trial of the Z_ADC commands and of round 4's fixes

def test_the_page_shows_no_picture_the_run_did_not_write(data: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Copying case 2's overlay over case 1's once showed case 2's picture in case 1's row, without a flag."""
    out = tmp_path / "out"
    assert _predict(data, out, tiny_checkpoint, "--report") == 0
    first, second = find_cases(data)[:2]
    shutil.copyfile(out / f"{second.case_id}_overlay.png", out / f"{first.case_id}_overlay.png")
    assert main(["report", str(out)]) == 0
    page = _page_rows(out / "report.html")
    assert f"{first.case_id}_overlay.png not shown: its files are not those its run wrote" in page
    assert f'src="{first.case_id}_overlay.png"' not in page and f'src="{second.case_id}_overlay.png"' in page


def test_save_zadc_never_replaces_a_z_adc_no_run_computed(population_dataset: Path, tiny_checkpoint: Path,
                                                          tmp_path: Path, capsys) -> None:
    """A given `p1_zadc.mha` beside `p1_adc.mha` was replaced by the computed Z_ADC without a word."""
    from sparseg.synth import GENERATING_ATLAS

    case = find_cases(population_dataset)[12]
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copyfile(case.adc, folder / "p1_adc.mha")
    shutil.copyfile(case.z, folder / "p1_zadc.mha")
    before = _digests(folder)
    code = main(["predict", "--data", str(folder), "--adc", "*_adc.mha", "--atlas",
                 str(population_dataset / GENERATING_ATLAS), "--out", str(folder), "--save-zadc", "--weights",
                 str(tiny_checkpoint), "--device", "cpu"])
    _refused(capsys, code, "p1_zadc.mha: a Z_ADC file is there that no run into this folder computed")
    assert _digests(folder) == before


def test_outputs_a_rerun_would_read_as_cases_are_refused_at_the_first_run(data: Path, tiny_checkpoint: Path,
                                                                           tmp_path: Path, capsys) -> None:
    """`--adc '*.mha' --out` the same folder: the first run wrote b1_lesion.mha, and its rerun (the documented
    way to resume) then failed, the mask being a match of the pattern."""
    case = find_cases(data)[0]
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copyfile(case.adc, folder / "b1.mha")
    shutil.copyfile(case.z, folder / "b1.nrrd")
    code = main(["predict", "--data", str(folder), "--adc", "*.mha", "--zadc", "*.nrrd", "--out", str(folder),
                 "--weights", str(tiny_checkpoint), "--device", "cpu"])
    _refused(capsys, code, "its outputs (b1_lesion.mha", "would match --adc '*.mha'")
    assert sorted(p.name for p in folder.iterdir()) == ["b1.mha", "b1.nrrd"]


@pytest.mark.slow
def test_export_never_replaces_a_file_no_export_made(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    """A `.mhd` whose data file is named like the export's .bin: predict refused it, export replaced it."""
    folder = tmp_path / "dd"
    folder.mkdir()
    checkpoint = Path(shutil.copyfile(tiny_checkpoint, folder / "demo.safetensors"))
    (folder / "demo.openvino.bin").write_bytes(b"someone's pixels")
    _refused(capsys, main(["export", str(checkpoint)]),
             "demo.openvino.bin: is there, and no openvino of demo.safetensors made it")
    assert (folder / "demo.openvino.bin").read_bytes() == b"someone's pixels"
    (folder / "demo.openvino.bin").unlink()
    assert main(["export", str(checkpoint)]) == 0
    os.utime(checkpoint)  # an export it made is replaced when made again
    assert main(["export", str(checkpoint)]) == 0
