"""Typed configuration with the paper's defaults: the one source of every constant.

Each constant of the method (ADC range, Z-score range, prior threshold, slice
size, sigmoid threshold, scoring tolerance, burden strata) is defined here once.
Training saves these objects inside every checkpoint and inference rebuilds
from them, so nothing is retyped and nothing must match by luck.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sparseg.errors import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class PreprocessingConfig:
    """Volume -> three-channel axial slices (paper, section 3.1)."""

    adc_range: tuple[float, float] = (0.0, 3400.0)
    """ADC (1e-6 mm^2/s) is clipped to this range and scaled to [0, 1]."""
    z_range: tuple[float, float] = (-10.0, 10.0)
    """Z_ADC is clipped to this range and scaled to [0, 1]."""
    z_threshold: float = -2.0
    """The prior channel is Z_ADC < z_threshold, on the raw Z values."""
    slice_size: tuple[int, int] = (256, 256)
    """Every axial slice is resized (nearest neighbour) to (height, width)."""
    channels: tuple[str, ...] = ("adc", "z", "prior")
    """Which channels the network sees, in order (ablations drop some)."""


@dataclass(frozen=True)
class EvaluationConfig:
    """Scoring as the BONBID-HIE challenge does it."""

    nsd_tolerance_mm: float = 2.0
    """Normalised surface Dice tolerance."""
    burden_edges: tuple[float, float] = (0.01, 0.05)
    """Lesion burden (lesion voxels / non-zero ADC voxels) strata edges: <1%, 1-5%, >5%."""


@dataclass(frozen=True)
class ModelConfig:
    """The network (paper, section 3.2): UNet++, Inception-v4 encoder, scSE attention."""

    architecture: str = "UnetPlusPlus"
    """A segmentation_models_pytorch architecture class name."""
    encoder: str = "inceptionv4"
    attention: str | None = "scse"
    """Decoder attention: "scse" or None."""
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    init: str = "xavier_uniform"
    """Weight initialisation of convolutions: "xavier_uniform" (the paper) or "default"."""


@dataclass(frozen=True)
class LossConfig:
    """Tversky + Log-Hausdorff + Focal (paper, section 3.3-3.4), or Dice + Focal for the ablation."""

    name: str = "tlhf"
    """"tlhf" or "dice_focal"."""
    tversky_alpha: float = 0.3
    """Weight of false positives in the Tversky index."""
    tversky_beta: float = 0.7
    """Weight of false negatives in the Tversky index."""
    tversky_weight: float = 1.5
    log_hausdorff_weight: float = 2.0
    log_hausdorff_exponent: float = 2.0
    focal_gamma: float = 3.0
    focal_alpha: float | None = None
    """Class weight of positives in the focal term (1 - alpha for negatives); None weighs both equally."""
    focal_weight_start: float = 2.0
    focal_weight_end: float = 4.0
    """The focal weight is ramped linearly from start to end over the training epochs."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation (paper, section 3.4)."""

    epochs: int = 100
    batch_size: int = 16
    learning_rate: float = 1e-4
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    early_stopping_patience: int = 15
    folds: int = 5
    seed: int = 0
    augment: bool = True
    workers: int = 2
    slices_per_epoch: int | None = None
    """Train on a random subset of this many slices per epoch (None: all slices, as in the paper)."""
    record_samples: bool = False
    """Write the slice indices each process trained on (audits of distributed runs)."""


AUTO_BATCH_SIZE = {"cuda": 64, "cpu": 8}
"""Slices per forward pass by device type when `InferenceConfig.batch_size` is 0. On the CPU 8 is as fast as 16
(paper network, 256x256: 16.7 s against 16.3-16.8 s per 64-slice case) and peaks 0.9 GB lower (2.6 GB)."""


@dataclass(frozen=True)
class InferenceConfig:
    """How volumes go through the network at prediction time: speed settings, not part of the method.

    Each setting was kept because the inference benchmark (bench/inference.py)
    showed it pays; the masks stay within Dice 0.999 of the plain fp32
    full-frame reference (tests/test_inference.py).
    """

    skip_empty_slices: bool = True
    """Run only slices with brain (non-zero ADC); the others are background. Exact for the slices run
    (each slice goes through the 2D network alone), and no lesion lies outside the brain."""
    crop_to_brain: bool = False
    """Also crop the slices to the brain's bounding box over all slices, plus `crop_margin`: about 2x fewer
    pixels, but the network sees a different border. The demo network keeps Dice >= 0.999 with it; a
    briefly trained paper network did not (bench/crop.py), so it is off unless asked for."""
    crop_margin: int = 32
    """Pixels of the resized slice kept around the brain's bounding box."""
    crop_multiple: int = 32
    """Crop sides are rounded up to this: the network's total stride."""
    precision: str = "auto"
    """"auto": bf16 autocast on CUDA (fp16 where bf16 is missing) and on CPUs with native bf16; "fp32": none."""
    channels_last: bool = True
    """Feed the network NHWC tensors (faster convolutions on CPUs and tensor cores)."""
    batch_size: int = 0
    """Slices per forward pass; 0 picks `AUTO_BATCH_SIZE` for the device."""


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs; saved inside every checkpoint."""

    preprocessing: PreprocessingConfig = PreprocessingConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    threshold: float = 0.35
    """Sigmoid threshold of the final mask (paper, section 3.4)."""
    description: str = ""
    """What this configuration is for, in words; travels into the checkpoint."""

    @property
    def in_channels(self) -> int:
        return len(self.preprocessing.channels)


def run_config_from_dict(data: dict[str, Any]) -> RunConfig:
    """A RunConfig from a (possibly partial) nested dict; missing fields keep the paper's defaults."""
    sections = {"preprocessing": PreprocessingConfig, "model": ModelConfig, "loss": LossConfig, "train": TrainConfig}
    unknown = set(data) - set(sections) - {"threshold", "description"}
    if unknown:
        raise ValueError(f"unknown config sections: {sorted(unknown)}")
    kwargs: dict[str, Any] = {name: from_dict(cls, data.get(name, {})) for name, cls in sections.items()}
    if "threshold" in data:
        kwargs["threshold"] = float(data["threshold"])
    if "description" in data:
        kwargs["description"] = str(data["description"])
    return RunConfig(**kwargs)


def burden_group(burden: float, edges: tuple[float, float] = EvaluationConfig.burden_edges) -> str:
    """Name of the burden stratum of a lesion fraction, as in the paper's Table 3."""
    low, high = edges
    if burden < low:
        return f"<{low:.0%}"
    if burden <= high:
        return f"{low:.0%}-{high:.0%}"
    return f">{high:.0%}"


def burden_groups(edges: tuple[float, float] = EvaluationConfig.burden_edges) -> list[str]:
    """The stratum names in ascending order."""
    low, high = edges
    return [f"<{low:.0%}", f"{low:.0%}-{high:.0%}", f">{high:.0%}"]


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config dataclass from `to_dict` output; unknown keys are an error."""
    names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - set(names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def load_run_config(path: str | Path) -> RunConfig:
    """Read a JSON run config (resources/configs/*.json); fields left out keep the paper's defaults."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        return run_config_from_dict(data)
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file") from None
    except (json.JSONDecodeError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: not a valid run config ({exc})") from None
