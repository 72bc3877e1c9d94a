"""Typed configuration with the paper's defaults: the one source of every constant.

Each constant of the method (ADC range, Z-score range, prior threshold, slice
size, sigmoid threshold, scoring tolerance, burden strata) is defined here once.
Training saves these objects inside every checkpoint and inference rebuilds
from them, so nothing is retyped and nothing must match by luck.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sparseg.errors import ConfigError, InputError

T = TypeVar("T")

CHANNELS = ("adc", "z", "prior")
"""The channels preprocessing can make: ADC, Z_ADC, and the prior Z_ADC < threshold."""
NETWORK_STRIDE = 32
"""Total down-sampling of the encoders (five halvings): slice sides and crops are multiples of it."""
ARCHITECTURES = ("Unet", "UnetPlusPlus")
"""segmentation_models_pytorch architectures with decoder attention (the paper's scSE)."""
ATTENTIONS = (None, "scse")
INITS = ("xavier_uniform", "default")
LOSS_NAMES = ("tlhf", "dice_focal")
"""The losses `sparseg.losses.build_loss` makes."""
DEVICES = ("auto", "cuda", "cpu")
"""Where a network runs. What "auto" means for this and `ENGINES` and `PRECISIONS` on a given machine is decided
in one place, `sparseg.runtime.resolve_runtime`."""
PRECISIONS = ("auto", "fp32", "bf16", "int8")
"""Inference precision: "fp32" never autocasts; "bf16" autocasts (on the CPU too: faster where it has native bf16,
but the masks may differ from fp32's by a few voxels); "int8" runs the checkpoint's int8 OpenVINO model, made by
`sparseg quantize` with its agreement with fp32 measured (CPU only)."""
CALIBRATION_SLICES = 300
"""Slices with brain that int8 calibration uses by default (NNCF's own default subset size)."""
MEMBER_AGREEMENT_FLAG = 0.7
"""Below this mean pairwise Dice between the members of an ensemble (`Prediction.member_agreement`), a case is
flagged "the models disagree: look" (docs/disagreement.md measures what the score says)."""
INT8_MIN_AGREEMENT = 0.99
"""The smallest Dice between int8 and fp32 masks, on every held-out case, for int8 to count as keeping the masks."""
PRESETS = ("performance", "mixed")
"""NNCF's quantization presets: symmetric activations, or asymmetric (`mixed`)."""


RECALIBRATIONS = ("off", "volume", "dice")
"""How the int8 model's logits may be shifted after calibration (`QuantizationConfig.recalibrate`)."""


@dataclass(frozen=True)
class QuantizationConfig:
    """How `sparseg quantize` makes an int8 model (docs/performance.md measures each setting)."""

    slices: int = CALIBRATION_SLICES
    """Calibration slices with brain, drawn from the checkpoint's training cases."""
    lesion_share: float = 0.0
    """The share of those slices drawn from slices whose label holds lesion (the rest at random among those with
    brain): the lesion-bearing slices are where int8 and fp32 masks differ."""
    preset: str = "performance"
    """NNCF's preset (`PRESETS`)."""
    fast_bias_correction: bool = True
    """NNCF's fast bias correction; False runs its full bias correction (slower, layer by layer)."""
    smooth_quant_alpha: float | None = None
    """SmoothQuant on the convolutions with this alpha (NNCF runs it only under its transformer model type, which
    this then sets); None: off."""
    recalibrate: str = "volume"
    """Shift the int8 model's logits (`RECALIBRATIONS`): "volume", so that at the checkpoint's threshold it marks as
    many voxels of the calibration slices as fp32 does; "dice", so that its masks there agree best with fp32's
    (pooled Dice); "off": no shift. The shift is part of the int8 model and recorded in its stamp;
    docs/engines.md measures the three on two anatomies: "volume" carried over to the other anatomy (int8's lesion
    volume 0.97-1.00 of fp32's there, against 0.83-0.97 without a shift), so it is the default."""
    accuracy_control: bool = False
    """NNCF's accuracy-aware quantization: layers whose int8 costs the most Dice against fp32 masks on the
    calibration slices go back to fp32 until the mean Dice is within 1 - `INT8_MIN_AGREEMENT` of 1."""

    def __post_init__(self) -> None:
        _require(isinstance(self.slices, int) and self.slices >= 1, "slices",
                 f"must be 1 or more, not {self.slices!r}")
        _require_number(self.lesion_share, "lesion_share", 0.0, 1.0)
        _require(self.preset in PRESETS, "preset", f"must be one of {', '.join(PRESETS)}, not {self.preset!r}")
        _require(self.recalibrate in RECALIBRATIONS, "recalibrate",
                 f"must be one of {', '.join(RECALIBRATIONS)}, not {self.recalibrate!r}")
        if self.smooth_quant_alpha is not None:
            _require_number(self.smooth_quant_alpha, "smooth_quant_alpha", 0.0, 1.0)


ENGINES = ("auto", "torch", "openvino")
"""What runs the network: torch, or OpenVINO (CPU only; its fp32 masks equal torch's, and it is faster:
docs/performance.md)."""


def _require(condition: bool, field: str, problem: str) -> None:
    if not condition:
        raise ConfigError(field, problem)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_number(value: Any, field: str, low: float | None = None, high: float | None = None,
                    low_open: bool = False) -> None:
    """A finite number within [low, high] (or (low, high] with `low_open`)."""
    _require(_is_number(value), field, f"expected a number, not {value!r}")
    if low is not None:
        _require(value > low if low_open else value >= low, field,
                 f"must be {'above' if low_open else 'at least'} {low:g}, not {value!r}")
    if high is not None:
        _require(value <= high, field, f"must be at most {high:g}, not {value!r}")


def _require_integer(value: Any, field: str, low: int) -> None:
    _require(_is_integer(value), field, f"expected a whole number, not {value!r}")
    _require(value >= low, field, f"must be at least {low}, not {value!r}")


def _require_choice(value: Any, field: str, choices: tuple) -> None:
    _require(value in choices, field, f"unknown value {value!r}; expected one of {', '.join(map(str, choices))}")


def _require_bool(value: Any, field: str) -> None:
    _require(isinstance(value, bool), field, f"expected true or false, not {value!r}")


def _require_range(value: Any, field: str) -> None:
    _require(isinstance(value, tuple) and len(value) == 2 and all(_is_number(v) for v in value), field,
             f"expected two numbers [low, high], not {value!r}")
    _require(value[0] < value[1], field, f"low {value[0]!r} must be below high {value[1]!r}")


Z_CLIP = 10.0
"""|Z_ADC| is at most this: the release clips its Z_ADC maps to [-10, 10] (`..._clipped10`), and the network scales
that range to [0, 1]."""


@dataclass(frozen=True)
class PreprocessingConfig:
    """Volume -> three-channel axial slices (paper, section 3.1)."""

    adc_range: tuple[float, float] = (0.0, 3400.0)
    """ADC (1e-6 mm^2/s) is clipped to this range and scaled to [0, 1]."""
    z_range: tuple[float, float] = (-Z_CLIP, Z_CLIP)
    """Z_ADC is clipped to this range and scaled to [0, 1]."""
    z_threshold: float = -2.0
    """The prior channel is Z_ADC < z_threshold, on the raw Z values."""
    slice_size: tuple[int, int] = (256, 256)
    """Every axial slice is resized (nearest neighbour) to (height, width)."""
    channels: tuple[str, ...] = CHANNELS
    """Which channels the network sees, in order (ablations drop some)."""

    def __post_init__(self) -> None:
        _require_range(self.adc_range, "adc_range")
        _require_range(self.z_range, "z_range")
        _require_number(self.z_threshold, "z_threshold")
        _require(isinstance(self.slice_size, tuple) and len(self.slice_size) == 2
                 and all(_is_integer(v) and v > 0 and v % NETWORK_STRIDE == 0 for v in self.slice_size),
                 "slice_size", f"expected [height, width], positive multiples of {NETWORK_STRIDE}, "
                 f"not {self.slice_size!r}")
        _require(isinstance(self.channels, tuple) and len(self.channels) > 0, "channels",
                 f"expected a list of channel names, not {self.channels!r}")
        for name in self.channels:
            _require_choice(name, "channels", CHANNELS)
        _require(len(set(self.channels)) == len(self.channels), "channels", f"repeated in {list(self.channels)}")


@dataclass(frozen=True)
class EvaluationConfig:
    """Scoring as the BONBID-HIE challenge does it."""

    nsd_tolerance_mm: float = 2.0
    """Normalised surface Dice tolerance."""
    burden_edges: tuple[float, float] = (0.01, 0.05)
    """Lesion burden (lesion voxels / non-zero ADC voxels) strata edges: <1%, 1-5%, >5%."""
    lesion_band_edges_ml: tuple[float, float] = (0.1, 1.0)
    """Lesion-wise scores by lesion volume: bands "small" (< 0.1 mL), "medium" (0.1-1 mL), "large" (>= 1 mL)."""

    def __post_init__(self) -> None:
        _require_number(self.nsd_tolerance_mm, "nsd_tolerance_mm", 0.0, low_open=True)
        _require_range(self.burden_edges, "burden_edges")
        _require(0 < self.burden_edges[0] and self.burden_edges[1] < 1, "burden_edges",
                 f"expected fractions between 0 and 1, not {self.burden_edges!r}")
        _require_range(self.lesion_band_edges_ml, "lesion_band_edges_ml")
        _require(0 < self.lesion_band_edges_ml[0], "lesion_band_edges_ml",
                 f"expected volumes in mL above 0, not {self.lesion_band_edges_ml!r}")


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

    def __post_init__(self) -> None:
        _require_choice(self.architecture, "architecture", ARCHITECTURES)
        _require(isinstance(self.encoder, str) and self.encoder != "", "encoder",
                 f"expected an encoder name, not {self.encoder!r}")
        _require_choice(self.attention, "attention", ATTENTIONS)
        _require(isinstance(self.decoder_channels, tuple) and len(self.decoder_channels) == 5
                 and all(_is_integer(v) and v > 0 for v in self.decoder_channels), "decoder_channels",
                 f"expected five positive whole numbers, not {self.decoder_channels!r}")
        _require_choice(self.init, "init", INITS)


@dataclass(frozen=True)
class LossConfig:
    """Tversky + Log-Hausdorff + Focal (paper, section 3.3-3.4), or Dice + Focal for the ablation."""

    name: str = "tlhf"
    """One of `LOSS_NAMES`: "tlhf" or "dice_focal"."""
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

    def __post_init__(self) -> None:
        _require_choice(self.name, "name", LOSS_NAMES)
        for field in ("tversky_alpha", "tversky_beta", "tversky_weight", "log_hausdorff_weight", "focal_gamma",
                      "focal_weight_start", "focal_weight_end"):
            _require_number(getattr(self, field), field, 0.0)
        _require(self.tversky_alpha + self.tversky_beta > 0, "tversky_beta", "alpha + beta must be above 0")
        _require_number(self.log_hausdorff_exponent, "log_hausdorff_exponent", 0.0, low_open=True)
        if self.focal_alpha is not None:
            _require_number(self.focal_alpha, "focal_alpha", 0.0, 1.0)


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
    """Seeds the network's initial weights, the slices each epoch draws and their augmentation (and the folds'
    split, unless `split_seed` is given)."""
    split_seed: int | None = None
    """Seeds the folds' split when given (`sparseg train --seed` keeps the config's split while changing `seed`:
    runs that differ in their seed alone, on the same validation cases)."""
    augment: bool = True
    workers: int = 2
    slices_per_epoch: int | None = None
    """Train on a random subset of this many slices per epoch (None: all slices, as in the paper)."""
    record_samples: bool = False
    """Write the slice indices each process trained on (audits of distributed runs)."""

    def __post_init__(self) -> None:
        for field, low in (("epochs", 1), ("batch_size", 1), ("plateau_patience", 0), ("early_stopping_patience", 1),
                           ("folds", 2), ("seed", 0), ("workers", 0)):
            _require_integer(getattr(self, field), field, low)
        _require_number(self.learning_rate, "learning_rate", 0.0, low_open=True)
        _require_number(self.plateau_factor, "plateau_factor", 0.0, 1.0, low_open=True)
        _require(self.plateau_factor < 1, "plateau_factor", f"must be below 1, not {self.plateau_factor!r}")
        if self.slices_per_epoch is not None:
            _require_integer(self.slices_per_epoch, "slices_per_epoch", 1)
        if self.split_seed is not None:
            _require_integer(self.split_seed, "split_seed", 0)
        _require_bool(self.augment, "augment")
        _require_bool(self.record_samples, "record_samples")

    @property
    def fold_seed(self) -> int:
        """The seed of the folds' split."""
        return self.seed if self.split_seed is None else self.split_seed


INTENSITY_NORMALISATIONS = ("median", "none")
"""How a case's ADC is brought to the atlas's level before its Z_ADC is computed (`ZmapConfig.normalisation`)."""


@dataclass(frozen=True)
class ZmapConfig:
    """How Z_ADC is computed from an ADC map and a normative atlas (`sparseg.zmap`): the paper's
    Z(x) = (ADC(x) - mu(phi(x))) / sigma(phi(x)), as the release made it (smoothed 2 mm, clipped to [-10, 10]).

    The atlas is registered to the case with ANTs (affine, then SyN) on a copy of the case resampled to
    `registration_spacing_mm`; mu, sigma, the atlas's brain mask and its coverage are pulled back onto the case's
    own grid. docs/zmap.md measures each setting.
    """

    smoothing_mm: float = 2.0
    """The ADC is smoothed within the brain by a Gaussian of this sigma before the Z-score (the release's
    `ADC_smooth2mm`; the release does not say whether 2 mm is the sigma or the FWHM)."""
    clip: float = Z_CLIP
    """Z is clipped to [-clip, clip] (the release's `clipped10`)."""
    normalisation: str = "median"
    """"median": the ADC is scaled so that its median inside the brain equals the registered atlas mean's median
    there (lesions, Z < -2, left out of both), which takes out a case's global ADC level (age, scanner); "none"."""
    registration_spacing_mm: float = 2.0
    """The case is resampled to this isotropic spacing for the registration alone (the slices of a neonatal scan
    are 2-6 mm apart); mu and sigma then go onto the case's own grid."""
    syn_iterations: tuple[int, ...] = (40, 20, 0)
    """SyN's iterations per resolution level, coarse to fine (ANTs' default)."""
    seed: int = 1
    """ANTs' random seed (the affine metric samples voxels at random): the same Z_ADC for the same inputs."""
    overlap_flag: float = 0.85
    """A registration whose atlas brain overlaps the case's brain by less Dice than this is flagged "look"."""
    overlap_refuse: float = 0.6
    """Below this Dice the registration failed: the case gets no Z_ADC and no mask."""

    def __post_init__(self) -> None:
        _require_number(self.smoothing_mm, "smoothing_mm", 0.0)
        _require_number(self.clip, "clip", 0.0, low_open=True)
        _require_choice(self.normalisation, "normalisation", INTENSITY_NORMALISATIONS)
        _require_number(self.registration_spacing_mm, "registration_spacing_mm", 0.5, 8.0)
        _require(isinstance(self.syn_iterations, tuple) and 1 <= len(self.syn_iterations) <= 5
                 and all(_is_integer(v) and v >= 0 for v in self.syn_iterations), "syn_iterations",
                 f"expected one to five whole numbers of 0 or more, not {self.syn_iterations!r}")
        _require_integer(self.seed, "seed", 0)
        _require_number(self.overlap_refuse, "overlap_refuse", 0.0, 1.0)
        _require_number(self.overlap_flag, "overlap_flag", self.overlap_refuse, 1.0)

    def key(self) -> str:
        """The settings that change a Z_ADC map, as one line (a batch's resume key holds it)."""
        return (f"zmap smoothing_mm={self.smoothing_mm!r} clip={self.clip!r} normalisation={self.normalisation} "
                f"registration_spacing_mm={self.registration_spacing_mm!r} "
                f"syn_iterations={'x'.join(map(str, self.syn_iterations))} seed={self.seed}")


ATLAS_STATISTICS = ("auto", "mean", "robust")
"""How `sparseg atlas build` summarises the registered cases per voxel (`AtlasConfig.statistics`)."""
MIN_ATLAS_CASES = 10
"""`sparseg atlas build` refuses fewer cases: a standard deviation from n cases is off by about 1 / sqrt(2 (n - 1))
of itself (24% at 10 cases, 16% at 20), and every Z-score inherits that error (docs/zmap.md)."""


@dataclass(frozen=True)
class AtlasConfig:
    """How `sparseg atlas build` makes a normative atlas from a cohort's ADC maps (`sparseg.template`)."""

    spacing_mm: float = 2.0
    """The atlas's isotropic voxel spacing."""
    iterations: int = 3
    """Rounds of ANTs' group-wise template building (each registers every case to the current template); 0: no
    group-wise template, the case of median brain volume is the template."""
    statistics: str = "auto"
    """"mean": voxel-wise mean and standard deviation; "robust": median and 1.4826 x MAD; "auto": the mean where
    every case's lesion is known (a label, or Z_ADC < -2 where Z_ADC is given) and left out, else robust."""
    normalisation: str = "median"
    """Each case's ADC is scaled to the cohort's median brain ADC first (`ZmapConfig.normalisation`), or "none"."""
    min_coverage: float = 0.5
    """A voxel belongs to the atlas (its mask) where at least this share of the cases cover it with brain that is
    not lesion; elsewhere the atlas has no mean or SD, and Z_ADC is not computed."""
    margin_mm: float = 10.0
    """Room around the brain in the atlas's grid."""
    smoothing_mm: float = 1.0
    """The mean and SD maps are smoothed within the atlas's brain by a Gaussian of this sigma (0: not)."""
    calibrate: bool = True
    """Where every case gives its Z_ADC (the release does), scale the SD so that the healthy tissue's Z_ADC against
    the atlas spreads as the given Z_ADC does: a network trained on the given Z_ADC then meets its scale."""
    seed: int = 1
    """ANTs' random seed."""

    def __post_init__(self) -> None:
        _require_number(self.spacing_mm, "spacing_mm", 0.5, 8.0)
        _require_bool(self.calibrate, "calibrate")
        _require_integer(self.iterations, "iterations", 0)
        _require_choice(self.statistics, "statistics", ATLAS_STATISTICS)
        _require_choice(self.normalisation, "normalisation", INTENSITY_NORMALISATIONS)
        _require_number(self.min_coverage, "min_coverage", 0.0, 1.0, low_open=True)
        _require_number(self.margin_mm, "margin_mm", 0.0, 100.0)
        _require_number(self.smoothing_mm, "smoothing_mm", 0.0, 10.0)
        _require_integer(self.seed, "seed", 0)


AUTO_BATCH_SIZE = {"cuda": 64, "cpu": 8}
"""Slices per forward pass by device type when `InferenceConfig.batch_size` is 0 (on the CPU, 8 is as fast as
16 and needs less memory: docs/performance.md)."""


@dataclass(frozen=True)
class InferenceConfig:
    """How volumes go through the network at prediction time: speed settings, not part of the method.

    Each setting was kept because the inference benchmark (bench/inference.py)
    showed it pays (docs/performance.md); with the defaults the masks stay
    within Dice 0.999 of the plain fp32 full-frame reference
    (tests/test_inference.py).
    """

    skip_empty_slices: bool = True
    """Run only slices with brain (non-zero ADC); the others are background. Exact for the slices run
    (each slice goes through the 2D network alone), and no lesion lies outside the brain."""
    crop_to_brain: bool = False
    """Also crop the slices to the brain's bounding box over all slices, plus `crop_margin`: fewer pixels,
    but the network sees a different border, and whether the mask stays depends on the weights
    (bench/agreement.py), so it is off unless asked for."""
    crop_margin: int = 32
    """Pixels of the resized slice kept around the brain's bounding box."""
    crop_multiple: int = NETWORK_STRIDE
    """Crop sides are rounded up to this: the network's total stride."""
    precision: str = "auto"
    """One of `PRECISIONS`."""
    engine: str = "auto"
    """One of `ENGINES`."""
    channels_last: bool = True
    """Feed the network NHWC tensors (faster convolutions on CPUs and tensor cores)."""
    batch_size: int = 0
    """Slices per forward pass; 0 picks `AUTO_BATCH_SIZE` for the device."""

    def __post_init__(self) -> None:
        for field in ("skip_empty_slices", "crop_to_brain", "channels_last"):
            _require_bool(getattr(self, field), field)
        _require_integer(self.crop_margin, "crop_margin", 0)
        _require_integer(self.crop_multiple, "crop_multiple", 1)
        _require_choice(self.precision, "precision", PRECISIONS)
        _require_choice(self.engine, "engine", ENGINES)
        _require_integer(self.batch_size, "batch_size", 0)


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

    def __post_init__(self) -> None:
        _require_number(self.threshold, "threshold", 0.0, 1.0, low_open=True)
        _require(self.threshold < 1, "threshold", f"must be below 1, not {self.threshold!r}")
        _require(isinstance(self.description, str), "description", f"expected text, not {self.description!r}")

    @property
    def in_channels(self) -> int:
        return len(self.preprocessing.channels)


SECTIONS = {"preprocessing": PreprocessingConfig, "model": ModelConfig, "loss": LossConfig, "train": TrainConfig}
"""The sections of a run config file, each a config class."""


def run_config_from_dict(data: dict[str, Any]) -> RunConfig:
    """A checked RunConfig from a (possibly partial) nested dict; missing fields keep the paper's defaults.

    Raises ConfigError naming the first unknown or impossible field by its dotted name ("train.epochs").
    """
    if not isinstance(data, dict):
        raise ConfigError("", f"expected a JSON object of sections, not {type(data).__name__}")
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    for name in data:
        _require(name in fields, name, f"unknown section or field; expected {', '.join(sorted(fields))}")
    kwargs: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        try:
            kwargs[name] = from_dict(cls, data.get(name, {}))
        except ConfigError as exc:
            raise exc.within(name) from None
    kwargs.update({k: v for k, v in data.items() if k not in SECTIONS})
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


LESION_BANDS = ("small", "medium", "large")
"""The lesion-volume bands of lesion-wise scores, smallest first (edges: `EvaluationConfig.lesion_band_edges_ml`)."""


def lesion_band_names(edges_ml: tuple[float, float] = EvaluationConfig.lesion_band_edges_ml) -> dict[str, str]:
    """Each band of `LESION_BANDS` in words: {"small": "< 0.1 mL", ...}."""
    low, high = edges_ml
    return dict(zip(LESION_BANDS, (f"< {low:g} mL", f"{low:g}-{high:g} mL", f">= {high:g} mL"), strict=True))


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config dataclass from `to_dict` output (lists become tuples), checked on the way.

    Raises ConfigError for a key the class does not have, or a value its checks refuse.
    """
    if not isinstance(data, dict):
        raise ConfigError("", f"expected a JSON object of fields, not {data!r}")
    names = sorted(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    for key in data:
        _require(key in names, key, f"unknown field; expected one of {', '.join(names)}")
    return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items()})


def load_run_config(path: str | Path) -> RunConfig:
    """Read and check a JSON run config (resources/configs/*.json); fields left out keep the paper's defaults.

    Raises InputError with one line naming the file and the field, before anything else happens.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"{path}: not a readable JSON run config ({type(exc).__name__}: {exc})") from None
    try:
        return run_config_from_dict(data)
    except ConfigError as exc:
        raise InputError(f"{path}: {exc}") from None
