"""The container job: the one /input case -> a binary mask on the ADC image's grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from sparseg.cases import OUTPUT_MASK, find_input_case
from sparseg.container_job import run_container_job
from sparseg.io import read_geometry
from sparseg.synth import SynthConfig, generate_case, write_input_case
from sparseg.weights import load_predictor


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
