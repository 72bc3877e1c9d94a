"""The one I/O boundary: every image file is read and written here.

SimpleITK speaks (x, y, z); the rest of the package speaks numpy (z, y, x).
The flip happens here and nowhere else: `Volume.array` is (z, y, x) and
`Geometry.spacing_mm` is (z, y, x) too. Masks are always written with the
geometry (spacing, origin, direction) of a reference image, atomically: a
temporary file in the target folder renamed into place, so a crash never
leaves a half-written output.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from sparseg.errors import InputError, OutputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".mha", ".mhd", ".nii.gz", ".nii", ".nrrd")
"""File types read as images (the release ships .mha; users bring NIfTI too)."""

DEFAULT_MAX_VOXELS = 512 * 512 * 512
"""Volumes larger than this are refused before their pixels are read."""


def has_image_suffix(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES)


@dataclass(frozen=True)
class Geometry:
    """Where a voxel grid sits in space, in SimpleITK's (x, y, z) order."""

    size_xyz: tuple[int, int, int]
    spacing_xyz_mm: tuple[float, float, float]
    origin_xyz_mm: tuple[float, float, float]
    direction: tuple[float, ...]
    """Row-major 3x3 direction cosine matrix."""

    @property
    def shape(self) -> tuple[int, int, int]:
        """The numpy (z, y, x) array shape."""
        x, y, z = self.size_xyz
        return (z, y, x)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel spacing in numpy (z, y, x) order, the order every metric takes."""
        x, y, z = self.spacing_xyz_mm
        return (z, y, x)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing_xyz_mm))

    def differences(self, other: Geometry, tolerance: float = 1e-3) -> list[str]:
        """What differs between two grids beyond a relative/absolute `tolerance`."""
        problems = []
        if self.size_xyz != other.size_xyz:
            problems.append(f"size {self.size_xyz} vs {other.size_xyz}")
        if not np.allclose(self.spacing_xyz_mm, other.spacing_xyz_mm, rtol=tolerance, atol=0):
            problems.append(f"spacing {self.spacing_xyz_mm} vs {other.spacing_xyz_mm}")
        scale = max(max(self.spacing_xyz_mm), 1.0)
        if not np.allclose(self.origin_xyz_mm, other.origin_xyz_mm, rtol=0, atol=tolerance * scale):
            problems.append(f"origin {self.origin_xyz_mm} vs {other.origin_xyz_mm}")
        if not np.allclose(self.direction, other.direction, rtol=0, atol=tolerance):
            problems.append("direction matrices differ")
        return problems

    @classmethod
    def from_array_order(cls, shape: tuple[int, int, int], spacing_mm: tuple[float, float, float],
                         origin_xyz_mm: tuple[float, float, float], direction: tuple[float, ...]) -> Geometry:
        """The geometry of a (z, y, x) array of `shape` with (z, y, x) `spacing_mm`; the origin and the
        direction matrix are physical (x, y, z) as in the file."""
        z, y, x = shape
        spacing_z, spacing_y, spacing_x = spacing_mm
        return cls(
            size_xyz=(int(x), int(y), int(z)),
            spacing_xyz_mm=(float(spacing_x), float(spacing_y), float(spacing_z)),
            origin_xyz_mm=tuple(float(v) for v in origin_xyz_mm),  # type: ignore[arg-type]
            direction=tuple(float(v) for v in direction),
        )

    @classmethod
    def of(cls, image: sitk.Image | sitk.ImageFileReader) -> Geometry:
        """The geometry of an image, or of a reader that has read the header."""
        return cls(
            size_xyz=tuple(int(v) for v in image.GetSize()),  # type: ignore[arg-type]
            spacing_xyz_mm=tuple(float(v) for v in image.GetSpacing()),  # type: ignore[arg-type]
            origin_xyz_mm=tuple(float(v) for v in image.GetOrigin()),  # type: ignore[arg-type]
            direction=tuple(float(v) for v in image.GetDirection()),
        )

    def apply_to(self, image: sitk.Image) -> None:
        image.SetSpacing(self.spacing_xyz_mm)
        image.SetOrigin(self.origin_xyz_mm)
        image.SetDirection(self.direction)


@dataclass
class Volume:
    """A scalar 3D image as float32 (z, y, x) voxels and its geometry."""

    array: np.ndarray
    geometry: Geometry
    path: Path


def require_same_grid(reference: Volume, *others: Volume) -> None:
    """Raise InputError, naming the file and what differs, when an image is not on the reference's grid.

    Every image of a case (Z_ADC, the label) must share the ADC image's size, spacing, origin and
    direction (`Geometry.differences`): the pipeline pairs their voxels one to one.
    """
    for other in others:
        problems = other.geometry.differences(reference.geometry)
        if problems:
            raise InputError(f"{other.path}: grid differs from the ADC image {reference.path.name} "
                             f"({'; '.join(problems)})")


def _sitk_message(exc: Exception) -> str:
    """The informative last line of a SimpleITK/ITK exception, shortened."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return text[:200]


METAIMAGE_HEADER_BYTES = 65536
"""A MetaImage (.mha/.mhd) text header must end (at ElementDataFile) within this many bytes."""


def _check_metaimage_header(path: Path) -> None:
    """Refuse MetaImage headers that ITK does not refuse cleanly (a huge NDims aborts the process).

    Checks, before ITK parses the file, that NDims, DimSize and
    ElementNumberOfChannels are small positive integers that agree.
    """
    with open(path, "rb") as handle:
        head = handle.read(METAIMAGE_HEADER_BYTES)
    end = head.find(b"ElementDataFile")
    if end < 0:
        raise InputError(f"{path}: not a readable image (no MetaImage header ending in ElementDataFile)")
    fields = {}
    for line in head[:end].decode("latin-1").splitlines():
        key, equals, value = line.partition("=")
        if equals:
            fields[key.strip()] = value.strip()
    ndims = fields.get("NDims", "")
    if not ndims.isdigit() or not 1 <= int(ndims) <= 8:
        raise InputError(f"{path}: not a readable image (MetaImage NDims {ndims!r})")
    sizes = fields.get("DimSize", "").split()
    if len(sizes) != int(ndims) or not all(size.isdigit() and int(size) > 0 for size in sizes):
        raise InputError(f"{path}: not a readable image (MetaImage DimSize {fields.get('DimSize')!r} "
                         f"for NDims {ndims})")
    channels = fields.get("ElementNumberOfChannels", "1")
    if not channels.isdigit() or not 1 <= int(channels) <= 64:
        raise InputError(f"{path}: not a readable image (MetaImage ElementNumberOfChannels {channels!r})")
    line_end = head.find(b"\n", end)
    data_file = head[end:line_end if line_end >= 0 else len(head)].decode("latin-1").partition("=")[2].strip()
    if data_file and data_file not in ("LOCAL", "LIST") and "%" not in data_file:
        if not (path.parent / data_file).is_file():
            raise InputError(f"{path}: its pixel data file {data_file} is missing")


def _open_header(path: Path, max_voxels: int) -> sitk.ImageFileReader:
    """A reader with the header read and checked: a readable, scalar 3D image within `max_voxels`."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    if path.suffix.lower() in (".mha", ".mhd"):
        _check_metaimage_header(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(f"{path}: not a readable image ({_sitk_message(exc)})") from None
    dimension = reader.GetDimension()
    if dimension != 3:
        raise InputError(f"{path}: image is {dimension}D, expected a 3D volume")
    components = reader.GetNumberOfComponents()
    if components != 1:
        raise InputError(f"{path}: pixels have {components} components, expected a scalar image")
    voxels = int(np.prod(reader.GetSize(), dtype=np.int64))
    if voxels > max_voxels:
        raise InputError(f"{path}: volume of {reader.GetSize()} voxels ({voxels}) is over the limit of {max_voxels}")
    return reader


def read_image(path: Path | str, max_voxels: int = DEFAULT_MAX_VOXELS) -> Volume:
    """Read a 3D scalar image of any numeric pixel type as float32 (z, y, x).

    Raises InputError (message starts with the path) for a missing, empty or
    unreadable file, an image that is not 3D, vector pixels, or a volume over
    `max_voxels` (checked from the header, before the pixels are read).
    Non-finite voxels are counted in a warning and set to 0.
    """
    path = Path(path)
    reader = _open_header(path, max_voxels)
    try:
        image = reader.Execute()
    except RuntimeError:
        raise InputError(f"{path}: pixel data cannot be read: the file is truncated or damaged") from None
    raw = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(raw.dtype, np.number) or np.iscomplexobj(raw):
        raise InputError(f"{path}: pixel type {raw.dtype} is not a real number type")
    array = np.asarray(raw, dtype=np.float32).copy()
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        log.warning("%s: %d non-finite voxels (NaN/Inf) treated as 0", path, bad)
        array[~finite] = 0.0
    return Volume(array=array, geometry=Geometry.of(image), path=path)


def read_geometry(path: Path | str, max_voxels: int = DEFAULT_MAX_VOXELS) -> Geometry:
    """The geometry of an image file, from its header alone (checked like `read_image`)."""
    return Geometry.of(_open_header(Path(path), max_voxels))


def read_mask(path: Path | str, max_voxels: int = DEFAULT_MAX_VOXELS) -> tuple[np.ndarray, Geometry]:
    """A label image as a boolean (z, y, x) array (non-zero = lesion) and its geometry."""
    volume = read_image(path, max_voxels=max_voxels)
    return volume.array != 0, volume.geometry


PARTIAL_PREFIX = ".partial-"
"""Files being written start with this; an interrupted program can leave them, never a half-written output."""


def _default_file_mode() -> int:
    """The mode a new file gets under this process's umask (0644 under the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` to write to; renamed to `path` on success, removed on failure.

    Readers therefore see either no file or a complete one, never a half-written one. The file gets the
    mode of any new file (some writers, safetensors' among them, make theirs readable by the owner only,
    which a container's unprivileged user then cannot read).
    """
    temporary = path.parent / f"{PARTIAL_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}"
    try:
        yield temporary
        if temporary.is_file():
            os.chmod(temporary, _default_file_mode())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_csv(path: Path | str, rows: list[dict]) -> Path:
    """A table of dicts (the first row's keys are the header) as CSV, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_image(array: np.ndarray, geometry: Geometry, path: Path | str, compress: bool = True) -> Path:
    """Write a (z, y, x) array with `geometry`, keeping its dtype, atomically.

    The file is written under a temporary name in the target folder and then
    renamed, so the target either does not exist or is complete.
    """
    path = Path(path)
    if path.suffix.lower() == ".mhd":
        raise ValueError(f"{path}: write .mha (one file, renamed into place when complete), not .mhd + .raw")
    if tuple(array.shape) != geometry.shape:
        raise ValueError(f"array shape {array.shape} does not match the grid {geometry.shape}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    geometry.apply_to(image)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path.parent}: cannot create output folder ({exc.strerror})") from None
    try:
        with atomic_path(path) as temporary:
            sitk.WriteImage(image, str(temporary), compress)
    except (RuntimeError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else _sitk_message(exc)
        raise OutputError(f"{path}: cannot write ({reason})") from None
    return path


def write_mask(mask: np.ndarray, reference: Geometry, path: Path | str) -> Path:
    """Write a binary (z, y, x) mask as uint8 {0, 1} on the reference image's grid."""
    return write_image((np.asarray(mask) != 0).astype(np.uint8), reference, path)
