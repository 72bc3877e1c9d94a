"""A trained network on whole volumes: ADC and Z_ADC in, lesion probabilities and the mask out.

The same preprocessing as training (`sparseg.preprocessing.to_slices`), all
slices of a case in as few forward passes as `batch_size` allows, mixed
precision on CUDA, the probabilities mapped back to the case's grid, and the
threshold (and optional small-component removal) that makes the mask.
`Predictor.predict` is the one path from volumes to a mask: the container
job, batch prediction and the trainer's validation all call it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from sparseg.config import AUTO_BATCH_SIZE, InferenceConfig, PreprocessingConfig, RunConfig
from sparseg.engines import OpenVINONetwork, load_checkpoint_openvino
from sparseg.errors import InputError, SparsegError
from sparseg.hardware import autocast, precision_name, resolve_engine
from sparseg.io import Volume, require_same_grid
from sparseg.model import Checkpoint, load_checkpoint
from sparseg.preprocessing import BrainWindow, brain_window, from_slices, to_slices


@torch.inference_mode()
def predict_slices(model: nn.Module | OpenVINONetwork, slices: np.ndarray, device: torch.device, batch_size: int = 16,
                   precision: str = "fp32", channels_last: bool = True) -> np.ndarray:
    """Sigmoid probabilities of preprocessed slices. Shape: (D, C, H, W) -> (D, H, W) float32."""
    out = np.empty((slices.shape[0], *slices.shape[2:]), dtype=np.float32)
    if isinstance(model, OpenVINONetwork):
        for start in range(0, len(slices), batch_size):
            logits = torch.from_numpy(model(np.ascontiguousarray(slices[start : start + batch_size], np.float32)))
            out[start : start + len(logits)] = torch.sigmoid(logits)[:, 0].numpy()
        return out
    model.eval()
    pin = device.type == "cuda"
    for start in range(0, len(slices), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(slices[start : start + batch_size], dtype=np.float32))
        if pin:
            batch = batch.pin_memory()
        batch = batch.to(device, non_blocking=True)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        # optimized_execution(False): a traced network runs op by op like the eager one, with no
        # profiling runs on its first calls (they made a one-case job slower) and the same numbers.
        with autocast(device, precision), torch.jit.optimized_execution(False):
            logits = model(batch)
        out[start : start + len(batch)] = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
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


class Predictor:
    """One or more networks loaded once, applied to case after case.

    Several checkpoints (a fold ensemble) are averaged in probability; they
    must share their preprocessing and threshold. `tta` adds the left-right
    and front-back flipped slices and averages the un-flipped results.
    `inference` holds the speed settings (slices with brain only, the optional
    crop to the brain's box, engine, precision, batch size); probabilities
    outside the slices and box run are 0. Torch networks are moved to
    `device`, put in evaluation mode and in the memory format of the settings;
    OpenVINO networks (`sparseg.engines`) run as compiled.
    """

    def __init__(self, checkpoints: list[Checkpoint], device: torch.device, tta: bool = False,
                 min_lesion_mm3: float = 0.0, inference: InferenceConfig = InferenceConfig()) -> None:
        if not checkpoints:
            raise ValueError("no checkpoint given")
        require_ensemble(checkpoints)
        first = checkpoints[0].config
        memory_format = torch.channels_last if inference.channels_last else torch.contiguous_format
        kinds = {isinstance(c.model, OpenVINONetwork) for c in checkpoints}
        if len(kinds) > 1:
            raise ValueError("checkpoints of one predictor run on one engine")
        self.engine = "openvino" if kinds == {True} else "torch"
        if self.engine == "openvino" and device.type != "cpu":
            raise ValueError("OpenVINO networks run on the CPU")
        self.models = [c.model if self.engine == "openvino"
                       else c.model.to(device).eval().to(memory_format=memory_format) for c in checkpoints]
        self.config: RunConfig = first
        self.checkpoints = checkpoints
        self.device, self.tta, self.min_lesion_mm3, self.inference = device, tta, min_lesion_mm3, inference
        self.batch_size = inference.batch_size or AUTO_BATCH_SIZE.get(device.type, AUTO_BATCH_SIZE["cpu"])

    @classmethod
    def load(cls, paths: list[Path], device: torch.device, **options) -> Predictor:
        """Checkpoint files, with the options of `__init__`, on the engine the settings resolve to
        (`hardware.resolve_engine`): torch with the traced network beside each checkpoint where current, or
        OpenVINO with the export beside it (made now when missing or stale)."""
        settings: InferenceConfig = options.get("inference", InferenceConfig())
        if resolve_engine(device, settings.engine, settings.precision) == "openvino":
            precision = "int8" if settings.precision == "int8" else "bf16" if settings.precision == "bf16" else "fp32"
            return cls([load_checkpoint_openvino(p, precision) for p in paths], device, **options)
        return cls([load_checkpoint(p, device, traced=True) for p in paths], device, **options)

    def made_by(self) -> dict[str, str]:
        """What decides this predictor's masks besides the inputs: the checkpoints (each's sha256 covers its
        weights and run config, the threshold included; an int8 model's own bytes follow it, since it is not made
        from the weights alone) and the settings that change voxels."""
        on_off = {True: "on", False: "off"}

        def identity(checkpoint: Checkpoint) -> str:
            stamp = getattr(checkpoint.model, "stamp", {}) if self.precision == "int8" else {}
            model = hashlib.sha256(f"{stamp.get('xml_sha256')}{stamp.get('bin_sha256')}".encode()).hexdigest()
            return checkpoint.sha256[:16] + (f"/int8:{model[:16]}" if stamp else "")

        return {
            "checkpoints_sha256": "+".join(identity(c) for c in self.checkpoints),
            "settings": f"tta={on_off[self.tta]} min_lesion_mm3={float(self.min_lesion_mm3)!r} "
                        f"device={self.device.type} engine={self.engine} precision={self.precision} "
                        f"crop_to_brain={on_off[self.inference.crop_to_brain]}",
        }

    @property
    def precision(self) -> str:
        """What the networks compute in: fp32, bf16, fp16 or int8."""
        return precision_name(self.device, self.inference.precision, self.engine)

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
        total = np.zeros(prepared.frame, dtype=np.float32)
        inputs, window = prepared.inputs, prepared.window
        if len(inputs):
            flips = [(), (-1,), (-2,)] if self.tta else [()]
            window_total = np.zeros((inputs.shape[0], *inputs.shape[2:]), dtype=np.float32)
            for model in self.models:
                for axes in flips:
                    flipped = np.flip(inputs, axis=axes) if axes else inputs
                    try:
                        out = predict_slices(model, flipped, self.device, self.batch_size, self.inference.precision,
                                             self.inference.channels_last)
                    except torch.OutOfMemoryError:
                        raise SparsegError(f"out of {self.device.type.upper()} memory with {self.batch_size} slices "
                                           "per forward pass: try a smaller --batch-size") from None
                    window_total += np.flip(out, axis=axes) if axes else out
            total[window.slices, window.rows, window.cols] = window_total / (len(self.models) * len(flips))
        return from_slices(total, prepared.grid)

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
        probabilities = self.run(prepared or self.prepare(adc.array, z.array))
        return Prediction(probabilities=probabilities, mask=self.mask(probabilities, adc.geometry.voxel_volume_mm3))


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

