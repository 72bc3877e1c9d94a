"""Synthetic BONBID-HIE cases, in the release's own layout, for tests and demos.

The real data cannot be redistributed, so this module makes cases that look
like it to the pipeline (the numbers below follow the dataset paper and the
SPARSeg paper; none of them comes from real scans):

* grid: square slices of 128 to 256 pixels over a 180-230 mm field of view,
  2-6 mm between axial slices, 16-64 slices covering 100-130 mm;
* anatomy: a skull-stripped, brain-shaped ellipsoid with a folded cortex of
  grey matter, a thin rim of extra-axial CSF, lateral ventricles, deep grey
  nuclei and white matter, at neonatal ADC values (x 1e-6 mm^2/s: WM 1300,
  GM 1100, deep GM 1050, CSF 2900), a smooth bias and Gaussian noise;
* Z_ADC: against a normative atlas (per-voxel mean and standard deviation)
  that is a blurred, slightly mis-registered template of the same anatomy,
  computed on the 2 mm-smoothed ADC and clipped to [-10, 10] (as the file
  name `ADC_smooth2mm_clipped10` says; `sparseg.zmap.z_scores`);
* lesions: multi-focal regions of reduced ADC, most reduced at their core,
  with a burden (lesion voxels / brain voxels) drawn from the dataset's strata
  <1%, 1-5%, >5% in the proportions 74:26:33, and some lesion-free cases;
* labels: an expert's outline of the same foci, drawn with a wavy, slightly
  larger or smaller border, so that Z_ADC < -2 agrees with it only in part,
  as on the real data (Dice 0.54 +- 0.28 there);
* files: pixel types and header geometry (origin, direction, oblique
  orientations) vary from case to case.

Everything is drawn from `numpy.random.default_rng([seed, index])`, so a
case depends only on the seed and its index.

With a population (`population`, `sparseg synth --population`) every case is
instead drawn from one template anatomy, as real brains are from a normative
one, so that an atlas made from the cases can be checked against the truth:

* the generating atlas: a template brain on an isotropic grid with its
  voxel-wise ADC mean and standard deviation (`write_dataset` writes it as an
  atlas folder, `generating_atlas/`);
* each case: the template in physical space under its own affine map (rotation,
  scale per axis, shift) and a smooth non-linear warp, on the case's own grid
  and header (oblique and flipped ones included); its ADC is the atlas mean plus
  a smooth deviation of one atlas SD, times the case's global ADC level (age
  and scanner: `adc_level_sd`), with bias, lesions and noise as above;
* its given Z_ADC: against the generating atlas through the true warp, at the
  case's own level (an age-matched atlas, as the release's were), so that a
  Z_ADC computed by registration can be compared with what it should be.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from sparseg import cases as layout
from sparseg.atlas import write_atlas
from sparseg.config import ZmapConfig, burden_group
from sparseg.errors import InputError
from sparseg.formats import has_image_suffix
from sparseg.io import Geometry, write_csv, write_image
from sparseg.metrics import lesion_burden
from sparseg.zmap import z_scores

FULL_BRAIN_COVERAGE_MM = 60.0
"""Height of the stack of a full-brain case: within the shortest brain (76 mm) with room for the head's offset."""


@dataclass(frozen=True)
class SynthConfig:
    in_plane_sizes: tuple[int, ...] = (128, 144, 160, 176, 192, 208, 224, 240, 256)
    field_of_view_mm: tuple[float, float] = (180.0, 230.0)
    slice_spacing_mm: tuple[float, float] = (2.0, 6.0)
    coverage_mm: tuple[float, float] = (100.0, 130.0)
    depth_range: tuple[int, int] = (16, 64)
    adc_wm: float = 1300.0
    adc_gm: float = 1100.0
    adc_deep_gm: float = 1050.0
    adc_csf: float = 2900.0
    noise_sd: float = 45.0
    atlas_sd: tuple[float, float, float, float] = (130.0, 120.0, 110.0, 380.0)
    """Normative standard deviation of WM, GM, deep GM, CSF."""
    strata_weights: tuple[int, int, int] = (74, 26, 33)
    burden_ranges: tuple[tuple[float, float], ...] = ((0.0008, 0.0095), (0.011, 0.048), (0.055, 0.30))
    lesion_free_fraction: float = 0.07
    z: ZmapConfig = ZmapConfig()
    """How the given Z_ADC is made (smoothing, clipping): as `sparseg zmap` makes it."""
    template_spacing_mm: float = 1.5
    """With a population: the generating atlas's isotropic grid."""
    rotation_deg: float = 8.0
    """With a population: each case's rotation about each axis, uniform in +- this."""
    scale_sd: float = 0.06
    """With a population: the standard deviation of each case's scale along each axis, about 1."""
    shift_mm: float = 4.0
    """With a population: the standard deviation of the brain's offset from the grid's centre."""
    warp_mm: float = 2.5
    """With a population: the typical standard deviation of each component of the smooth non-linear warp (each
    case's is this times 0.5 to 1.5)."""
    warp_smoothness_mm: float = 20.0
    adc_level_sd: float = 0.08
    """With a population: the standard deviation of the log of a case's global ADC level (age, scanner)."""
    deviation_sd: float = 0.5
    """With a population: the size of a case's smooth deviation from the atlas mean, in atlas SDs. With half an SD,
    the scanner's noise and bias, the Z_ADC of healthy tissue spreads with an SD of about 0.7 and the Z_ADC < -2
    baseline scores about DSC 0.5, as on the default synthetic data and on the real data (0.54)."""
    deviation_smoothness_mm: float = 6.0
    """With a population: the width (Gaussian sigma) of a case's smooth deviation from the atlas mean: regional,
    as brains differ."""

    def with_shape(self, size: int | None = None, depth: int | None = None, full_brain: bool = False) -> SynthConfig:
        """The same anatomy on a fixed in-plane `size` and/or number of slices `depth` (benchmarks, checks).

        `full_brain`: thin slices over the middle `FULL_BRAIN_COVERAGE_MM` of the brain, so that every slice
        holds brain, as on most slices of a real volume (the default grids have brain on a quarter to all
        of their slices)."""
        changes: dict = {}
        if size is not None:
            changes["in_plane_sizes"] = (size,)
        if depth is not None:
            changes["depth_range"] = (depth, depth)
        if full_brain:
            slices = depth or self.depth_range[1]
            spacing = FULL_BRAIN_COVERAGE_MM / slices
            changes.update(slice_spacing_mm=(spacing, spacing), coverage_mm=(FULL_BRAIN_COVERAGE_MM,) * 2,
                           depth_range=(slices, slices))
        return dataclasses.replace(self, **changes)

    @classmethod
    def tiny(cls) -> SynthConfig:
        """Small grids (64-80 pixels, 10-16 slices; a population's atlas at 3 mm) with the same anatomy: fast tests
        and smoke runs."""
        return cls(
            in_plane_sizes=(64, 72, 80),
            field_of_view_mm=(160.0, 180.0),
            slice_spacing_mm=(4.0, 6.0),
            coverage_mm=(60.0, 80.0),
            depth_range=(10, 16),
            template_spacing_mm=3.0,
        )


@dataclass(frozen=True)
class SynthCase:
    """One generated case, arrays in (z, y, x)."""

    case_id: str
    adc: np.ndarray
    z: np.ndarray
    label: np.ndarray
    geometry: Geometry
    adc_dtype: str
    z_dtype: str
    label_dtype: str
    orientation: str
    adc_level: float = 1.0
    """With a population: the case's global ADC level (1 otherwise)."""
    warp_rms_mm: float = 0.0
    """With a population: the root mean square length of the case's non-linear warp, in mm."""

    @property
    def burden(self) -> float:
        return lesion_burden(self.label, self.adc)


def case_id(index: int) -> str:
    """Case ids in the release's form, numbered from 001."""
    return f"MGHNICU_{index + 1:03d}-VISIT_01"


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: tuple[float, ...]) -> np.ndarray:
    """Zero-mean, unit-variance smooth random field, made on a coarse grid and zoomed up."""
    factor = [max(1, int(s // 2)) for s in sigma_vox]
    coarse_shape = [max(2, math.ceil(n / f)) for n, f in zip(shape, factor)]
    coarse = rng.standard_normal(coarse_shape).astype(np.float32)
    coarse = ndimage.gaussian_filter(coarse, [s / f for s, f in zip(sigma_vox, factor)], mode="wrap")
    zoom = [n / c for n, c in zip(shape, coarse_shape)]
    field = ndimage.zoom(coarse, zoom, order=1, grid_mode=True, mode="grid-wrap")
    field = field[: shape[0], : shape[1], : shape[2]]
    std = float(field.std())
    return (field - field.mean()) / (std if std > 0 else 1.0)


def _ellipsoid(coords: tuple[np.ndarray, ...], centre: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
    return sum(((c - m) / r) ** 2 for c, m, r in zip(coords, centre, radii))  # type: ignore[return-value]


def _tissue_map(coords: tuple[np.ndarray, ...], anatomy: dict, fold: np.ndarray, radial: np.ndarray) -> np.ndarray:
    """Tissue labels on the grid: 0 outside, 1 WM, 2 GM, 3 deep GM, 4 CSF."""
    z, y, x = coords
    radii = anatomy["radii"]
    shift = anatomy["shift"]
    scale = anatomy["scale"]
    zs, ys, xs = (z - shift[0]) / scale, (y - shift[1]) / scale, (x - shift[2]) / scale
    r = np.sqrt(_ellipsoid((zs, ys, xs), (0.0, 0.0, 0.0), radii))
    r = r * (1.0 + 0.05 * radial)
    depth_mm = (1.0 - r) * float(np.mean(radii))
    tissue = np.zeros(r.shape, dtype=np.uint8)
    tissue[r < 1.0] = 1
    tissue[(r < 1.0) & (depth_mm < 3.5 + 1.8 * fold)] = 2
    tissue[(r < 1.0) & (depth_mm < 1.0)] = 4
    for side in (-1.0, 1.0):
        deep = _ellipsoid((zs, ys, xs), (0.0, -2.0, side * 13.0), (8.0, 12.0, 8.0)) < 1.0
        tissue[deep & (tissue == 1)] = 3
        v = anatomy["ventricles"]
        vent = _ellipsoid((zs, ys, xs), (6.0, 4.0, side * 6.5), (6.0 * v, 15.0 * v, 3.5 * v)) < 1.0
        tissue[vent & (tissue > 0)] = 4
    return tissue


def _lesion_field(
    rng: np.random.Generator,
    coords: tuple[np.ndarray, ...],
    parenchyma: np.ndarray,
    burden: float,
    shape_noise: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """A multi-focal 'lesion likelihood' field and the focus index of each voxel."""
    candidates = np.argwhere(parenchyma)
    n_foci = int(1 + rng.poisson(1.5 + 10.0 * burden))
    n_foci = min(n_foci, 8)
    size_mm = 3.0 + 60.0 * math.sqrt(burden)
    field = np.zeros(parenchyma.shape, dtype=np.float32)
    focus = np.zeros(parenchyma.shape, dtype=np.uint8)
    for k in range(n_foci):
        centre_idx = candidates[rng.integers(len(candidates))]
        centre = [float(c.ravel()[centre_idx[axis]]) for axis, c in enumerate(coords)]
        sigma = size_mm * rng.uniform(0.5, 1.3)
        # Squared distance from the 1D coordinate vectors (open grid), then combine.
        d2 = sum(((c - m) / sigma) ** 2 for c, m in zip(coords, centre))
        bump = np.exp(-0.5 * d2).astype(np.float32) * rng.uniform(0.6, 1.0)
        stronger = bump > field
        focus[stronger] = k
        np.maximum(field, bump, out=field)
    field *= 1.0 + 0.35 * shape_noise
    return field, focus


def _threshold_for_count(values: np.ndarray, count: int) -> float:
    """The value above which `count` of `values` lie."""
    if count <= 0:
        return float(np.inf)
    count = min(count, values.size)
    return float(np.partition(values, values.size - count)[values.size - count])


def generate_case(seed: int, index: int, config: SynthConfig = SynthConfig()) -> SynthCase:
    """Generate one case; deterministic in (seed, index)."""
    rng = np.random.default_rng([seed, index])
    shape, spacing_zyx = _random_grid(rng, config)
    coords = _head_coordinates(rng, shape, spacing_zyx)
    tissue, atlas_mean, atlas_sd = _anatomy_and_atlas(rng, coords, shape, spacing_zyx, config)
    brain = tissue > 0
    burden = _random_burden(rng, config)
    adc, label = _adc_and_label(rng, tissue, coords, burden, spacing_zyx, config)

    z = z_scores(adc, atlas_mean, atlas_sd, brain, spacing_zyx, config.z)

    geometry, orientation = _random_geometry(rng, shape, spacing_zyx)
    adc_dtype = str(rng.choice(["float32", "float32", "int16", "uint16", "float64"]))
    z_dtype = str(rng.choice(["float32", "float32", "float64"]))
    label_dtype = str(rng.choice(["uint8", "uint8", "int16"]))
    return SynthCase(
        case_id=case_id(index),
        adc=adc,
        z=z,
        label=label,
        geometry=geometry,
        adc_dtype=adc_dtype,
        z_dtype=z_dtype,
        label_dtype=label_dtype,
        orientation=orientation,
    )


def _sigma_vox(mm: float, spacing_zyx: tuple[float, float, float]) -> tuple[float, ...]:
    """A Gaussian's width of `mm` in voxels along (z, y, x)."""
    return tuple(mm / s for s in spacing_zyx)


def _random_grid(rng: np.random.Generator, config: SynthConfig) -> tuple[tuple[int, int, int], tuple[float, ...]]:
    """The case's shape (z, y, x) and spacing in mm: square slices over the field of view, slices to cover the
    head."""
    n = int(rng.choice(config.in_plane_sizes))
    fov = rng.uniform(*config.field_of_view_mm)
    spacing_xy = fov / n
    spacing_z = rng.uniform(*config.slice_spacing_mm)
    depth = int(np.clip(round(rng.uniform(*config.coverage_mm) / spacing_z), *config.depth_range))
    return (depth, n, n), (spacing_z, spacing_xy, spacing_xy)


def _head_coordinates(rng: np.random.Generator, shape: tuple[int, int, int],
                      spacing_zyx: tuple[float, ...]) -> tuple[np.ndarray, ...]:
    """Open-grid physical coordinates (mm) centred on the volume, with a random head position."""
    centre_offset = rng.normal(0.0, [3.0, 4.0, 4.0])
    return tuple(
        ((np.arange(s) - (s - 1) / 2.0) * sp - off).reshape([-1 if i == a else 1 for i in range(3)])
        for a, (s, sp, off) in enumerate(zip(shape, spacing_zyx, centre_offset))
    )


def _tissue_values(config: SynthConfig) -> np.ndarray:
    """ADC of each tissue label of `_tissue_map` (0 outside)."""
    return np.array([0.0, config.adc_wm, config.adc_gm, config.adc_deep_gm, config.adc_csf], dtype=np.float32)


def _anatomy_and_atlas(rng: np.random.Generator, coords: tuple[np.ndarray, ...], shape: tuple[int, int, int],
                       spacing_zyx: tuple[float, ...], config: SynthConfig) -> tuple[np.ndarray, ...]:
    """The case's tissue labels, and the normative atlas's per-voxel ADC mean and standard deviation: the same
    anatomy, mis-registered by a little, blurred like a population mean."""
    full = tuple(np.broadcast_to(c, shape) for c in coords)
    sigma_of = lambda mm: _sigma_vox(mm, spacing_zyx)  # noqa: E731

    radii = (rng.uniform(38, 46), rng.uniform(50, 60), rng.uniform(40, 48))
    anatomy = {"radii": radii, "shift": (0.0, 0.0, 0.0), "scale": 1.0, "ventricles": rng.uniform(0.8, 1.3)}
    fold = _smooth_noise(rng, shape, sigma_of(2.5))
    radial = _smooth_noise(rng, shape, sigma_of(18.0))
    tissue = _tissue_map(full, anatomy, fold, radial)

    # The atlas: the same anatomy, mis-registered by a little, blurred like a population mean.
    atlas_anatomy = dict(
        anatomy,
        shift=tuple(rng.normal(0.0, 1.0, 3)),
        scale=rng.uniform(0.97, 1.03),
        ventricles=anatomy["ventricles"] * rng.uniform(0.85, 1.15),
    )
    atlas_tissue = _tissue_map(full, atlas_anatomy, fold * 0.0, radial)
    values = _tissue_values(config)
    sds = np.array([1.0, *config.atlas_sd], dtype=np.float32)
    atlas_mean = ndimage.gaussian_filter(values[atlas_tissue], sigma_of(2.0))
    atlas_sd = ndimage.gaussian_filter(sds[atlas_tissue], sigma_of(2.0))
    atlas_sd += 0.35 * np.abs(values[atlas_tissue] - atlas_mean)
    return tissue, atlas_mean, atlas_sd


def _random_burden(rng: np.random.Generator, config: SynthConfig) -> float:
    """Lesion voxels / brain voxels: a stratum drawn in the dataset's proportions, then a burden within it (0 for
    a lesion-free case)."""
    group = int(rng.choice(3, p=np.array(config.strata_weights) / sum(config.strata_weights)))
    lesion_free = rng.random() < config.lesion_free_fraction
    low, high = config.burden_ranges[group]
    return 0.0 if lesion_free else float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _adc_and_label(rng: np.random.Generator, tissue: np.ndarray, coords: tuple[np.ndarray, ...], burden: float,
                   spacing_zyx: tuple[float, ...], config: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """The ADC volume (tissue values, a smooth bias, lesions of reduced ADC, noise; 0 outside the brain) and the
    expert's label of its lesions."""
    tissue_adc = ndimage.gaussian_filter(_tissue_values(config)[tissue], _sigma_vox(0.6, spacing_zyx))
    return _lesions_and_noise(rng, tissue_adc, tissue, coords, burden, spacing_zyx, config)


def _lesions_and_noise(rng: np.random.Generator, healthy: np.ndarray, tissue: np.ndarray,
                       coords: tuple[np.ndarray, ...], burden: float, spacing_zyx: tuple[float, ...],
                       config: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """A healthy ADC volume with a smooth bias, lesions of reduced ADC, noise and 0 outside the brain, and the
    expert's label of its lesions."""
    shape = tissue.shape
    sigma_of = lambda mm: _sigma_vox(mm, spacing_zyx)  # noqa: E731
    brain = tissue > 0
    parenchyma = (tissue >= 1) & (tissue <= 3)
    bias = 1.0 + 0.04 * _smooth_noise(rng, shape, sigma_of(30.0))
    adc = healthy * bias
    label = np.zeros(shape, dtype=bool)
    if burden > 0:
        shape_noise = _smooth_noise(rng, shape, sigma_of(2.0))
        field, focus = _lesion_field(rng, coords, parenchyma, burden, shape_noise)
        target = int(round(burden * np.count_nonzero(brain)))
        in_parenchyma = field[parenchyma]
        q_true = _threshold_for_count(in_parenchyma, target)
        # ADC reduction: strongest at the core, mild at the rim; each focus has its own severity.
        severity = rng.uniform(0.25, 0.6, size=8).astype(np.float32)
        core = np.clip((field / q_true - 1.0) * 3.0 + 0.35, 0.0, 1.0) * parenchyma
        core[field < q_true * 0.8] = 0.0
        adc = adc * (1.0 - severity[focus] * core)
        # The expert outline: the same foci with a wavy border, a little larger or smaller.
        outline = field * (1.0 + 0.25 * _smooth_noise(rng, shape, sigma_of(3.0)))
        q_label = _threshold_for_count(outline[parenchyma], int(round(target * rng.uniform(0.8, 1.25))))
        label = (outline > q_label) & parenchyma
    adc = adc + rng.normal(0.0, config.noise_sd, shape).astype(np.float32)
    adc = np.where(brain, np.maximum(adc, 1.0), 0.0).astype(np.float32)
    return adc, label


@dataclass(frozen=True)
class Population:
    """The template anatomy every case of a population is drawn from, and its normative atlas: arrays (z, y, x)
    on `geometry`, an isotropic grid centred on the brain."""

    tissue: np.ndarray
    """Tissue labels as `_tissue_map`'s: 0 outside, 1 WM, 2 GM, 3 deep GM, 4 CSF."""
    mean: np.ndarray
    sd: np.ndarray
    geometry: Geometry

    @property
    def mask(self) -> np.ndarray:
        return self.tissue > 0


POPULATION_STREAM = 2**31
"""The random stream of a seed's population (cases use their index, far below)."""


def population(seed: int, config: SynthConfig = SynthConfig()) -> Population:
    """The template anatomy and atlas of a seed's population: a brain of middling size and shape, its mean ADC the
    tissues' values blurred 2 mm within the brain (an average of many brains), its SD the tissues' normative SDs
    (`SynthConfig.atlas_sd`) plus a share of the mean's local contrast (where brains differ most)."""
    rng = np.random.default_rng([seed, POPULATION_STREAM])
    radii = (42.0, 55.0, 44.0)
    spacing = config.template_spacing_mm
    shape = tuple(int(math.ceil(2.6 * r / spacing)) for r in radii)
    coords = tuple(((np.arange(n) - (n - 1) / 2.0) * spacing).reshape([-1 if i == a else 1 for i in range(3)])
                   for a, n in enumerate(shape))
    full = tuple(np.broadcast_to(c, shape) for c in coords)
    anatomy = {"radii": radii, "shift": (0.0, 0.0, 0.0), "scale": 1.0, "ventricles": 1.0}
    radial = _smooth_noise(rng, shape, _sigma_vox(18.0, (spacing,) * 3))
    tissue = _tissue_map(full, anatomy, np.zeros(shape, np.float32), radial)
    brain = tissue > 0
    values, sds = _tissue_values(config), np.array([1.0, *config.atlas_sd], dtype=np.float32)
    sigma = _sigma_vox(2.0, (spacing,) * 3)
    weight = np.maximum(ndimage.gaussian_filter(brain.astype(np.float32), sigma), 1e-3)
    mean = np.where(brain, ndimage.gaussian_filter(values[tissue], sigma) / weight, 0.0).astype(np.float32)
    sd = ndimage.gaussian_filter(sds[tissue], sigma) / weight + 0.35 * np.abs(values[tissue] - mean)
    sd = np.where(brain, sd, 1.0).astype(np.float32)
    origin = tuple(-(n - 1) / 2.0 * spacing for n in reversed(shape))
    geometry = Geometry.from_array_order(shape, (spacing,) * 3, origin, tuple(np.eye(3).ravel()))
    return Population(tissue=tissue, mean=mean, sd=sd, geometry=geometry)


def _rotation(angles_rad: np.ndarray) -> np.ndarray:
    """The rotation by `angles_rad` about x, then y, then z."""
    (cx, cy, cz), (sx, sy, sz) = np.cos(angles_rad), np.sin(angles_rad)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _template_points(rng: np.random.Generator, geometry: Geometry,
                     config: SynthConfig) -> tuple[np.ndarray, float]:
    """Where each voxel of a case's grid lies in the template's space: the voxel's physical point, less the brain's
    centre, through the case's affine map and smooth warp. Returns (3, D, H, W) template (x, y, z) points in mm
    and the warp's root mean square length."""
    shape = geometry.shape
    index = np.stack(np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij"))[::-1]
    direction = np.reshape(geometry.direction, (3, 3)).astype(np.float32)
    scaled = index * np.array(geometry.spacing_xyz_mm, np.float32)[:, None, None, None]
    points = np.einsum("ij,j...->i...", direction, scaled) + np.array(geometry.origin_xyz_mm, np.float32)[
        :, None, None, None]
    extent = (np.array(geometry.size_xyz) - 1) * np.array(geometry.spacing_xyz_mm)
    centre = np.array(geometry.origin_xyz_mm) + direction @ (extent / 2.0) + rng.normal(0.0, config.shift_mm, 3)
    angles = np.deg2rad(rng.uniform(-config.rotation_deg, config.rotation_deg, 3))
    affine = (_rotation(angles) @ np.diag(rng.normal(1.0, config.scale_sd, 3))).astype(np.float32)
    template = np.einsum("ij,j...->i...", affine, points - centre.astype(np.float32)[:, None, None, None])
    sigma = _sigma_vox(config.warp_smoothness_mm, geometry.spacing_mm)
    amplitude = config.warp_mm * rng.uniform(0.5, 1.5)
    warp = np.stack([_smooth_noise(rng, shape, sigma) * amplitude for _ in range(3)])
    return template + warp, float(np.sqrt(np.mean(np.sum(warp**2, axis=0))))


def _sample(volume: np.ndarray, geometry: Geometry, points: np.ndarray, order: int, outside: float) -> np.ndarray:
    """`volume` (on `geometry`, identity direction) at physical (x, y, z) `points` (3, D, H, W)."""
    origin, spacing = np.array(geometry.origin_xyz_mm), np.array(geometry.spacing_xyz_mm)
    index = [(points[axis] - origin[axis]) / spacing[axis] for axis in (2, 1, 0)]  # (z, y, x) voxel indices
    return ndimage.map_coordinates(volume, index, order=order, mode="constant", cval=outside).astype(volume.dtype)


def generate_population_case(seed: int, index: int, people: Population,
                             config: SynthConfig = SynthConfig()) -> SynthCase:
    """One case of a population (`population`): the template anatomy under the case's own affine map and warp,
    on its own grid; its ADC the atlas mean plus a smooth deviation of one SD, at its global level, with bias,
    lesions and noise; its Z_ADC against the generating atlas through the true warp at its level. Deterministic
    in (seed, index)."""
    rng = np.random.default_rng([seed, index])
    shape, spacing_zyx = _random_grid(rng, config)
    geometry, orientation = _random_geometry(rng, shape, spacing_zyx)
    points, warp_rms = _template_points(rng, geometry, config)
    tissue = _sample(people.tissue, people.geometry, points, 0, 0)
    mean = _sample(people.mean, people.geometry, points, 1, 0.0)
    sd = np.maximum(_sample(people.sd, people.geometry, points, 1, 1.0), 1.0)
    level = float(math.exp(rng.normal(0.0, config.adc_level_sd)))
    deviation = _smooth_noise(rng, shape, _sigma_vox(config.deviation_smoothness_mm, spacing_zyx))
    healthy = level * (mean + config.deviation_sd * sd * deviation)
    coords = tuple((np.arange(n) * sp).reshape([-1 if i == a else 1 for i in range(3)])
                   for a, (n, sp) in enumerate(zip(shape, spacing_zyx)))
    adc, label = _lesions_and_noise(rng, healthy.astype(np.float32), tissue, coords, _random_burden(rng, config),
                                    spacing_zyx, config)
    brain = tissue > 0
    z = z_scores(adc, level * mean, level * sd, brain, spacing_zyx, config.z)
    return SynthCase(
        case_id=case_id(index), adc=adc, z=z, label=label, geometry=geometry,
        adc_dtype=str(rng.choice(["float32", "float32", "int16", "uint16", "float64"])),
        z_dtype=str(rng.choice(["float32", "float32", "float64"])),
        label_dtype=str(rng.choice(["uint8", "uint8", "int16"])),
        orientation=orientation, adc_level=level, warp_rms_mm=warp_rms,
    )


GENERATING_ATLAS = "generating_atlas"
"""The folder beside the case folders where `write_dataset` with a population writes the atlas that made them."""


def write_population_atlas(out: Path, people: Population, seed: int) -> Path:
    """The generating atlas of a population as an atlas folder (`sparseg.atlas`): the truth a computed Z_ADC is
    measured against."""
    write_atlas(out, {"mean": people.mean, "sd": people.sd, "mask": people.mask.astype(np.uint8)}, people.geometry,
                {"kind": "synthetic",
                 "description": f"the generating atlas of the synthetic population of seed {seed} (sparseg synth "
                                "--population): synthetic data, not a normative atlas of real neonates",
                 "made": {"how": "sparseg synth --population", "seed": seed}})
    return out


def _random_geometry(
    rng: np.random.Generator, shape: tuple[int, int, int], spacing_zyx: tuple[float, float, float]
) -> tuple[Geometry, str]:
    """Header geometry: mostly axial identity, some flipped (RAS-like), some oblique."""
    kind = str(rng.choice(["identity", "identity", "identity", "flipped", "oblique"]))
    if kind == "identity":
        direction = np.eye(3)
    elif kind == "flipped":
        direction = np.diag([-1.0, -1.0, 1.0])
    else:
        a, b = np.deg2rad(rng.uniform(-15, 15)), np.deg2rad(rng.uniform(-8, 8))
        rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
        rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
        direction = rz @ rx
    centred = Geometry.from_array_order(shape, spacing_zyx, (0.0, 0.0, 0.0), tuple(direction.ravel()))
    extent = np.array(centred.size_xyz) * np.array(centred.spacing_xyz_mm)
    origin = -direction @ (extent / 2.0) + rng.normal(0.0, 5.0, 3)
    return dataclasses.replace(centred, origin_xyz_mm=tuple(float(v) for v in origin)), kind


def _as_dtype(array: np.ndarray, dtype: str) -> np.ndarray:
    if np.issubdtype(np.dtype(dtype), np.integer):
        return np.rint(array).astype(dtype)
    return array.astype(dtype)


def write_dataset(out: Path | str, n_cases: int, seed: int, config: SynthConfig = SynthConfig(),
                  drawn_from_population: bool = False) -> list[Path]:
    """Write `n_cases` cases in the release layout under `out`, plus a manifest CSV; a folder that holds cases
    already is refused (they would be mixed with these, or replaced). With `drawn_from_population` the cases come
    from one template anatomy (`population`), whose atlas is written to `out/generating_atlas/`."""
    out = Path(out)
    _require_no_cases(out / layout.ADC_DIR, out / layout.Z_DIR, out / layout.LABEL_DIR)
    people = population(seed, config) if drawn_from_population else None
    if people is not None:
        write_population_atlas(out / GENERATING_ATLAS, people, seed)
    rows = []
    for index in range(n_cases):
        case = generate_case(seed, index, config) if people is None else \
            generate_population_case(seed, index, people, config)
        _write_inputs(case, out / layout.ADC_DIR, out / layout.Z_DIR)
        label = out / layout.LABEL_DIR / layout.label_name(case.case_id)
        write_image(case.label.astype(case.label_dtype), case.geometry, label)
        rows.append(_manifest_row(case))
    write_csv(out / layout.SYNTH_MANIFEST, rows)
    return [out / layout.ADC_DIR, out / layout.Z_DIR, out / layout.LABEL_DIR]


def write_input_case(out: Path | str, seed: int, index: int = 0, config: SynthConfig = SynthConfig()) -> SynthCase:
    """Write one case in the container's /input layout (no label: the container never sees one); an /input
    folder that holds a case already is refused."""
    out = Path(out)
    _require_no_cases(out / layout.INPUT_ADC_DIR, out / layout.INPUT_Z_DIR)
    case = generate_case(seed, index, config)
    _write_inputs(case, out / layout.INPUT_ADC_DIR, out / layout.INPUT_Z_DIR)
    return case


def _require_no_cases(*folders: Path) -> None:
    """Synthetic cases go into folders without images only: a dataset there would be mixed or written over."""
    held = [folder for folder in folders if folder.is_dir() and any(has_image_suffix(p) for p in folder.iterdir())]
    if held:
        raise InputError(f"{held[0]}: holds images already; synthetic cases go into an empty folder")


def _write_inputs(case: SynthCase, adc_dir: Path, z_dir: Path) -> None:
    """The case's ADC and Z_ADC files, named as in the release, in their pixel types."""
    write_image(_as_dtype(case.adc, case.adc_dtype), case.geometry, adc_dir / layout.adc_name(case.case_id))
    write_image(_as_dtype(case.z, case.z_dtype), case.geometry, z_dir / layout.z_name(case.case_id))


def _manifest_row(case: SynthCase) -> dict:
    return {
        "case_id": case.case_id,
        "shape_zyx": "x".join(str(s) for s in case.geometry.shape),
        "spacing_zyx_mm": "x".join(f"{s:.3f}" for s in case.geometry.spacing_mm),
        "orientation": case.orientation,
        "adc_dtype": case.adc_dtype,
        "z_dtype": case.z_dtype,
        "label_dtype": case.label_dtype,
        "lesion_voxels": int(np.count_nonzero(case.label)),
        "burden": f"{case.burden:.5f}",
        "burden_group": burden_group(case.burden),
        "adc_level": f"{case.adc_level:.4f}",
        "warp_rms_mm": f"{case.warp_rms_mm:.2f}",
    }
