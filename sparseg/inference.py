"""A trained network on whole volumes: ADC and Z_ADC in, lesion probabilities and the mask out.

The same preprocessing as training (`sparseg.preprocessing.to_slices`), all
slices of a case in as few forward passes as `batch_size` allows, mixed
precision on CUDA, the probabilities mapped back to the case's grid, and the
threshold (and optional small-component removal) that makes the mask.
`Predictor.predict` is the one path from volumes to a mask: the container
job, batch prediction and the trainer's validation all call it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from sparseg.config import AUTO_BATCH_SIZE, InferenceConfig, PreprocessingConfig, RunConfig
from sparseg.errors import InputError, SparsegError
from sparseg.io import Volume, require_same_grid
from sparseg.metrics import dice
from sparseg.model import Checkpoint
from sparseg.networks import Network, TorchNetwork, load_network
from sparseg.preprocessing import BrainWindow, brain_window, from_slices, to_slices
from sparseg.runtime import Runtime, resolve_runtime


def predict_slices(network: Network, slices: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Sigmoid probabilities of preprocessed slices. Shape: (D, C, H, W) -> (D, H, W) float32."""
    out = np.empty((slices.shape[0], *slices.shape[2:]), dtype=np.float32)
    for start in range(0, len(slices), batch_size):
        logits = torch.from_numpy(network(slices[start : start + batch_size]))
        out[start : start + len(logits)] = torch.sigmoid(logits)[:, 0].numpy()
    return out


@dataclass
class Prepared:
    """A case's network input, ready to run: what a background reader can make while the network is busy."""

    inputs: np.ndarray
    """(S, C, h, w) float32: the slices and in-plane box of `window`, preprocessed."""
    window: BrainWindow
    frame: tuple[int, int, int]
    """(D, H, W) of the resized slices (D slices of the network's frame)."""
    grid: tuple[int, int]
    """(H, W) of the case's own slices, where the probabilities go back to."""


@dataclass
class Prediction:
    """One case's result on its own grid."""

    probabilities: np.ndarray
    """(D, H, W) float32 mean lesion probability."""
    mask: np.ndarray
    """(D, H, W) bool, probabilities above the checkpoint's threshold (small components removed if asked)."""
    member_agreement: float = float("nan")
    """With two or more checkpoints (a fold ensemble): the mean Dice between the masks each member alone would
    make, over every pair (1 when all agree, an empty pair counting as agreeing); NaN with one checkpoint."""


class Predictor:
    """One or more networks loaded once, applied to case after case.

    Several checkpoints (a fold ensemble) are averaged in probability; they
    must share their preprocessing and threshold. `tta` adds the left-right
    and front-back flipped slices and averages the un-flipped results.
    `inference` holds the speed settings (slices with brain only, the optional
    crop to the brain's box, batch size); probabilities outside the slices and
    box run are 0. Each checkpoint's `Network` (`sparseg.networks`) runs where
    and how `runtime` says; the predictor does not know which engine it is.
    """

    def __init__(self, checkpoints: list[Checkpoint], networks: list[Network], runtime: Runtime, tta: bool = False,
                 min_lesion_mm3: float = 0.0, inference: InferenceConfig = InferenceConfig()) -> None:
        if not checkpoints or len(networks) != len(checkpoints):
            raise ValueError("one network per checkpoint, at least one")
        require_ensemble(checkpoints)
        self.config: RunConfig = checkpoints[0].config
        self.checkpoints, self.networks, self.runtime = checkpoints, networks, runtime
        self.tta, self.min_lesion_mm3, self.inference = tta, min_lesion_mm3, inference
        device = runtime.device.type
        self.batch_size = inference.batch_size or AUTO_BATCH_SIZE.get(device, AUTO_BATCH_SIZE["cpu"])

    @classmethod
    def load(cls, paths: list[Path], device: str | torch.device = "auto", **options) -> Predictor:
        """Checkpoint files, with the options of `__init__`, on the runtime that `device` and the settings'
        engine and precision resolve to (`runtime.resolve_runtime`)."""
        settings: InferenceConfig = options.get("inference", InferenceConfig())
        device = device.type if isinstance(device, torch.device) else device
        runtime = resolve_runtime(device, settings.engine, settings.precision)
        loaded = [load_network(path, runtime, settings) for path in paths]
        return cls([c for c, _ in loaded], [n for _, n in loaded], runtime, **options)

    @classmethod
    def eager(cls, checkpoints: list[Checkpoint], runtime: Runtime, **options) -> Predictor:
        """Checkpoints whose torch modules are at hand (a network still in training, for the trainer's
        validation; loaded ones), run by torch as they are."""
        channels_last = options.get("inference", InferenceConfig()).channels_last
        return cls(checkpoints, [TorchNetwork(c.module, runtime, channels_last) for c in checkpoints], runtime,
                   **options)

    def made_by(self) -> dict[str, str]:
        """What decides this predictor's masks besides the inputs: the checkpoints (each's sha256 covers its
        weights and run config, the threshold included; a network that is not the weights alone, an int8 model,
        adds its own identity) and the settings that change voxels."""
        on_off = {True: "on", False: "off"}
        return {
            "checkpoints_sha256": "+".join(c.sha256[:16] + (f"/{n.identity}" if n.identity else "")
                                           for c, n in zip(self.checkpoints, self.networks, strict=True)),
            "settings": f"tta={on_off[self.tta]} min_lesion_mm3={float(self.min_lesion_mm3)!r} "
                        f"{self.runtime.key()} crop_to_brain={on_off[self.inference.crop_to_brain]}",
        }

    def window(self, adc: np.ndarray) -> BrainWindow:
        """The slices and in-plane box of the resized slices that the network runs on, per the settings."""
        height, width = self.config.preprocessing.slice_size
        whole = (slice(0, height), slice(0, width))
        if not (self.inference.skip_empty_slices or self.inference.crop_to_brain):
            return BrainWindow(np.arange(adc.shape[0]), *whole)
        brain = brain_window(adc, self.config.preprocessing, self.inference.crop_margin, self.inference.crop_multiple)
        return brain if self.inference.crop_to_brain else BrainWindow(brain.slices, *whole)

    def prepare(self, adc: np.ndarray, z: np.ndarray) -> Prepared:
        """The network input of a case: its slices preprocessed (`to_slices`), those and the box the settings
        run (`window`). Numpy only, so it can run in another thread. Shape: adc, z (D, H, W)."""
        slices = to_slices(adc, z, self.config.preprocessing)
        window = self.window(adc)
        inputs = np.ascontiguousarray(slices[window.slices, :, window.rows, window.cols])
        return Prepared(inputs, window, (slices.shape[0], *slices.shape[2:]), adc.shape[1:])

    def run(self, prepared: Prepared) -> np.ndarray:
        """Mean probability over models (and flips) on the case's own grid. Shape: -> (D, H, W) float32."""
        return self._run(prepared)[0]

    def _run(self, prepared: Prepared) -> tuple[np.ndarray, list[np.ndarray]]:
        """`run`'s mean, and with two or more networks each one's own mean over the flips (on the case's grid)."""
        total = np.zeros(prepared.frame, dtype=np.float32)
        members = [np.zeros(prepared.frame, dtype=np.float32) for _ in self.networks] if len(self.networks) > 1 else []
        inputs, window = prepared.inputs, prepared.window
        if len(inputs):
            flips = [(), (-1,), (-2,)] if self.tta else [()]
            window_total = np.zeros((inputs.shape[0], *inputs.shape[2:]), dtype=np.float32)
            for number, network in enumerate(self.networks):
                for axes in flips:
                    flipped = np.flip(inputs, axis=axes) if axes else inputs
                    try:
                        out = predict_slices(network, flipped, self.batch_size)
                    except torch.OutOfMemoryError:
                        raise SparsegError(f"out of {self.runtime.device.type.upper()} memory with {self.batch_size} "
                                           "slices per forward pass: try a smaller --batch-size") from None
                    window_total += np.flip(out, axis=axes) if axes else out
                    if members:
                        members[number][window.slices, window.rows, window.cols] += (
                            (np.flip(out, axis=axes) if axes else out) / len(flips))
            total[window.slices, window.rows, window.cols] = window_total / (len(self.networks) * len(flips))
        return from_slices(total, prepared.grid), [from_slices(member, prepared.grid) for member in members]

    def probabilities(self, adc: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Mean probability over models (and flips). Shape: (D, H, W) -> (D, H, W) float32."""
        return self.run(self.prepare(adc, z))

    def mask(self, probabilities: np.ndarray, voxel_volume_mm3: float) -> np.ndarray:
        """Probabilities -> lesion mask: above the checkpoints' threshold, small components removed if asked."""
        mask = probabilities > self.config.threshold
        if self.min_lesion_mm3 > 0:
            mask = remove_small_components(mask, self.min_lesion_mm3, voxel_volume_mm3)
        return mask

    def predict(self, adc: Volume, z: Volume, prepared: Prepared | None = None) -> Prediction:
        """Check that ADC and Z_ADC share a grid, then segment on that grid (from `prepared`, their network
        input, when a reader made it already)."""
        require_same_grid(adc, z)
        probabilities, members = self._run(prepared or self.prepare(adc.array, z.array))
        voxel_mm3 = adc.geometry.voxel_volume_mm3
        return Prediction(probabilities=probabilities, mask=self.mask(probabilities, voxel_mm3),
                          member_agreement=member_agreement([self.mask(m, voxel_mm3) for m in members]))


def member_agreement(masks: list[np.ndarray]) -> float:
    """The mean Dice over every pair of `masks` (two empty masks agree: Dice 1); NaN for fewer than two."""
    pairs = [dice(a, b) for i, a in enumerate(masks) for b in masks[i + 1 :]]
    return float(np.mean(pairs)) if pairs else float("nan")


def require_ensemble(checkpoints: list[Checkpoint]) -> None:
    """Checkpoints averaged together must share their preprocessing and threshold; else InputError naming them."""
    first = checkpoints[0]
    for other in checkpoints[1:]:
        differing = []
        if other.config.threshold != first.config.threshold:
            differing.append(f"threshold {other.config.threshold} vs {first.config.threshold}")
        for name in PreprocessingConfig.__dataclass_fields__:
            mine, theirs = getattr(other.config.preprocessing, name), getattr(first.config.preprocessing, name)
            if mine != theirs:
                differing.append(f"preprocessing.{name} {list(mine) if isinstance(mine, tuple) else mine} vs "
                                 f"{list(theirs) if isinstance(theirs, tuple) else theirs}")
        if differing:
            raise InputError(f"{other.path or 'a checkpoint'}: its preprocessing or threshold differs from "
                             f"{first.path or 'the first checkpoint'}'s ({'; '.join(differing)}); checkpoints "
                             "that are averaged must share them")


def remove_small_components(mask: np.ndarray, min_mm3: float, voxel_mm3: float) -> np.ndarray:
    """Drop 26-connected components smaller than `min_mm3`."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:] * voxel_mm3
    keep = np.concatenate([[False], sizes >= min_mm3])
    return keep[labels]

