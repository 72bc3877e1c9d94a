from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sparseg.cli import main

COMMANDS = {"synth", "baseline", "evaluate", "train", "predict", "process", "package", "compare", "info",
            "export", "report", "quantize", "cv", "ablate", "atlas", "zmap"}
"""Every subcommand a user has: a new one is added here and to the README."""


def test_help_lists_every_command() -> None:
    """`sparseg --help` shows every command with its help line, and there is no command but these."""
    import argparse

    from sparseg.cli import build_parser

    result = subprocess.run([sys.executable, "-m", "sparseg", "--help"], capture_output=True, text=True, check=True)
    [commands] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) == COMMANDS
    listed = {line.split()[0] for line in result.stdout.splitlines() if line[:4] == "    " and line[4:5].isalpha()}
    assert listed == COMMANDS, listed
    helps = {action.dest: action.help for action in commands._choices_actions}
    for command in COMMANDS:
        assert helps[command] and helps[command].split()[0] in result.stdout


def test_synth_baseline_evaluate_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data, pred, scores = tmp_path / "data", tmp_path / "pred", tmp_path / "scores"
    assert main(["synth", "--out", str(data), "--cases", "3", "--seed", "4"]) == 0
    assert main(["baseline", "--data", str(data), "--out", str(pred)]) == 0
    assert main(["evaluate", "--gt", str(data), "--pred", str(pred), "--out", str(scores)]) == 0
    out = capsys.readouterr().out
    assert "| all | 3 |" in out
    summary = json.loads((scores / "summary.json").read_text())["summary"]
    assert summary["all"]["n"] == 3 and 0.0 <= summary["all"]["dsc"] <= 1.0


def test_user_error_is_one_line_with_exit_code_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sparseg", "evaluate", "--gt", str(tmp_path / "nope"), "--pred", str(tmp_path),
         "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("sparseg: error: ") and "nope" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sparseg", "--debug", "baseline", "--data", str(tmp_path / "nope"),
         "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_input_layout_needs_one_case(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["synth", "--out", str(tmp_path), "--layout", "input", "--cases", "2"]) == 2
    assert "exactly one case" in capsys.readouterr().err


def test_compare_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sample = Path(__file__).resolve().parent.parent / "test" / "MGHNICU_910-VISIT_01" / "expected"
    mask = next(sample.rglob("overlay.mha"))
    assert main(["compare", str(mask), str(mask)]) == 0
    assert "identical" in capsys.readouterr().out
    other = next((sample.parent.parent / "MGHNICU_913-VISIT_01" / "expected").rglob("overlay.mha"))
    assert main(["compare", str(other), str(mask), "--min-dice", "0"]) == 1  # both 256x256x22, other grids
    assert "DIFFERENT" in capsys.readouterr().out


def test_synth_fixed_shape(tmp_path: Path) -> None:
    from sparseg.io import read_geometry

    command = ["synth", "--out", str(tmp_path), "--layout", "input", "--cases", "1", "--size", "96", "--depth", "7"]
    assert main(command) == 0
    assert read_geometry(next(tmp_path.rglob("*ADC_ss.mha"))).size_xyz == (96, 96, 7)
    assert main(["synth", "--out", str(tmp_path / "bad"), "--size", "0"]) == 2


@pytest.mark.parametrize("cases", ["0", "-1"])
def test_synth_refuses_no_cases_in_one_line(tmp_path: Path, cases: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["synth", "--out", str(tmp_path / "out"), "--cases", cases]) == 2
    assert capsys.readouterr().err == f"sparseg: error: --cases must be 1 or more, not {cases}\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["nan", "-5", "inf"])
def test_an_impossible_min_lesion_size_is_refused(tiny_checkpoint: Path, tmp_path: Path, value: str, capsys) -> None:
    code = main(["predict", "--data", str(tmp_path), "--out", str(tmp_path / "o"), f"--min-lesion-mm3={value}",
                 "--weights", str(tiny_checkpoint)])
    assert code == 2 and "--min-lesion-mm3 must be a finite number of 0 or more" in capsys.readouterr().err


def test_own_scans_with_adc_alone_go_through_an_atlas(tiny_checkpoint: Path, population_dataset: Path,
                                                      tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The README's two commands for ADC-only scans: an atlas (here imported from the population's maps), then
    `predict --atlas`; and `zmap` alone, for one file and for a folder."""
    from sparseg.cases import find_cases
    from sparseg.io import read_image, write_image
    from sparseg.synth import GENERATING_ATLAS

    truth = population_dataset / GENERATING_ATLAS
    scans = tmp_path / "scans"
    for case in find_cases(population_dataset)[10:12]:
        volume = read_image(case.adc)
        write_image(volume.array, volume.geometry, scans / f"{case.case_id}_adc.mha")
    atlas = tmp_path / "atlas"
    assert main(["atlas", "import", "--mean", str(truth / "mean.mha"), "--sd", str(truth / "sd.mha"), "--mask",
                 str(truth / "mask.mha"), "--out", str(atlas), "--description", "the test population"]) == 0
    assert "wrote the atlas" in capsys.readouterr().out
    assert main(["predict", "--data", str(scans), "--adc", "*_adc.mha", "--atlas", str(atlas), "--out",
                 str(tmp_path / "masks"), "--report", "--save-zadc", "--weights", str(tiny_checkpoint),
                 "--device", "cpu"]) == 0
    names = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert names.count("report.html") == 1 and len([n for n in names if n.endswith("_zadc.mha")]) == 2
    one = scans / sorted(p.name for p in scans.iterdir())[0]
    assert main(["zmap", "--atlas", str(atlas), "--adc", str(one), "--out", str(tmp_path / "one_zadc.nii.gz")]) == 0
    assert "atlas overlap" in capsys.readouterr().out
    assert read_image(tmp_path / "one_zadc.nii.gz").geometry.differences(read_image(one).geometry) == []
    assert main(["predict", "--adc", str(one), "--atlas", str(atlas), "--out", str(tmp_path / "one.nii.gz"),
                 "--weights", str(tiny_checkpoint), "--device", "cpu"]) == 0
    assert main(["zmap", "--atlas", str(atlas), "--data", str(scans), "--adc", "*_adc.mha", "--out",
                 str(tmp_path / "z")]) == 0
    assert sorted(p.name for p in (tmp_path / "z").iterdir())[-1] == "zmap_summary.csv"


@pytest.mark.parametrize("arguments, fragment", [
    (["predict", "--data", "x", "--out", "y", "--save-zadc"], "--save-zadc keeps the Z_ADC computed from an atlas"),
    (["predict", "--adc", "a", "--zadc", "z", "--atlas", "at", "--out", "y"], "--atlas and --zadc z"),
    (["zmap", "--atlas", "nowhere", "--adc", "a.mha", "--out", "z.mha"], "a.mha: no such file"),
    (["atlas", "build", "--data", "nowhere", "--out", "at"], "nowhere: no such folder"),
])
def test_atlas_options_that_cannot_work_are_one_line_errors(arguments: list[str], fragment: str,
                                                            tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "sparseg", *arguments], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("sparseg: error: ") and fragment in result.stderr
    assert list(tmp_path.iterdir()) == []
