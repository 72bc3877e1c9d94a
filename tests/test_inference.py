from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from sparseg.errors import InputError
from sparseg.inference import Predictor, remove_small_components
from sparseg.io import Volume
from sparseg.model import load_checkpoint
from sparseg.synth import SynthConfig, generate_case

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def volumes() -> tuple[Volume, Volume]:
    case = generate_case(3, 0, SynthConfig.tiny())
    return Volume(case.adc, case.geometry, Path("adc.mha")), Volume(case.z, case.geometry, Path("z.mha"))


def test_probabilities_and_mask_on_the_case_grid(tiny_checkpoint: Path, volumes) -> None:
    adc, z = volumes
    result = Predictor.load([tiny_checkpoint], CPU).predict(adc, z)
    assert result.probabilities.shape == adc.array.shape == result.mask.shape
    assert 0 <= result.probabilities.min() and result.probabilities.max() <= 1
    np.testing.assert_array_equal(result.mask, result.probabilities > 0.5)


def test_ensemble_of_one_model_twice_equals_the_model(tiny_checkpoint: Path, volumes) -> None:
    adc, z = volumes
    single = Predictor.load([tiny_checkpoint], CPU).probabilities(adc.array, z.array)
    double = Predictor.load([tiny_checkpoint, tiny_checkpoint], CPU).probabilities(adc.array, z.array)
    np.testing.assert_allclose(single, double, atol=1e-6)


def test_tta_averages_flipped_predictions(tiny_checkpoint: Path, volumes) -> None:
    adc, z = volumes
    plain = Predictor.load([tiny_checkpoint], CPU).probabilities
    with_tta = Predictor.load([tiny_checkpoint], CPU, tta=True).probabilities(adc.array, z.array)
    expected = [plain(adc.array, z.array)]
    for axis in (1, 2):  # left-right and front-back in (z, y, x)
        flip = lambda a: np.ascontiguousarray(np.flip(a, axis=axis))  # noqa: E731
        expected.append(flip(plain(flip(adc.array), flip(z.array))))
    np.testing.assert_allclose(with_tta, np.mean(expected, axis=0), atol=1e-5)
    assert not np.allclose(with_tta, expected[0])


def test_checkpoints_with_other_preprocessing_cannot_be_averaged(tiny_checkpoint: Path) -> None:
    one = load_checkpoint(tiny_checkpoint)
    other = replace(one, config=replace(one.config, threshold=0.35))
    with pytest.raises(InputError, match="cannot be averaged"):
        Predictor([one, other], CPU)


def test_z_on_another_grid_is_named(tiny_checkpoint: Path, volumes) -> None:
    adc, z = volumes
    moved = Volume(z.array, replace(z.geometry, origin_xyz_mm=(0.0, 0.0, 50.0)), Path("zmap.mha"))
    with pytest.raises(InputError, match="zmap.mha: Z_ADC grid differs from the ADC image adc.mha .*origin"):
        Predictor.load([tiny_checkpoint], CPU).predict(adc, moved)


def test_small_components_are_removed_by_volume() -> None:
    mask = np.zeros((4, 10, 10), bool)
    mask[0, 0, 0] = True  # 1 voxel = 2 mm^3
    mask[2, 2:5, 2:5] = True  # 9 voxels = 18 mm^3
    mask[3, 5, 5] = True  # touches the block diagonally (26-connected): part of it
    kept = remove_small_components(mask, min_mm3=10.0, voxel_mm3=2.0)
    assert not kept[0, 0, 0] and kept[2, 2:5, 2:5].all() and kept[3, 5, 5]
    assert kept.sum() == 10
