"""Volume -> three-channel 256x256 axial slices, and per-slice maps back to the volume grid.

One function for training and inference (paper, section 3.1):

* ADC: negatives clipped to 0, the range [0, 3400] scaled to [0, 1];
* Z_ADC: clipped to [-10, 10] and scaled to [0, 1];
* prior: Z_ADC < -2 on the raw Z values, in {0, 1};
* stacked per axial slice (array axis 0) and resized to 256x256 by nearest neighbour.

Resizing: slices up to 256 pixels (all of BONBID-HIE) are resized by
centre-aligned nearest neighbour, as in the paper: output pixel i takes input
pixel floor((i + 0.5) * n_in / n_out). The inverse gives each original pixel
the resized pixel sampled from it, so a mask survives the round trip exactly.
Larger slices (users' own data) would lose whole rows to nearest neighbour,
so they are reduced by area averaging instead and maps come back to them by
linear interpolation. Channels are computed after resizing, so the prior
channel is binary in every case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparseg.config import PreprocessingConfig


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each of `n_out` outputs for a centre-aligned nearest resize of `n_in`."""
    out = np.arange(n_out, dtype=np.int64)
    return np.minimum((2 * out + 1) * n_in // (2 * n_out), n_in - 1)


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights averaging the input interval under each output pixel."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    pixels = np.arange(n_in)
    overlap = np.minimum(edges[1:, None], pixels + 1) - np.maximum(edges[:-1, None], pixels)
    return (np.clip(overlap, 0.0, None) * (n_out / n_in)).astype(np.float32)


def _linear_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) centre-aligned linear interpolation weights."""
    position = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    left = np.floor(position).astype(np.int64)
    right = np.minimum(left + 1, n_in - 1)
    fraction = position - left
    weights = np.zeros((n_out, n_in), dtype=np.float64)
    np.add.at(weights, (np.arange(n_out), left), 1.0 - fraction)
    np.add.at(weights, (np.arange(n_out), right), fraction)
    return weights.astype(np.float32)


def _along(stack: np.ndarray, operator: np.ndarray, axis: int) -> np.ndarray:
    """Resample one axis by an index array (selection) or a weight matrix (n_out, n_in)."""
    if operator.ndim == 1:
        return np.take(stack, operator, axis=axis)
    moved = np.tensordot(operator, stack.astype(np.float32, copy=False), axes=([1], [axis]))
    return np.moveaxis(moved, 0, axis)


def inverse_indices(n_orig: int, n_resized: int) -> np.ndarray:
    """For each of `n_orig` pixels, the resized pixel sampled from it or from its nearest sampled neighbour."""
    sampled = nearest_indices(n_orig, n_resized)  # non-decreasing source index of each resized pixel
    wanted = np.arange(n_orig)
    right = np.minimum(np.searchsorted(sampled, wanted, side="left"), n_resized - 1)
    left = np.maximum(right - 1, 0)
    use_left = np.abs(sampled[left] - wanted) < np.abs(sampled[right] - wanted)
    return np.where(use_left, left, right)


def resize_slices(stack: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the last two axes of `stack` to `size` (height, width), as the module docstring says.

    Shape: (..., h, w) -> (..., size[0], size[1]); dtype kept where no axis shrinks, else float32.
    """
    for axis, n_out in ((-2, size[0]), (-1, size[1])):
        n_in = stack.shape[axis]
        operator = nearest_indices(n_in, n_out) if n_in <= n_out else _area_weights(n_in, n_out)
        stack = _along(stack, operator, axis)
    return stack


def channel_maps(adc: np.ndarray, z: np.ndarray, config: PreprocessingConfig) -> dict[str, np.ndarray]:
    """The normalised channels of (z, y, x) ADC and Z_ADC arrays, each float32 in [0, 1]."""
    if adc.shape != z.shape:
        raise ValueError(f"ADC {adc.shape} and Z_ADC {z.shape} shapes differ")
    adc_lo, adc_hi = config.adc_range
    z_lo, z_hi = config.z_range
    maps = {}
    if "adc" in config.channels:
        maps["adc"] = (np.clip(adc, adc_lo, adc_hi) - adc_lo) / (adc_hi - adc_lo)
    if "z" in config.channels:
        maps["z"] = (np.clip(z, z_lo, z_hi) - z_lo) / (z_hi - z_lo)
    if "prior" in config.channels:
        maps["prior"] = z < config.z_threshold
    return {name: maps[name].astype(np.float32) for name in config.channels}


def to_slices(adc: np.ndarray, z: np.ndarray, config: PreprocessingConfig = PreprocessingConfig()) -> np.ndarray:
    """Stack the channels per axial slice and resize to the network's slice size.

    Shape: adc, z (D, H, W) -> (D, C, 256, 256) float32, C = len(config.channels).
    """
    if adc.shape != z.shape:
        raise ValueError(f"ADC {adc.shape} and Z_ADC {z.shape} shapes differ")
    resized = resize_slices(np.stack([adc, z]), config.slice_size)
    maps = channel_maps(resized[0], resized[1], config)
    return np.ascontiguousarray(np.stack([maps[name] for name in config.channels], axis=1))


def label_to_slices(label: np.ndarray, config: PreprocessingConfig = PreprocessingConfig()) -> np.ndarray:
    """A (D, H, W) mask resized like the inputs.

    Shape: -> (D, 256, 256) float32, {0, 1} (fractions at edges only for slices over 256).
    """
    return np.ascontiguousarray(resize_slices((label != 0).astype(np.float32), config.slice_size))


def from_slices(maps: np.ndarray, shape_yx: tuple[int, int]) -> np.ndarray:
    """Per-slice maps back to the original in-plane grid, the inverse of `to_slices`.

    Shape: (D, 256, 256) -> (D, H, W); same dtype up to 256, float32 for larger slices.
    """
    for axis, n_orig in ((-2, shape_yx[0]), (-1, shape_yx[1])):
        n_resized = maps.shape[axis]
        if n_orig <= n_resized:
            operator = inverse_indices(n_orig, n_resized)
        else:
            operator = _linear_weights(n_resized, n_orig)
        maps = _along(maps, operator, axis)
    return np.ascontiguousarray(maps)


@dataclass(frozen=True)
class BrainWindow:
    """The part of a case's resized slices that holds brain: which slices, and one in-plane box."""

    slices: np.ndarray
    """Indices of the slices with any brain (non-zero ADC)."""
    rows: slice
    cols: slice


def _span(hits: np.ndarray, n: int, margin: int, multiple: int) -> slice:
    """A window of `n` pixels around `hits` plus `margin`, its length rounded up to `multiple`."""
    lo, hi = int(hits[0]) - margin, int(hits[-1]) + 1 + margin
    length = -(-(hi - lo) // multiple) * multiple
    if length >= n:
        return slice(0, n)
    start = min(max(lo - (length - (hi - lo)) // 2, 0), n - length)
    return slice(start, start + length)


def brain_window(adc: np.ndarray, config: PreprocessingConfig, margin: int, multiple: int) -> BrainWindow:
    """Where the brain is on the resized slices of a (D, H, W) ADC volume (brain = non-zero ADC).

    The box is the union over slices of the brain's bounding box, widened by
    `margin` pixels and rounded up to a multiple of `multiple` (the network's
    total stride), within the slice. A volume with no brain gets no slices.
    """
    brain = resize_slices((adc != 0).astype(np.float32), config.slice_size) > 0
    slices = np.flatnonzero(brain.any(axis=(1, 2)))
    if slices.size == 0:
        return BrainWindow(slices, slice(0, 0), slice(0, 0))
    union = brain[slices].any(axis=0)
    rows = _span(np.flatnonzero(union.any(axis=1)), config.slice_size[0], margin, multiple)
    cols = _span(np.flatnonzero(union.any(axis=0)), config.slice_size[1], margin, multiple)
    return BrainWindow(slices, rows, cols)
