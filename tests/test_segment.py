"""One case segmented: `sparseg predict --adc A --zadc Z --out mask`, without any layout."""

from __future__ import annotations

from pathlib import Path

from sparseg.cli import main
from sparseg.io import read_geometry

from conftest import own_names


def test_one_case_without_any_layout(tiny_checkpoint: Path, tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    files = own_names(tiny_dataset, tmp_path, ".nii.gz")
    adc, z, _ = files["patient00"]
    assert main(["predict", "--adc", str(adc), "--zadc", str(z), "--out", str(tmp_path / "mask.nii.gz"),
                 "--weights", str(tiny_checkpoint)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert read_geometry(tmp_path / "mask.nii.gz").size_xyz == read_geometry(adc).size_xyz
    assert main(["predict", "--adc", str(adc), "--zadc", str(z), "--out", str(tmp_path / "mask.nii.gz"),
                 "--report", "--weights", str(tiny_checkpoint)]) == 2
    assert "--report: for a batch" in capsys.readouterr().err
