from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from sparseg.config import PreprocessingConfig
from sparseg.preprocessing import brain_window, from_slices, label_to_slices, nearest_indices, to_slices


def test_channels_follow_the_paper() -> None:
    adc = np.array([-50.0, 0.0, 1700.0, 3400.0, 5000.0], np.float32).reshape(1, 1, 5)
    z = np.array([-12.0, -10.0, -2.0, -1.99, 10.0], np.float32).reshape(1, 1, 5) - np.array([0, 0, 1e-3, 0, 0])
    config = PreprocessingConfig(slice_size=(32, 160))  # each of the 5 pixels becomes a 32x32 block
    x = to_slices(adc, z.astype(np.float32), config)[..., ::32, ::32]
    assert x.shape == (1, 3, 1, 5) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0, 0], [0.0, 0.0, 0.5, 1.0, 1.0])  # ADC: negatives -> 0, [0, 3400] -> [0, 1]
    np.testing.assert_allclose(x[0, 1, 0], [0.0, 0.0, 0.39995, 0.4005, 1.0], atol=1e-5)  # Z: [-10, 10] -> [0, 1]
    np.testing.assert_array_equal(x[0, 2, 0], [1, 1, 1, 0, 0])  # prior: raw Z < -2


def test_slices_are_256_square_and_channel_subset_is_respected() -> None:
    rng = np.random.default_rng(0)
    adc, z = rng.uniform(0, 3000, (4, 100, 120)), rng.uniform(-10, 10, (4, 100, 120))
    assert to_slices(adc, z).shape == (4, 3, 256, 256)
    only_z = to_slices(adc, z, PreprocessingConfig(channels=("z",)))
    np.testing.assert_array_equal(only_z[:, 0], to_slices(adc, z)[:, 1])


def test_nearest_indices_are_centre_aligned() -> None:
    np.testing.assert_array_equal(nearest_indices(2, 4), [0, 0, 1, 1])
    np.testing.assert_array_equal(nearest_indices(4, 2), [1, 3])
    np.testing.assert_array_equal(nearest_indices(5, 5), np.arange(5))


def _blobs(rng: np.random.Generator, shape: tuple[int, int, int], radius: int = 6) -> np.ndarray:
    """Scattered lesion-like discs (radius 6 px: about 4-7 mm at this dataset's in-plane spacing)."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disc = (yy**2 + xx**2) <= radius**2
    return ndimage.binary_dilation(rng.random(shape) < 0.0008, structure=disc[None])


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.mark.parametrize("size", [96, 97, 101, 128, 143, 160, 192, 211, 255, 256, 257, 270, 289, 301, 319, 320])
def test_mask_round_trip_dice(size: int) -> None:
    rng = np.random.default_rng(size)
    for shape in [(3, size, size), (3, size, max(96, size - 37))]:
        mask = _blobs(rng, shape)
        back = from_slices(label_to_slices(mask), shape[1:]) > 0.5
        assert back.shape == mask.shape
        assert _dice(mask, back) >= 0.99, (shape, _dice(mask, back))
        if max(shape[1:]) <= 256:
            np.testing.assert_array_equal(back, mask)  # up-sampling then back is exact


def test_large_slices_keep_a_binary_prior_and_soft_labels() -> None:
    rng = np.random.default_rng(3)
    shape = (2, 300, 310)
    adc, z = rng.uniform(0, 3000, shape), rng.uniform(-10, 10, shape)
    x = to_slices(adc, z)
    assert x.shape == (2, 3, 256, 256)
    assert set(np.unique(x[:, 2])) <= {0.0, 1.0}
    label = label_to_slices(_blobs(rng, shape))
    assert label.min() >= 0.0 and label.max() <= 1.0


@pytest.mark.parametrize("size", [64, 100, 160, 256, 300])
def test_brain_window_holds_the_brain_with_its_margin_on_a_stride_multiple(size: int) -> None:
    config = PreprocessingConfig()
    adc = np.zeros((5, size, size), dtype=np.float32)
    adc[1:4, size // 3 : size // 2, size // 4 : size // 2 + 3] = 1000.0
    window = brain_window(adc, config, margin=8, multiple=32)
    np.testing.assert_array_equal(window.slices, [1, 2, 3])
    brain = label_to_slices(adc != 0, config) > 0
    rows, cols = np.flatnonzero(brain.any(axis=(0, 2))), np.flatnonzero(brain.any(axis=(0, 1)))
    for span, hits in ((window.rows, rows), (window.cols, cols)):
        assert 0 <= span.start and span.stop <= 256
        assert (span.stop - span.start) % 32 == 0 or (span.start, span.stop) == (0, 256)
        assert span.start <= hits[0] - 8 or span.start == 0
        assert span.stop >= hits[-1] + 1 + 8 or span.stop == 256


def test_brain_window_of_a_volume_without_brain_is_empty() -> None:
    window = brain_window(np.zeros((4, 80, 80), dtype=np.float32), PreprocessingConfig(), margin=16, multiple=32)
    assert window.slices.size == 0


def test_brain_window_near_the_edge_stays_inside_the_slice() -> None:
    adc = np.zeros((2, 256, 256), dtype=np.float32)
    adc[:, 240:, :10] = 1.0
    window = brain_window(adc, PreprocessingConfig(), margin=32, multiple=32)
    assert window.rows.stop == 256 and window.cols.start == 0
    # 16 rows + 2 x 32 margin = 80 -> 96; 10 columns + 64 = 74 -> 96; both shifted back inside the slice.
    assert window.rows == slice(160, 256) and window.cols == slice(0, 96)
