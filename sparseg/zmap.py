"""Z_ADC from an ADC map and a normative atlas: the paper's Z(x) = (ADC(x) - mu(phi(x))) / sigma(phi(x)), made as
the release made it (the ADC smoothed 2 mm within the brain, Z clipped to [-10, 10], 0 outside the brain).

`z_scores` is the formula (the synthetic generator's given Z_ADC uses it too);
`compute_zmap` registers the atlas onto a case (`sparseg.registration`),
pulls mu, sigma and the atlas's brain onto the case's own grid, brings the
case's ADC to the atlas's level, and says how well the registration went;
`check_adc` refuses an ADC that would give a meaningless Z_ADC; `write_zmaps`
does it for a folder of cases (`sparseg zmap`). The settings are `ZmapConfig`;
docs/zmap.md measures them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from sparseg.atlas import Atlas, adc_unit_problem, atlas_files
from sparseg.cases import Case, case_inputs
from sparseg.config import Z_CLIP, PreprocessingConfig, ZmapConfig
from sparseg.errors import InputError, SparsegError
from sparseg.io import Volume, read_image, write_csv, write_image
from sparseg.metrics import dice
from sparseg.outputs import case_outputs, mask_suffix, zadc_name
from sparseg.paths import files_sha256, remove_stale, require_apart
from sparseg.registration import Image, isotropic, registration

log = logging.getLogger(__name__)

SHELL_MM = 4.0
"""The outer layer of the tissue that `check_adc` compares with its core, deeper than `CORE_MM`."""
CORE_MM = 10.0
SHELL_RATIO_MIN = 0.5
"""A skull-stripped brain's outer `SHELL_MM` (cortex and extra-axial CSF) is not much darker than its core (white
matter and deep grey); a head's (scalp fat ~100-400, skull noise) is: below this ratio of their medians the ADC is
refused as not skull-stripped."""
FRAME_SHARE_MAX = 0.25
"""A skull-stripped brain lies inside the field of view; when more than this share of the border pixels of the
slices with tissue is tissue, the head fills the field of view: refused as not skull-stripped."""
COVERAGE_FLAG = 0.95
"""A case whose brain the atlas covers less than this share of is flagged (its Z_ADC is 0 where uncovered)."""
MIN_BRAIN_VOXELS = 1000
BRAIN_EXTENT_MM = (30.0, 250.0)
"""A newborn's brain spans about 70-130 mm on its longest axis (an adult's under 200): tissue whose longest extent
lies outside this range means a wrong voxel spacing in the header, and is refused before registration (which
would resample it to a huge grid, or find no brain at all)."""
SCALE_RANGE = (0.25, 4.0)
"""Intensity normalisation brings a case's ADC to the atlas's level by a factor (`ZmapResult.scale`): scanners and
ages differ by tens of percent, so a factor outside this range means another map or another unit than the
atlas's, and is refused."""
SPREAD_FLAG = 2.0
"""Healthy tissue's Z-scores against a normative atlas spread about 1 (a robust SD: 1.4826 x the median absolute
deviation over the brain, lesions barely moving it); a case whose Z_ADC spreads more than this is flagged: an
atlas SD too small for this case, or a registration off."""
SATURATED_FLAG = 0.05
"""A case with more than this share of its brain at the clip (|Z_ADC| = 10) is flagged: an atlas or ADC far off."""
Z_LIKE_NEGATIVE_SHARE = 0.2
"""An ADC map has no negative values; a Z_ADC map has many. When more than this share of the non-zero voxels is
negative and every value lies within Z_ADC's clip, the file is refused as a Z_ADC map given as ADC."""
FLAG_PREFIXES = ("atlas registration", "Z_ADC on")
"""How the flags `compute_zmap` raises begin (a resumed batch keeps them from its summary)."""


def _sigma_voxels(mm: float, spacing_mm: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(mm / s for s in spacing_mm)


def z_scores(adc: np.ndarray, mean: np.ndarray, sd: np.ndarray, brain: np.ndarray, spacing_mm: tuple[float, ...],
             config: ZmapConfig = ZmapConfig(), where: np.ndarray | None = None) -> np.ndarray:
    """Z_ADC: the ADC smoothed within `brain` (a Gaussian of `config.smoothing_mm`, normalised by the brain's own
    smoothed extent, so the brain's edge is not darkened), minus `mean`, over `sd`, clipped to +-`config.clip`,
    where `where` (default: `brain`), 0 elsewhere. Shape: (D, H, W) arrays -> (D, H, W) float32."""
    where = brain if where is None else where
    smooth = smoothed_adc(adc, brain, spacing_mm, config)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(where, (smooth - mean) / sd, 0.0)
    return np.clip(z, -config.clip, config.clip).astype(np.float32)


def smoothed_adc(adc: np.ndarray, brain: np.ndarray, spacing_mm: tuple[float, ...],
                 config: ZmapConfig = ZmapConfig()) -> np.ndarray:
    """The ADC smoothed within `brain` as `z_scores` smooths it (normalised convolution). Shape: (D, H, W)."""
    sigma = _sigma_voxels(config.smoothing_mm, spacing_mm)
    weight = ndimage.gaussian_filter(brain.astype(np.float32), sigma)
    return ndimage.gaussian_filter(np.where(brain, adc, 0).astype(np.float32), sigma) / np.maximum(weight, 1e-3)


def _extent_mm(mask: np.ndarray, spacing_mm: tuple[float, ...]) -> tuple[float, ...]:
    """The size in mm of `mask`'s bounding box on each array axis ((z, y, x) with a (z, y, x) spacing)."""
    extent = []
    for axis, spacing in enumerate(spacing_mm):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        extent.append(float((present[-1] - present[0] + 1) * spacing) if present.size else 0.0)
    return tuple(extent)


def check_adc(adc: Volume) -> np.ndarray:
    """The brain of an ADC map (voxels above 0), or an InputError naming the file when a Z_ADC from it would mean
    nothing: no brain, ADC in other units than 1e-6 mm^2/s, or not skull-stripped (the head visible)."""
    brain = adc.array > 0
    nonzero = adc.array[adc.array != 0]
    if nonzero.size and float(np.mean(nonzero < 0)) > Z_LIKE_NEGATIVE_SHARE \
            and float(np.abs(nonzero).max()) <= Z_CLIP:
        raise InputError(f"{adc.path}: {np.mean(nonzero < 0):.0%} of its non-zero values are negative, all within "
                         f"+-{Z_CLIP:g}: a Z_ADC map given as ADC? (give the ADC map)")
    problem = adc_unit_problem(adc.array[brain])
    if problem is not None:
        raise InputError(f"{adc.path}: the ADC {problem}")
    if np.count_nonzero(brain) < MIN_BRAIN_VOXELS:
        raise InputError(f"{adc.path}: only {np.count_nonzero(brain)} voxels above 0: too little brain for a Z_ADC")
    extent = _extent_mm(brain, adc.geometry.spacing_mm)
    low, high = BRAIN_EXTENT_MM
    if not low <= max(extent) <= high:
        raise InputError(f"{adc.path}: its tissue spans {' x '.join(f'{e:.3g}' for e in reversed(extent))} mm "
                         f"(x, y, z), {'more' if max(extent) > high else 'less'} than a brain ({low:g}-{high:g} mm "
                         "on its longest axis): a wrong voxel spacing in its header?")
    frame = np.zeros(brain.shape[1:], dtype=bool)
    frame[[0, -1], :] = frame[:, [0, -1]] = True
    with_tissue = brain.any(axis=(1, 2))
    share = float(brain[with_tissue][:, frame].mean())
    if share > FRAME_SHARE_MAX:
        raise InputError(f"{adc.path}: not skull-stripped? tissue fills {share:.0%} of the slices' border: the head "
                         "seems visible (Z_ADC needs a skull-stripped ADC)")
    depth = ndimage.distance_transform_edt(np.pad(brain, 1), sampling=adc.geometry.spacing_mm)[1:-1, 1:-1, 1:-1]
    shell, core = brain & (depth <= SHELL_MM), brain & (depth > CORE_MM)
    if np.count_nonzero(core) >= MIN_BRAIN_VOXELS // 10:
        ratio = float(np.median(adc.array[shell]) / np.median(adc.array[core]))
        if ratio < SHELL_RATIO_MIN:
            raise InputError(f"{adc.path}: not skull-stripped? its outer {SHELL_MM:g} mm are {ratio:.2f} times as "
                             f"bright as its core (deeper than {CORE_MM:g} mm): scalp or skull, not cortex and CSF; "
                             "Z_ADC needs a skull-stripped ADC")
    return brain


@dataclass
class ZmapResult:
    """A case's Z_ADC on its own grid, and how it was made."""

    z: np.ndarray
    """(D, H, W) float32."""
    atlas_brain: np.ndarray
    """(D, H, W) bool: the atlas's brain mask registered onto the case (the QA page draws its outline)."""
    overlap: float
    """Dice between the registered atlas brain and the case's brain (voxels above 0)."""
    similarity: float
    """Pearson correlation, inside the brain, of the case's smoothed ADC (as Z_ADC smooths it) and the registered
    atlas mean."""
    scale: float
    """What the ADC was multiplied by to meet the atlas's level (1 without normalisation)."""
    covered: float
    """The share of the case's brain where Z_ADC was computed (the rest is outside the atlas's mask: 0)."""
    flags: list[str] = field(default_factory=list)


def _scale(adc: np.ndarray, mean: np.ndarray, sd: np.ndarray, region: np.ndarray, config: ZmapConfig,
           prior: float) -> float:
    """The factor that brings the ADC's median in `region` to the atlas mean's median there, with the voxels a
    first pass finds below the prior's threshold (lesions) left out of both."""
    if config.normalisation == "none":
        return 1.0
    scale = float(np.median(mean[region]) / np.median(adc[region]))
    with np.errstate(divide="ignore", invalid="ignore"):
        normal = region & ((adc * scale - mean) / sd >= prior)
    if np.count_nonzero(normal) >= MIN_BRAIN_VOXELS // 10:
        scale = float(np.median(mean[normal]) / np.median(adc[normal]))
    return scale


def compute_zmap(adc: Volume, atlas: Atlas, config: ZmapConfig = ZmapConfig(),
                 prior: float = PreprocessingConfig().z_threshold) -> ZmapResult:
    """A case's Z_ADC against `atlas`: the atlas mean registered onto the case (affine, then SyN, on a copy of the
    case at `config.registration_spacing_mm`), mu, sigma and the atlas brain pulled onto the case's grid, the ADC
    scaled to the atlas's level (`config.normalisation`), then `z_scores` where the case's brain and the atlas's
    mask meet. An ADC `check_adc` refuses, or a registration that failed (its atlas brain overlaps the case's
    brain by less than `config.overlap_refuse`), is an InputError naming the file; a doubtful one is flagged."""
    brain = check_adc(adc)
    case = Image(adc.array, adc.geometry)
    fixed = isotropic(case, config.registration_spacing_mm)
    moving = Image(atlas.mean, atlas.geometry)
    try:
        with registration(fixed, moving, config.syn_iterations, config.seed) as warp:
            mean = warp.pull(moving, adc.geometry)
            sd = warp.pull(Image(atlas.sd, atlas.geometry), adc.geometry)
            atlas_brain = warp.pull(Image(atlas.mask.astype(np.float32), atlas.geometry), adc.geometry) > 0.5
    except InputError as exc:
        raise InputError(f"{adc.path}: {exc}") from None
    overlap = dice(atlas_brain, brain)
    if not overlap >= config.overlap_refuse:
        raise InputError(f"{adc.path}: the atlas did not register onto this brain (its brain overlaps the case's by "
                         f"Dice {overlap:.2f}, below {config.overlap_refuse:g}): no Z_ADC")
    region = brain & atlas_brain & (sd > 0)
    if not region.any():
        raise InputError(f"{adc.path}: the registered atlas covers none of the brain: no Z_ADC")
    scale = _scale(adc.array, mean, sd, region, config, prior)
    if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        raise InputError(f"{adc.path}: its ADC would be scaled by {scale:.3g} to meet the atlas's level (outside "
                         f"{SCALE_RANGE[0]:g}-{SCALE_RANGE[1]:g}): the ADC or the atlas mean is another map or in "
                         "another unit; no Z_ADC")
    z = z_scores(adc.array * scale, mean, sd, brain, adc.geometry.spacing_mm, config, where=region)
    smooth = smoothed_adc(adc.array, brain, adc.geometry.spacing_mm, config)
    similarity = float(np.corrcoef(smooth[region], mean[region])[0, 1]) if np.count_nonzero(region) > 2 else 0.0
    covered = float(np.count_nonzero(region) / np.count_nonzero(brain))
    flags = []
    if overlap < config.overlap_flag:
        flags.append(f"{FLAG_PREFIXES[0]}: look (overlap {overlap:.2f})")
    if covered < COVERAGE_FLAG:
        flags.append(f"{FLAG_PREFIXES[1]} {covered:.1%} of the brain (the atlas covers no more)")
    inside = z[region]
    spread = float(1.4826 * np.median(np.abs(inside - np.median(inside))))
    if spread > SPREAD_FLAG:
        flags.append(f"{FLAG_PREFIXES[1]} the brain spreads {spread:.1f} SD (about 1 against a normative atlas): "
                     "look at the atlas's SD and the registration")
    saturated = float(np.mean(np.abs(inside) >= config.clip))
    if saturated > SATURATED_FLAG:
        flags.append(f"{FLAG_PREFIXES[1]} {saturated:.1%} of the brain at the clip (+-{config.clip:g}): look at the "
                     "atlas and the ADC")
    for flag in flags:
        log.warning("%s: %s", adc.path, flag)
    return ZmapResult(z=z, atlas_brain=atlas_brain, overlap=overlap, similarity=similarity, scale=scale,
                      covered=covered, flags=flags)


@dataclass(frozen=True)
class ZmapMaker:
    """An atlas and the settings that make each case's Z_ADC from it (what `sparseg predict --atlas` hands the
    background reader)."""

    atlas: Atlas
    config: ZmapConfig = ZmapConfig()

    def key(self) -> str:
        """What decides the Z_ADC besides the ADC: the atlas (its sha256) and the settings, as one line."""
        return f"atlas {self.atlas.sha256}; {self.config.key()}"

    def __call__(self, adc: Volume) -> ZmapResult:
        return compute_zmap(adc, self.atlas, self.config)


ZMAP_SUMMARY = "zmap_summary.csv"
"""One row per case of `sparseg zmap`'s output folder: the Z_ADC file, the registration's quality, what made it."""
ZMAP_COLUMNS = ("case_id", "status", "zadc", "zadc_sha256", "atlas_overlap", "atlas_similarity", "adc_scale",
                "brain_covered", "seconds", "flags", "error", "inputs_sha256", "atlas")


def zmap_outputs(cases: list[Case], out: Path, file_format: str = "auto") -> list[Path]:
    """Every file `write_zmaps` may write in `out` for `cases`."""
    return [out / ZMAP_SUMMARY, *(out / zadc_name(c.case_id, mask_suffix(c.adc, file_format)) for c in cases)]


def write_zmaps(cases: list[Case], zmaker: ZmapMaker, out: Path, file_format: str = "auto") -> list[dict]:
    """Each case's Z_ADC as `<case_id>_zadc<suffix>` in `out` (the ADC's format, or `file_format`) and a row in
    zmap_summary.csv, rewritten after each case; a case that fails is reported and the others go on. No output may
    be an input (checked before anything is read); an earlier run's Z_ADC of these cases is removed first, so a
    case that fails leaves none."""
    inputs = [path for case in cases for path in case_inputs(case)] + atlas_files(zmaker.atlas.folder)
    outputs = zmap_outputs(cases, out, file_format)
    require_apart(outputs, inputs)
    remove_stale([out / name for case in cases for name in case_outputs(case.case_id)
                  if name.startswith(f"{case.case_id}_zadc")])
    rows: list[dict] = []
    for index, case in enumerate(cases):
        started = time.perf_counter()
        path = out / zadc_name(case.case_id, mask_suffix(case.adc, file_format))
        row = {"case_id": case.case_id, "status": "failed", "inputs_sha256": "", "atlas": zmaker.key()}
        try:
            adc = read_image(case.adc)
            row["inputs_sha256"] = files_sha256(case_inputs(case))
            result = zmaker(adc)
            write_image(result.z, adc.geometry, path)
            row.update(status="ok", zadc=path.name, zadc_sha256=files_sha256([path]), atlas_overlap=result.overlap,
                       atlas_similarity=result.similarity, adc_scale=result.scale, brain_covered=result.covered,
                       flags="; ".join(result.flags))
        except SparsegError as exc:
            log.error("%s: %s", case.case_id, exc)
            row["error"] = str(exc)
        row["seconds"] = round(time.perf_counter() - started, 2)
        rows.append(row)
        log.info("[%d/%d] %s: %s", index + 1, len(cases), case.case_id,
                 f"{row['seconds']:.1f} s, atlas overlap {row['atlas_overlap']:.3f}" if row["status"] == "ok"
                 else "failed")
        write_csv(out / ZMAP_SUMMARY, rows, ZMAP_COLUMNS)
    return rows
