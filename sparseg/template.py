"""A normative atlas built from a cohort's ADC maps (`sparseg atlas build`).

1. Each case's ADC is read and checked (`zmap.check_adc`); what is lesion is
   left out of the statistics: its label where it has one, else Z_ADC < -2
   where its Z_ADC is given, else nothing (then the statistics are robust).
2. Each ADC is scaled to the cohort's median brain ADC (`AtlasConfig.normalisation`)
   and smoothed as Z_ADC smooths it (`zmap.smoothed_adc`): the statistics are
   of what Z_ADC compares with them.
3. A group-wise template is built by ANTs (`ants.build_template`: every case
   registered to the current template, affine then SyN, the template averaged
   and moved to the cohort's mean shape, `AtlasConfig.iterations` times),
   starting from the case of median brain volume on an isotropic grid.
4. Every case is registered to the template once more and its ADC, brain and
   lesion brought onto the template's grid; per voxel, over the cases whose
   brain (not lesion) covers it: the mean and SD (or the median and
   1.4826 x MAD), smoothed within the atlas's brain, and how many cases cover it.
5. The atlas's mask is where at least `AtlasConfig.min_coverage` of the cases
   do.
6. Where every case gives its Z_ADC (the release does), the SD is scaled so
   that the healthy tissue's Z_ADC against the atlas spreads as the given
   Z_ADC does (`AtlasConfig.calibrate`): a network trained on the given Z_ADC
   then meets the same scale. The folder is written all or nothing
   (`atlas.write_atlas`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from sparseg.atlas import Atlas, remove_staging, require_atlas_destination, write_atlas
from sparseg.cases import Case, case_inputs
from sparseg.config import MIN_ATLAS_CASES, AtlasConfig, PreprocessingConfig, ZmapConfig, to_dict
from sparseg.errors import InputError
from sparseg.io import read_image, read_mask, require_same_grid
from sparseg.paths import files_sha256
from sparseg.registration import Image, ants_version, grid_around, group_template, registration, resample
from sparseg.zmap import check_adc, smoothed_adc

log = logging.getLogger(__name__)

SD_FLOOR_SHARE = 0.05
"""An atlas SD is at least this share of the median SD inside the mask: a voxel where the few covering cases agree
by chance would otherwise turn any difference into a huge Z."""


@dataclass
class CohortCase:
    """A cohort case as the atlas uses it: its ADC at the cohort's level, its brain, and what is lesion."""

    case: Case
    adc: Image
    brain: np.ndarray
    lesion: np.ndarray | None
    """None where nothing says what is lesion."""
    exclusion: str
    """How the lesion is known: "label", "Z_ADC < -2" or "none"."""
    z: np.ndarray | None = None
    """Its given Z_ADC, where it has one."""
    scale: float = 1.0


def _read(case: Case, prior: float) -> CohortCase:
    adc = read_image(case.adc)
    brain = check_adc(adc)
    lesion, exclusion, z = None, "none", None
    if case.z is not None:
        given = read_image(case.z)
        require_same_grid(adc, given)
        z = given.array
    if case.label is not None:
        label, grid = read_mask(case.label)
        differences = grid.differences(adc.geometry)
        if differences:
            raise InputError(f"{case.label}: not on the grid of {case.adc.name} ({'; '.join(differences)})")
        lesion, exclusion = label, "label"
    elif z is not None:
        lesion, exclusion = (z < prior) & brain, f"Z_ADC < {prior:g}"
    return CohortCase(case, Image(adc.array, adc.geometry), brain, lesion, exclusion, z)


def _healthy(member: CohortCase) -> np.ndarray:
    return member.brain & ~member.lesion if member.lesion is not None else member.brain


def _normalise(members: list[CohortCase], config: AtlasConfig) -> float:
    """Scale each member's ADC to the cohort's median of their healthy brains' medians (returned); 1 without
    normalisation."""
    medians = [float(np.median(m.adc.array[_healthy(m)])) for m in members]
    reference = float(np.median(medians))
    if config.normalisation == "none":
        return reference
    for member, median in zip(members, medians, strict=True):
        member.scale = reference / median
        member.adc = Image(member.adc.array * member.scale, member.adc.geometry)
    return reference


def _group_template(members: list[CohortCase], config: AtlasConfig, zconfig: ZmapConfig) -> Image:
    """ANTs' group-wise template of the members' ADC, started from the member of median brain volume on an
    isotropic grid around its brain."""
    volumes = [np.count_nonzero(m.brain) * m.adc.geometry.voxel_volume_mm3 for m in members]
    start = members[int(np.argsort(volumes)[len(volumes) // 2])]
    grid = grid_around(start.brain, start.adc.geometry, config.spacing_mm, config.margin_mm)
    return group_template(resample(start.adc, grid), [m.adc for m in members], config.iterations,
                          zconfig.syn_iterations, config.seed)


def _smooth_within(values: np.ndarray, mask: np.ndarray, sigma_vox: float) -> np.ndarray:
    if sigma_vox <= 0:
        return values
    weight = np.maximum(ndimage.gaussian_filter(mask.astype(np.float32), sigma_vox), 1e-3)
    return np.where(mask, ndimage.gaussian_filter(np.where(mask, values, 0).astype(np.float32), sigma_vox) / weight,
                    0.0)


def _statistics(stack: np.ndarray, included: np.ndarray, statistics: str) -> tuple[np.ndarray, np.ndarray]:
    """Per voxel over the included cases: (mean, SD) or, "robust", (median, 1.4826 x MAD). Shape: (N, D, H, W) ->
    2 x (D, H, W); NaN where fewer than two cases are included."""
    values = np.where(included, stack, np.nan)
    count = included.sum(axis=0)
    enough = count >= 2
    centre = np.full(stack.shape[1:], np.nan, np.float32)
    spread = np.full(stack.shape[1:], np.nan, np.float32)
    covered = values[:, enough]
    if statistics == "robust":
        middle = np.nanmedian(covered, axis=0)
        centre[enough], spread[enough] = middle, 1.4826 * np.nanmedian(np.abs(covered - middle), axis=0)
    else:
        middle = np.nanmean(covered, axis=0)
        centre[enough] = middle
        spread[enough] = np.sqrt(np.nansum((covered - middle) ** 2, axis=0) / (count[enough] - 1))
    return centre, spread


def _spread(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: the SD of a normal sample, robust to the tails."""
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def calibration(stack: np.ndarray, given: np.ndarray, healthy: np.ndarray, mean: np.ndarray,
                sd: np.ndarray) -> float:
    """The factor the atlas SD is multiplied by so that the cases' Z-scores against it (`stack`, their smoothed
    ADC on the atlas's grid) spread over `healthy` voxels as their `given` Z_ADC does there (robust spreads, pooled
    over the cases). Shape: stack, given, healthy (N, D, H, W); mean, sd (D, H, W)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        computed = (stack - mean) / sd
    return _spread(computed[healthy]) / _spread(given[healthy])


def build_atlas(cases: list[Case], out: Path, config: AtlasConfig = AtlasConfig(),
                zconfig: ZmapConfig = ZmapConfig(), source: str = "",
                prior: float = PreprocessingConfig().z_threshold) -> Atlas:
    """A normative atlas of `cases` (the module's docstring says how), written to `out` all or nothing. Refused,
    before any work, with fewer than `MIN_ATLAS_CASES` cases, or an `out` that is an input or holds other files."""
    started = time.perf_counter()
    if len(cases) < MIN_ATLAS_CASES:
        raise InputError(f"{source or 'the cohort'}: {len(cases)} cases; an atlas needs at least {MIN_ATLAS_CASES} "
                         "(a standard deviation from fewer is too uncertain: docs/zmap.md)")
    inputs = [path for case in cases for path in case_inputs(case)]
    require_atlas_destination(out, inputs)
    remove_staging(out, inputs)
    members = [_read(case, prior) for case in cases]
    statistics = config.statistics
    if statistics == "auto":
        statistics = "mean" if all(m.lesion is not None for m in members) else "robust"
    reference = _normalise(members, config)
    log.info("building the template of %d cases (%d rounds of ANTs SyN)", len(members), config.iterations)
    template = _group_template(members, config, zconfig)
    grid = template.geometry
    calibrate = config.calibrate and all(m.z is not None for m in members)
    stack = np.zeros((len(members), *grid.shape), np.float32)
    given = np.zeros((len(members), *grid.shape), np.float32) if calibrate else None
    included = np.zeros((len(members), *grid.shape), bool)
    for index, member in enumerate(members):
        log.info("[%d/%d] %s onto the template", index + 1, len(members), member.case.case_id)
        geometry = member.adc.geometry
        smooth = smoothed_adc(member.adc.array, member.brain, geometry.spacing_mm, zconfig)
        try:
            with registration(template, member.adc, zconfig.syn_iterations, config.seed) as warp:
                stack[index] = warp.pull(Image(smooth, geometry), grid)
                healthy = warp.pull(Image(_healthy(member).astype(np.float32), geometry), grid)
                if given is not None:
                    given[index] = warp.pull(Image(member.z, geometry), grid)
        except InputError as exc:
            raise InputError(f"{member.case.adc}: {exc}") from None
        included[index] = healthy > 0.5
    mean, sd = _statistics(stack, included, statistics)
    coverage = included.sum(axis=0)
    needed = max(2, math.ceil(config.min_coverage * len(members)))
    mask = (coverage >= needed) & np.isfinite(mean) & np.isfinite(sd)
    sigma = config.smoothing_mm / config.spacing_mm
    mean = _smooth_within(np.nan_to_num(mean), mask, sigma)
    sd = _smooth_within(np.nan_to_num(sd), mask, sigma)
    floor = SD_FLOOR_SHARE * float(np.median(sd[mask]))
    sd = np.where(mask, np.maximum(sd, floor), 0.0)
    sd_scale = calibration(stack, given, included & mask, mean, sd) if given is not None else 1.0
    sd = sd * sd_scale
    made = {
        "how": "sparseg atlas build: ANTs group-wise template (build_template), then each case registered to it",
        "source": source, "cases": [m.case.case_id for m in members],
        "inputs_sha256": files_sha256(inputs),
        "lesions_left_out_by": {m.case.case_id: m.exclusion for m in members},
        "adc_scale": {m.case.case_id: round(m.scale, 6) for m in members},
        "statistics": statistics, "statistics_of": "the ADC smoothed as Z_ADC smooths it",
        "calibration": ({"sd_scale": round(sd_scale, 6), "how": "the SD scaled so that the healthy tissue's Z_ADC "
                         "spreads as the cases' given Z_ADC does (robust spreads, pooled)"} if given is not None
                        else "none (not every case gives its Z_ADC)" if config.calibrate else "off"),
        "reference_median_adc": round(reference, 3), "min_coverage_cases": needed,
        "atlas": to_dict(config), "registration": {"syn_iterations": list(zconfig.syn_iterations)},
        "libraries": {"antspyx": ants_version()}, "seconds": round(time.perf_counter() - started, 1),
    }
    description = (f"built from {len(members)} cases of {source or 'a cohort'}, lesions left out; a cohort with HIE, "
                   "not healthy neonates, unless the source says so")
    return write_atlas(out, {"mean": mean.astype(np.float32), "sd": sd.astype(np.float32),
                             "mask": mask.astype(np.uint8), "coverage": coverage.astype(np.uint16)}, grid,
                       {"kind": "built", "description": description, "made": made})

