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


def test_a_mask_that_spills_out_of_the_brain_is_flagged() -> None:
    import numpy as np

    from sparseg.plausibility import spills_out

    adc = np.zeros((2, 10, 10), np.float32)
    adc[:, 2:8, 2:8] = 1000.0
    inside = np.zeros(adc.shape, bool)
    inside[:, 3:5, 3:5] = True
    assert spills_out(inside, adc) == [] and spills_out(np.zeros(adc.shape, bool), adc) == []
    assert spills_out(np.ones(adc.shape, bool), adc) == ["lesion outside the brain (64% of the mask)"]
