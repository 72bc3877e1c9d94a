from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from sparseg import cases, outputs
from sparseg.errors import InputError


def _touch_image(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.full((2, 3, 4), value, np.int16)), str(path))
    return path


def _release(root: Path, ids: list[str], labels: bool = True) -> Path:
    for value, cid in enumerate(ids):
        _touch_image(root / cases.ADC_DIR / cases.adc_name(cid), value)
        _touch_image(root / cases.Z_DIR / cases.z_name(cid), value)
        if labels:
            _touch_image(root / cases.LABEL_DIR / cases.label_name(cid), value)
    return root


def test_pairs_by_case_id_not_by_sort_order(tmp_path: Path) -> None:
    # Sorted, "MGHNICU_10" < "MGHNICU_9" for ADC while the Z files sort by their
    # "Zmap_" prefix; an extra ADC-only prefix scrambles the order further.
    ids = ["MGHNICU_9-VISIT_01", "MGHNICU_10-VISIT_02", "MGHNICU_100-VISIT_01"]
    root = _release(tmp_path / "BONBID2023_Train", ids)
    shutil.move(root / cases.ADC_DIR / cases.adc_name(ids[0]), root / cases.ADC_DIR / f"zz_{cases.adc_name(ids[0])}")
    found = cases.find_cases(tmp_path)  # the parent of the release folder works too
    assert [c.case_id for c in found] == sorted(ids)
    for case in found:
        assert case.case_id in case.adc.name and case.case_id in case.z.name and case.case_id in case.label.name
        values = {int(sitk.GetArrayFromImage(sitk.ReadImage(str(p))).max()) for p in (case.adc, case.z, case.label)}
        assert len(values) == 1


def test_unlabelled_release_has_no_labels(tmp_path: Path) -> None:
    found = cases.find_cases(_release(tmp_path, ["MGHNICU_001-VISIT_01"], labels=False))
    assert found[0].label is None
    with pytest.raises(InputError, match="no 3LABEL"):
        cases.find_cases(tmp_path, require_labels=True)


def test_unpaired_cases_are_listed(tmp_path: Path) -> None:
    root = _release(tmp_path, ["MGHNICU_001-VISIT_01", "MGHNICU_002-VISIT_01"])
    (root / cases.Z_DIR / cases.z_name("MGHNICU_002-VISIT_01")).unlink()
    (root / cases.LABEL_DIR / cases.label_name("MGHNICU_001-VISIT_01")).unlink()
    with pytest.raises(InputError) as info:
        cases.find_cases(root)
    message = str(info.value)
    assert "2Z_ADC/ lacks MGHNICU_002-VISIT_01" in message
    assert "3LABEL/ lacks MGHNICU_001-VISIT_01" in message


def test_duplicated_and_nameless_files_are_listed(tmp_path: Path) -> None:
    root = _release(tmp_path, ["MGHNICU_001-VISIT_01"])
    _touch_image(root / cases.ADC_DIR / "copy_of_MGHNICU_001-VISIT_01.mha")
    _touch_image(root / cases.ADC_DIR / "scan.mha")
    with pytest.raises(InputError) as info:
        cases.find_cases(root)
    message = str(info.value)
    assert "MGHNICU_001-VISIT_01 appears in 2 files" in message
    assert "no case id" in message and "scan.mha" in message


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="release layout"):
        cases.find_cases(tmp_path)
    with pytest.raises(InputError, match="no such folder"):
        cases.find_cases(tmp_path / "missing")


def _input_layout(root: Path, adc_names: list[str], z_names: list[str]) -> Path:
    for name in adc_names:
        _touch_image(root / cases.INPUT_ADC_DIR / name)
    for name in z_names:
        _touch_image(root / cases.INPUT_Z_DIR / name)
    return root


def test_input_layout_single_case(tmp_path: Path) -> None:
    root = _input_layout(tmp_path, ["a1b2.mha"], ["c3d4.mha"])
    case = cases.find_input_case(root)
    assert case.adc.name == "a1b2.mha" and case.z.name == "c3d4.mha" and case.label is None
    assert cases.find_any_cases(root) == [case]


def test_input_layout_takes_case_id_from_names(tmp_path: Path) -> None:
    cid = "MGHNICU_042-VISIT_01"
    root = _input_layout(tmp_path, [cases.adc_name(cid)], [cases.z_name(cid)])
    assert cases.find_input_case(root).case_id == cid


@pytest.mark.parametrize(
    "adc, z, fragment",
    [
        ([], ["z.mha"], "no image file"),
        (["a.mha", "b.mha"], ["z.mha"], "2 image files, expected exactly one"),
        (["MGHNICU_001-VISIT_01.mha"], ["MGHNICU_002-VISIT_01.mha"], "different cases"),
    ],
)
def test_input_layout_errors(tmp_path: Path, adc: list[str], z: list[str], fragment: str) -> None:
    root = _input_layout(tmp_path, adc, z)
    (root / cases.INPUT_ADC_DIR).mkdir(parents=True, exist_ok=True)
    with pytest.raises(InputError, match=fragment):
        cases.find_input_case(root)


def test_input_layout_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such folder"):
        cases.find_input_case(tmp_path)


def _flat(folder: Path, names: list[str]) -> Path:
    for name in names:
        _touch_image(folder / name)
    return folder


def test_a_flat_folder_pairs_by_what_the_patterns_stars_match(tmp_path: Path) -> None:
    folder = _flat(tmp_path, ["patient02_adc.nii.gz", "patient01_zadc.nii.gz", "patient01_adc.nii.gz",
                              "patient02_zadc.nii.gz"])
    (folder / "notes.txt").write_text("not a scan")
    found = cases.find_any_cases(folder, "*_adc.nii.gz", "*_zadc.nii.gz")
    assert [(c.case_id, c.adc.name, c.z.name) for c in found] == [
        ("patient01", "patient01_adc.nii.gz", "patient01_zadc.nii.gz"),
        ("patient02", "patient02_adc.nii.gz", "patient02_zadc.nii.gz")]


def test_unpaired_and_ambiguous_files_are_listed_in_one_error(tmp_path: Path) -> None:
    folder = _flat(tmp_path, ["a_adc.mha", "a_zadc.mha", "b_adc.mha", "c_zadc.mha", "d_adc.mha", "d_adc_zadc.mha"])
    with pytest.raises(InputError) as info:
        cases.find_any_cases(folder, "*_adc.mha", "*_zadc.mha")
    message = str(info.value)
    assert "no Z_ADC (*_zadc.mha) for: b, d" in message and "no ADC (*_adc.mha) for: c, d_adc" in message
    with pytest.raises(InputError, match="matched by both patterns: a_zadc.mha, c_zadc.mha, d_adc_zadc.mha"):
        cases.find_any_cases(folder, "*adc.mha", "*_zadc.mha")
    with pytest.raises(InputError, match="needs a \\* where the case id is"):
        cases.find_any_cases(folder, "a_adc.mha", "a_zadc.mha")
    with pytest.raises(InputError, match="go together"):
        cases.find_any_cases(folder, "*_adc.mha", None)


def test_a_manifest_names_any_files_relative_to_itself(tmp_path: Path) -> None:
    _flat(tmp_path / "scans", ["p1 adc.nii.gz", "p1 z.nii.gz", "p1 label.nii.gz"])
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("case_id,adc,zadc,label\np1,scans/p1 adc.nii.gz,scans/p1 z.nii.gz,scans/p1 label.nii.gz\n")
    (found,) = cases.find_any_cases(manifest)
    assert found.case_id == "p1" and found.adc == tmp_path / "scans" / "p1 adc.nii.gz"
    assert found.label == tmp_path / "scans" / "p1 label.nii.gz"
    assert cases.find_cases(manifest, require_labels=True) == [found]


def test_every_problem_of_a_manifest_is_listed(tmp_path: Path) -> None:
    _flat(tmp_path, ["a.mha", "z.mha"])
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("case_id,adc,zadc\np1,a.mha,z.mha\np1,a.mha,z.mha\np2,missing.mha,z.mha\n,a.mha,z.mha\n")
    with pytest.raises(InputError) as info:
        cases.find_any_cases(manifest)
    message = str(info.value)
    assert message.startswith(str(manifest))
    assert "line 3: case_id p1 repeated" in message and "line 4 (p2): adc missing.mha does not exist" in message
    assert "line 5: no case_id" in message
    manifest.write_text("id,adc\np1,a.mha\n")
    with pytest.raises(InputError, match="needs the columns case_id, adc, zadc"):
        cases.find_any_cases(manifest)
    manifest.write_text("case_id,adc,zadc\n../escape,a.mha,z.mha\n")
    with pytest.raises(InputError, match=r"case id '../escape' holds a /"):
        cases.find_any_cases(manifest)
    manifest.write_text("case_id,adc,zadc\np1,a.mha,z.mha\n")
    with pytest.raises(InputError, match="no label column"):
        cases.find_cases(manifest, require_labels=True)


def test_a_folder_of_input_folders_is_one_case_each(tmp_path: Path) -> None:
    for name in ("baby-b", "baby-a"):
        _input_layout(tmp_path / name, ["adc.mha"], ["z.mha"])
    found = cases.find_any_cases(tmp_path)
    assert [c.case_id for c in found] == ["baby-a", "baby-b"]
    assert found[0].adc == tmp_path / "baby-a" / cases.INPUT_ADC_DIR / "adc.mha"


def test_parts_are_disjoint_and_together_all_cases() -> None:
    everything = [cases.Case(f"c{i:02d}", Path(f"a{i}"), Path(f"z{i}")) for i in (7, 3, 11, 1, 5)]
    shares = [cases.batch_part(everything, part, 3) for part in range(3)]
    ids = [c.case_id for share in shares for c in share]
    assert sorted(ids) == sorted(c.case_id for c in everything) and len(set(ids)) == len(ids)
    assert outputs.part_name("summary.csv", 1, 3) == "summary_part2of3.csv"
    assert outputs.part_name("summary.csv", 0, 1) == "summary.csv"
    with pytest.raises(InputError):
        cases.batch_part(everything, 3, 3)


@pytest.mark.parametrize("adc, choice, expected", [("x.nii.gz", "auto", ".nii.gz"), ("x.NII", "auto", ".nii.gz"),
                                                   ("x.mha", "auto", ".mha"), ("x.nrrd", "auto", ".mha"),
                                                   ("x.mha", "nii.gz", ".nii.gz"), ("x.nii.gz", "mha", ".mha")])
def test_masks_take_the_input_format_unless_told(adc: str, choice: str, expected: str) -> None:
    assert outputs.mask_suffix(Path(adc), choice) == expected


PEOPLE_S_IDS = ["subject 1", "O'Brien", "twin a, visit 2", "Zoë Ångström", "<script>", "(b) [c] {d} #e $f% & ~",
                "x" * 200]
"""Case ids as clinical exports name files: all of them name outputs."""


@pytest.mark.parametrize("case_id", PEOPLE_S_IDS)
def test_a_case_id_is_any_name_a_file_can_have(case_id: str) -> None:
    assert cases.case_id_problem(case_id) is None


@pytest.mark.parametrize("case_id, problem", [
    ("", "is empty"), (".", "starts with ."), ("..", "starts with ."), ("a/b", "holds a /"),
    ("a\x00b", "control character"), ("tab\there", "control character"), ("line\nbreak", "control character"),
    ("\x7f", "control character"), ("-rf", "starts with -"), (".hidden", "starts with ."),
    ("é" * 101, "202 bytes of UTF-8, over 200"), ("bad\udcffbyte", "not valid UTF-8"),
    ('=HYPERLINK("x")', "starts with = (a spreadsheet would run it as a formula)"),
    ("+SUM(1)", "starts with +"), ("@x", "starts with @"), ("abc\u202efdp.exe", "bidirectional control"),
])
def test_a_case_id_that_cannot_name_a_file_is_refused_saying_why(case_id: str, problem: str) -> None:
    assert problem in cases.case_id_problem(case_id)


def test_every_unusable_id_of_a_manifest_is_named_in_one_error(tmp_path: Path) -> None:
    _flat(tmp_path, ["a.mha", "z.mha"])
    manifest = tmp_path / "cohort.csv"
    manifest.write_text('case_id,adc,zadc\n-x,a.mha,z.mha\n"a/b",a.mha,z.mha\nfine one,a.mha,z.mha\n')
    with pytest.raises(InputError) as info:
        cases.find_any_cases(manifest)
    assert "'-x' starts with -" in str(info.value) and "'a/b' holds a /" in str(info.value)
    assert "fine one" not in str(info.value)


def test_ids_with_spaces_and_accents_pair_by_pattern(tmp_path: Path) -> None:
    names = [f"{case_id}_{kind}.nii.gz" for case_id in ("subject 1", "Zoë", "O'Brien, J") for kind in ("adc", "zadc")]
    _flat(tmp_path, names)
    found = cases.find_any_cases(tmp_path, "*_adc.nii.gz", "*_zadc.nii.gz")
    assert [c.case_id for c in found] == sorted(["subject 1", "Zoë", "O'Brien, J"])


def test_ids_that_differ_only_in_case_or_normalisation_are_refused(tmp_path: Path) -> None:
    """They would write one file on macOS and Windows file systems (a volume shared with a cluster, a USB disk)."""
    _flat(tmp_path, ["a.mha", "z.mha"])
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("case_id,adc,zadc\nPatient,a.mha,z.mha\npatient,a.mha,z.mha\nb\u00e9b\u00e9,a.mha,z.mha\n"
                        "be\u0301be\u0301,a.mha,z.mha\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        cases.find_any_cases(manifest)
    assert "'Patient' and 'patient' differ only in letter case" in str(info.value)
    assert "'b\u00e9b\u00e9' and 'be\u0301be\u0301' differ only in letter case or Unicode" in str(info.value)


def test_a_job_array_s_index_chooses_the_part() -> None:
    """SLURM job arrays and Kubernetes Indexed Jobs: one script for every task; given options win."""
    assert cases.resolve_part(None, None, {}) == (1, 1, "--part/--parts")
    slurm = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1",
             "SLURM_ARRAY_TASK_STEP": "2"}  # --array=1-7:2: tasks 1, 3, 5, 7
    assert cases.resolve_part(None, None, slurm) == (4, 4, "SLURM_ARRAY_TASK_ID=7 of 4")
    assert cases.resolve_part(None, None, {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "3"})[:2] == (1, 3)
    assert cases.resolve_part(2, 5, slurm) == (2, 5, "--part/--parts")
    assert cases.resolve_part(None, 3, {"JOB_COMPLETION_INDEX": "2"}) == (3, 3, "JOB_COMPLETION_INDEX=2")
    with pytest.raises(InputError, match="JOB_COMPLETION_INDEX=2: a Kubernetes Indexed Job does not say how many"):
        cases.resolve_part(None, None, {"JOB_COMPLETION_INDEX": "2"})
    with pytest.raises(InputError, match=r"JOB_COMPLETION_INDEX=3: part 4 of 3: expected 1 <= part <= parts"):
        cases.resolve_part(None, 3, {"JOB_COMPLETION_INDEX": "3"})
    with pytest.raises(InputError, match="SLURM_ARRAY_TASK_ID='x': not a whole number"):
        cases.resolve_part(None, None, {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"})
    with pytest.raises(InputError, match="SLURM_ARRAY_TASK_ID=4: not a task of the array 1-...:2"):
        cases.resolve_part(None, None, {**slurm, "SLURM_ARRAY_TASK_ID": "4"})
    with pytest.raises(InputError, match="SLURM_ARRAY_TASK_COUNT is not: give --parts N"):
        cases.resolve_part(None, None, {"SLURM_ARRAY_TASK_ID": "1"})
    with pytest.raises(InputError, match=r"--part/--parts: part 3 of 2"):
        cases.resolve_part(3, 2, {})


def test_adc_alone_in_every_layout(tmp_path: Path) -> None:
    """With an atlas to compute Z_ADC, each layout gives its cases' ADC alone: no Z_ADC is needed or read."""
    flat = _flat(tmp_path / "flat", ["p1_adc.nii.gz", "p2_adc.nii.gz", "p2_zadc.nii.gz"])
    found = cases.find_any_cases(flat, "*_adc.nii.gz", None, with_zadc=False)
    assert [(c.case_id, c.adc.name, c.z) for c in found] == [("p1", "p1_adc.nii.gz", None),
                                                              ("p2", "p2_adc.nii.gz", None)]
    with pytest.raises(InputError, match="give --atlas or --zadc, not both"):
        cases.find_any_cases(flat, "*_adc.nii.gz", "*_zadc.nii.gz", with_zadc=False)
    manifest = tmp_path / "flat" / "cohort.csv"
    manifest.write_text("case_id,adc\np1,p1_adc.nii.gz\n")
    (from_manifest,) = cases.find_any_cases(manifest, with_zadc=False)
    assert from_manifest.z is None and from_manifest.adc == flat / "p1_adc.nii.gz"
    with pytest.raises(InputError, match="needs the columns case_id, adc, zadc"):
        cases.find_any_cases(manifest)
    release = tmp_path / "release"
    _touch_image(release / cases.ADC_DIR / cases.adc_name("MGHNICU_001-VISIT_01"))
    (release_case,) = cases.find_any_cases(release, with_zadc=False)
    assert release_case.z is None
    with pytest.raises(InputError, match="no 2Z_ADC/ folder"):
        cases.find_any_cases(release)
    single = tmp_path / "input"
    _touch_image(single / cases.INPUT_ADC_DIR / "baby.mha")
    (input_case,) = cases.find_any_cases(single, with_zadc=False)
    assert input_case.case_id == "baby" and input_case.z is None
    assert cases.case_inputs(input_case) == [single / cases.INPUT_ADC_DIR / "baby.mha"]
