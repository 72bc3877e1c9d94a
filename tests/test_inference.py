from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from sparseg.config import InferenceConfig
from sparseg.errors import ConfigError, InputError
from sparseg.inference import Predictor, remove_small_components
from sparseg.io import Volume
from sparseg.metrics import dice
from sparseg.model import load_checkpoint
from sparseg.runtime import resolve_runtime
from sparseg.synth import SynthConfig, generate_case

from conftest import TINY_RUN

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
    with pytest.raises(InputError, match="tiny.safetensors: its preprocessing or threshold differs from .*tiny"):
        Predictor.eager([one, other], resolve_runtime("cpu", "torch", "fp32"))


def test_z_on_another_grid_is_named(tiny_checkpoint: Path, volumes) -> None:
    adc, z = volumes
    moved = Volume(z.array, replace(z.geometry, origin_xyz_mm=(0.0, 0.0, 50.0)), Path("zmap.mha"))
    with pytest.raises(InputError, match="zmap.mha: grid differs from the ADC image adc.mha .*origin"):
        Predictor.load([tiny_checkpoint], CPU).predict(adc, moved)


def test_small_components_are_removed_by_volume() -> None:
    mask = np.zeros((4, 10, 10), bool)
    mask[0, 0, 0] = True  # 1 voxel = 2 mm^3
    mask[2, 2:5, 2:5] = True  # 9 voxels = 18 mm^3
    mask[3, 5, 5] = True  # touches the block diagonally (26-connected): part of it
    kept = remove_small_components(mask, min_mm3=10.0, voxel_mm3=2.0)
    assert not kept[0, 0, 0] and kept[2, 2:5, 2:5].all() and kept[3, 5, 5]
    assert kept.sum() == 10


DEMO_WEIGHTS = Path(__file__).resolve().parent.parent / "model_weights" / "sparseg-demo.safetensors"


@pytest.mark.slow
@pytest.mark.parametrize("index", range(4))
def test_speed_settings_keep_the_trained_demo_mask(index: int) -> None:
    """The speed settings must not change the answer: Dice >= 0.999 against the fp32 full-frame reference,
    for the defaults and for the opt-in crop to the brain's box."""
    case = generate_case(11, index, SynthConfig())
    adc, z = Volume(case.adc, case.geometry, Path("adc.mha")), Volume(case.z, case.geometry, Path("z.mha"))
    checkpoint = load_checkpoint(DEMO_WEIGHTS)
    torch_fp32 = resolve_runtime("cpu", "torch", "fp32")
    reference = Predictor.eager([checkpoint], torch_fp32, inference=InferenceConfig(skip_empty_slices=False,
                                                                                    channels_last=False))
    expected = reference.predict(adc, z).mask
    assert expected.any()
    for settings in (InferenceConfig(), InferenceConfig(crop_to_brain=True)):
        got = Predictor.eager([checkpoint], torch_fp32, inference=settings).predict(adc, z).mask
        assert dice(expected, got) >= 0.999


def test_a_volume_without_brain_gets_an_empty_mask_without_running_the_network(tiny_checkpoint: Path, volumes) -> None:
    adc, z = volumes
    predictor = Predictor.load([tiny_checkpoint], CPU, inference=InferenceConfig(engine="torch"))  # a hook counts
    calls = []
    predictor.networks[0].module.register_forward_hook(lambda *args: calls.append(1))
    empty = Volume(np.zeros_like(adc.array), adc.geometry, adc.path)
    result = predictor.predict(empty, z)
    assert not result.mask.any() and not calls


def test_slices_without_brain_are_background(tiny_checkpoint: Path, volumes) -> None:
    adc, z = volumes
    array = adc.array.copy()
    array[:3] = 0
    result = Predictor.load([tiny_checkpoint], CPU).predict(Volume(array, adc.geometry, adc.path), z)
    assert result.mask[3:].any() and not result.probabilities[:3].any()


def test_only_the_opt_in_crop_narrows_the_frame(tiny_checkpoint: Path, volumes) -> None:
    # The tiny network predicts lesion wherever the input allows, so what it is run on shows in the output.
    adc, z = volumes
    array = np.zeros_like(adc.array)
    array[:, 20:30, 20:30] = adc.array[:, 20:30, 20:30]  # a small brain in a corner of the frame
    small = Volume(array, adc.geometry, adc.path)
    seen = {}
    for crop in (False, True):
        # no margin: the box is 32x32 of 64x64; torch, whose hook shows the frames
        settings = InferenceConfig(crop_to_brain=crop, crop_margin=0, engine="torch")
        predictor = Predictor.load([tiny_checkpoint], CPU, inference=settings)
        frames = []
        module = predictor.networks[0].module
        module.register_forward_hook(lambda _module, inputs, _out: frames.append(inputs[0].shape[2:]))
        predictor.predict(small, z)
        seen[crop] = set(frames)
    assert seen[False] == {torch.Size(TINY_RUN.preprocessing.slice_size)}
    assert seen[True] == {torch.Size((32, 32))}


def test_unknown_precisions_are_refused() -> None:
    with pytest.raises(ConfigError, match="^precision: unknown value 'fp8'"):
        InferenceConfig(precision="fp8")


@pytest.mark.slow
def test_an_ensemble_says_how_much_its_members_agree(tiny_checkpoint: Path, tmp_path: Path, volumes) -> None:
    """Mean pairwise Dice of the members' own masks: 1 for copies of one network, below 1 for other weights;
    NaN for one network; the ensemble's own mask is unchanged by measuring it."""
    from sparseg.inference import member_agreement
    from sparseg.model import build_model, save_checkpoint

    adc, z = volumes
    single = Predictor.load([tiny_checkpoint], CPU).predict(adc, z)
    assert np.isnan(single.member_agreement)
    copies = Predictor.load([tiny_checkpoint, tiny_checkpoint], CPU).predict(adc, z)
    assert copies.member_agreement == 1.0
    np.testing.assert_array_equal(copies.mask, single.mask)
    torch.manual_seed(7)
    other = save_checkpoint(tmp_path / "other.safetensors", build_model(TINY_RUN.model, TINY_RUN.in_channels).eval(),
                            TINY_RUN)
    mixed = Predictor.load([tiny_checkpoint, other], CPU)
    result = mixed.predict(adc, z)
    members = [Predictor.load([path], CPU).predict(adc, z).mask for path in (tiny_checkpoint, other)]
    assert result.member_agreement == pytest.approx(dice(members[0], members[1]))
    assert result.member_agreement < 1.0
    empty = np.zeros((2, 3, 3), bool)
    assert member_agreement([empty, empty, empty]) == 1.0 and np.isnan(member_agreement([empty]))
    assert member_agreement([empty, empty | True, empty]) == pytest.approx(1 / 3)
