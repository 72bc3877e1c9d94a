"""End to end: the container's entry point on the bundled sample cases, against stored expected masks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sparseg.cases import OUTPUT_MASK, find_input_case
from sparseg.io import read_geometry, read_mask

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(p.parent for p in (ROOT / "test").glob("*/input"))
DEMO_WEIGHTS = ROOT / "model_weights" / "sparseg-demo.safetensors"


def test_there_are_samples_and_demo_weights() -> None:
    assert len(SAMPLES) >= 3 and DEMO_WEIGHTS.is_file()


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_process_reproduces_the_expected_mask(sample: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "process.py"), "--input", str(sample / "input"), "--output", str(tmp_path),
         "--weights", str(DEMO_WEIGHTS), "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "synthetic data" in result.stderr  # the demo weights announce what they are
    produced, geometry = read_mask(tmp_path / OUTPUT_MASK)
    expected, expected_geometry = read_mask(sample / "expected" / OUTPUT_MASK)
    adc_geometry = read_geometry(find_input_case(sample / "input").adc)
    assert geometry == adc_geometry == expected_geometry
    np.testing.assert_array_equal(produced, expected)
