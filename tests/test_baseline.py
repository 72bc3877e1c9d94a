from __future__ import annotations

from pathlib import Path

import numpy as np

from sparseg.baseline import run_baseline, threshold_mask
from sparseg.cases import find_cases
from sparseg.io import read_geometry, read_image, read_mask
from sparseg.outputs import prediction_name
from sparseg.synth import SynthConfig, write_input_case


def test_threshold_is_strict_and_on_raw_z() -> None:
    z = np.array([-3.0, -2.0, -1.9, 5.0]).reshape(1, 1, 4)
    np.testing.assert_array_equal(threshold_mask(z)[0, 0], [True, False, False, False])


def test_baseline_masks_sit_on_the_adc_grid(tiny_dataset: Path, tmp_path: Path) -> None:
    written = run_baseline(tiny_dataset, tmp_path)
    assert len(written) == 6
    for case in find_cases(tiny_dataset):
        mask, geometry = read_mask(tmp_path / prediction_name(case.case_id))
        assert geometry == read_geometry(case.adc)
        np.testing.assert_array_equal(mask, read_image(case.z).array < -2)


def test_baseline_reads_the_container_layout(tmp_path: Path) -> None:
    case = write_input_case(tmp_path / "input", seed=1, config=SynthConfig.tiny())
    [path] = run_baseline(tmp_path / "input", tmp_path / "out")
    assert path.name == prediction_name(case.case_id)


def test_z_off_the_adc_grid_is_refused_not_only_another_shape(tmp_path: Path) -> None:
    from dataclasses import replace

    import pytest

    from sparseg.errors import InputError
    from sparseg.io import write_image

    write_input_case(tmp_path / "input", seed=1, config=SynthConfig.tiny())
    z_path = next((tmp_path / "input").rglob("Zmap_*.mha"))
    z = read_image(z_path)
    shifted = replace(z.geometry, spacing_xyz_mm=tuple(v * 1.5 for v in z.geometry.spacing_xyz_mm))
    write_image(z.array, shifted, z_path)
    with pytest.raises(InputError, match=f"{z_path.name}: grid differs from the ADC image .*spacing"):
        run_baseline(tmp_path / "input", tmp_path / "out")
    assert not (tmp_path / "out").exists()
