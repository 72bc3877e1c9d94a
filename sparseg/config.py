"""Typed configuration with the paper's defaults: the one source of every constant.

Each constant of the method (ADC range, Z-score range, prior threshold, slice
size, sigmoid threshold, scoring tolerance, burden strata) is defined here once.
Training saves these objects inside every checkpoint and inference rebuilds
from them, so nothing is retyped and nothing must match by luck.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

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
