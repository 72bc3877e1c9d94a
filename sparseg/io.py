"""The one I/O boundary: every image file is read and written here. Each format's own rules are in
`sparseg.formats` (one module per format), the rules of paths (an output that would replace an input, hashes of
files) in `sparseg.paths`.

SimpleITK speaks (x, y, z); the rest of the package speaks numpy (z, y, x).
The flip happens here and nowhere else: `Volume.array` is (z, y, x) and
`Geometry.spacing_mm` is (z, y, x) too. Masks are always written with the
geometry (spacing, origin, direction) of a reference image, atomically: a
temporary file in the target folder, flushed to disk and proved complete (an
image is read back and compared), then renamed into place, so neither a crash
nor a full disk leaves a half-written output under its final name.

Reading checks what ITK would accept silently: a damaged compressed stream,
an impossible spacing, origin or direction, file names that are not UTF-8.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import re
import tempfile
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from sparseg.errors import InputError, OutputError
from sparseg.formats import IMAGE_SUFFIXES, has_image_suffix, image_io, metaimage, nifti, nrrd
from sparseg.formats.streams import GZIP_ERRORS, check_gzip, gzip_size
from sparseg.paths import file_problem

log = logging.getLogger(__name__)


DEFAULT_MAX_VOXELS = 512 * 512 * 512
"""Volumes larger than this are refused before their pixels are read."""


PLAUSIBLE_SPACING_MM = (0.05, 20.0)
"""Voxel spacings outside this range are warned about: MRI of a newborn's brain is ~0.5-6 mm (BONBID ~1-2)."""

PIXEL_BYTES = {sitk.sitkUInt8: 1, sitk.sitkInt8: 1, sitk.sitkUInt16: 2, sitk.sitkInt16: 2, sitk.sitkUInt32: 4,
               sitk.sitkInt32: 4, sitk.sitkUInt64: 8, sitk.sitkInt64: 8, sitk.sitkFloat32: 4, sitk.sitkFloat64: 8}


def itk_path(path: Path) -> str:
    """`path` as ITK takes it. A name that is not valid UTF-8 is refused here: ITK aborts the process on it."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "backslashreplace").decode("ascii", "replace")
        raise InputError(f"{shown}: the file name is not valid UTF-8; rename the file") from None
    return text


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


def _check_geometry(path: Path, reader: sitk.ImageFileReader) -> None:
    """Refuse a grid no voxel can sit on, naming the problem; warn about a spacing no MRI of a newborn has."""
    spacing, origin, direction = reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection()
    if not all(math.isfinite(v) and v > 0 for v in spacing):
        raise InputError(f"{path}: voxel spacing {tuple(spacing)} mm: every spacing must be a positive number")
    if not all(math.isfinite(v) for v in (*origin, *direction)):
        raise InputError(f"{path}: origin or direction matrix is not finite")
    if abs(float(np.linalg.det(np.reshape(direction, (3, 3))))) < 1e-6:
        raise InputError(f"{path}: the direction matrix is singular (axes {tuple(round(v, 3) for v in direction)})")
    axes = np.reshape(direction, (3, 3))
    if not np.allclose(axes @ axes.T, np.eye(3), atol=1e-3):
        log.warning("%s: the direction matrix is not orthonormal (axes of other lengths or not at right angles): "
                    "the voxels' positions in space are distorted", path)
    low, high = PLAUSIBLE_SPACING_MM
    if not all(low <= v <= high for v in spacing):
        log.warning("%s: voxel spacing %s mm is outside %g-%g mm: check the header's units (lesion volumes in mL "
                    "come from it)", path, tuple(float(v) for v in spacing), low, high)


def image_files(path: Path | str) -> list[Path]:
    """Every file an image is read from: the file itself and, for a MetaImage header (.mhd) or a NRRD header
    (.nhdr, or a .nrrd with detached data), the pixel data files it names (one file, a LIST of files, or a printf
    pattern with its range)."""
    path = Path(path)
    if image_io(path) not in ("MetaImageIO", "NrrdImageIO") or not path.is_file():
        return [path]
    try:
        if image_io(path) == "NrrdImageIO":
            return [path, *(nrrd.data_files(path) or [])]
        return [path, *(metaimage.data_files(path, *metaimage.read_fields(path)) or [])]
    except (InputError, OSError):
        return [path]


def _open_header(path: Path, max_voxels: int) -> sitk.ImageFileReader:
    """A reader with the header read and checked: a readable, scalar 3D image within `max_voxels`, on a
    grid with positive spacings, a finite origin and an invertible direction matrix."""
    name = itk_path(path)
    problem = file_problem(path)
    if problem is not None:
        raise InputError(f"{path}: {'no such file' if problem == 'does not exist' else problem}")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    if image_io(path) == "MetaImageIO":
        fields = metaimage.read_fields(path)[0]
        metaimage.check_header(path, fields)
        if "ElementSpacing" not in fields and "ElementSize" not in fields:
            log.warning("%s: no ElementSpacing in the MetaImage header: 1 mm is assumed (lesion volumes in mL come "
                        "from it)", path)
    if image_io(path) == "NiftiImageIO":
        nifti.refuse_nifti2(path)
    if image_io(path) == "NrrdImageIO":
        nrrd.require_data_files(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(name)
    reader.SetImageIO(image_io(path))
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
    _check_geometry(path, reader)
    return reader


def _check_pixel_data(path: Path, reader: sitk.ImageFileReader) -> None:
    """Check a file's pixel data against its header before ITK reads it: a compressed stream whole, to its
    checksum, and the data's length (ITK does not report every damage, nor data of another length)."""
    io_name = image_io(path)
    if io_name == "MetaImageIO":
        metaimage.check_data(path, int(np.prod(reader.GetSize(), dtype=np.int64)) * reader.GetNumberOfComponents()
                             * PIXEL_BYTES.get(reader.GetPixelID(), 0))
    elif io_name == "NiftiImageIO":
        nifti.check_data(path, check_gzip(path) if path.name.lower().endswith(".gz") else path.stat().st_size)
    elif io_name == "NrrdImageIO":
        nrrd.check_data(path)
    elif path.name.lower().endswith(".gz"):
        check_gzip(path)


def read_image(path: Path | str, max_voxels: int = DEFAULT_MAX_VOXELS, finite: bool = False) -> Volume:
    """Read a 3D scalar image of any numeric pixel type as float32 (z, y, x).

    Raises InputError (message starts with the path) for a missing, empty or
    unreadable file, an image that is not 3D, vector pixels, a volume over
    `max_voxels` (checked from the header, before the pixels are read), an
    impossible grid, or damaged compressed data. Non-finite voxels, and values
    beyond float32's range, are counted in a warning and set to 0; with
    `finite` (an atlas map, where a NaN is a broken file) they are an InputError.
    """
    path = Path(path)
    reader = _open_header(path, max_voxels)
    _check_pixel_data(path, reader)
    try:
        image = reader.Execute()
    except RuntimeError:
        raise InputError(f"{path}: pixel data cannot be read: the file is truncated or damaged") from None
    raw = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(raw.dtype, np.number) or np.iscomplexobj(raw):
        raise InputError(f"{path}: pixel type {raw.dtype} is not a real number type")
    out_of_range = 0
    if finite and np.issubdtype(raw.dtype, np.floating):
        with np.errstate(invalid="ignore", over="ignore"):
            bad = int(raw.size - np.count_nonzero(np.isfinite(raw.astype(np.float32))))
        if bad:
            raise InputError(f"{path}: {bad} voxels are not finite numbers (NaN, Inf, or beyond float32's range)")
    if raw.dtype == np.float64:
        with np.errstate(invalid="ignore"):
            beyond = np.abs(raw) > np.finfo(np.float32).max
        out_of_range = int(np.count_nonzero(beyond))
        if out_of_range:
            raw = np.where(beyond, 0.0, raw)
            log.warning("%s: %d voxels beyond the float32 range (|value| > %.2g) treated as 0", path, out_of_range,
                        float(np.finfo(np.float32).max))
    array = np.asarray(raw, dtype=np.float32).copy()
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        log.warning("%s: %d non-finite voxels (NaN/Inf) treated as 0", path, bad)
        array[~finite] = 0.0
    return Volume(array=array, geometry=Geometry.of(image), path=path)


def itk_image(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    """A (z, y, x) array on `geometry` as an in-memory ITK image (for registration: `sparseg.registration`)."""
    if tuple(array.shape) != geometry.shape:
        raise ValueError(f"array shape {array.shape} does not match the grid {geometry.shape}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    geometry.apply_to(image)
    return image


def from_itk_image(image: sitk.Image) -> tuple[np.ndarray, Geometry]:
    """An in-memory ITK image as a (z, y, x) array (a copy) and its geometry: `itk_image`'s inverse."""
    return sitk.GetArrayFromImage(image), Geometry.of(image)


def read_geometry(path: Path | str, max_voxels: int = DEFAULT_MAX_VOXELS) -> Geometry:
    """The geometry of an image file, from its header alone (checked like `read_image`)."""
    return Geometry.of(_open_header(Path(path), max_voxels))


def binary(volume: Volume) -> np.ndarray:
    """A mask volume (a label or a prediction) as a boolean (z, y, x) array: 1 is lesion, 0 is not, and any other
    value is an InputError naming the file. The challenge's scorer casts both masks to uint8 and takes SimpleITK's
    label-overlap Dice, which counts a voxel of 2 or 255 as another label than lesion and one of 0.5 or 256 as
    background: such a mask has no one score, so every command that reads a mask reads it by this rule
    (docs/scoring.md)."""
    other = np.unique(volume.array[(volume.array != 0) & (volume.array != 1)])
    if other.size:
        shown = ", ".join(f"{v:g}" for v in other[:5]) + (", ..." if other.size > 5 else "")
        raise InputError(f"{volume.path}: a mask holds 0 and 1 only, this holds {shown} too; the challenge's "
                         "scoring would count those voxels otherwise than as lesion or background: write a binary "
                         "mask")
    return volume.array == 1


def read_mask(path: Path | str, max_voxels: int = DEFAULT_MAX_VOXELS) -> tuple[np.ndarray, Geometry]:
    """A mask file (a label or a prediction) as a boolean (z, y, x) array (`binary`'s rule) and its geometry."""
    volume = read_image(path, max_voxels=max_voxels)
    return binary(volume), volume.geometry


PARTIAL_PREFIX = ".partial-"
"""Files being written start with this; an interrupted program can leave them, never a half-written output."""
TEMPORARY_NAME = re.compile(re.escape(PARTIAL_PREFIX) + r"[0-9a-f]{8}-(.+)")
"""The name `atomic_path` writes a file under until it is complete; the group is the file's own name."""


def _default_file_mode() -> int:
    """The mode a new file gets under this process's umask (0644 under the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where the platform allows opening a folder)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


class IncompleteWrite(Exception):
    """Raised by an `atomic_path` check: the file written is not what was meant (its message says how)."""


def _settle(temporary: Path, verify: Callable[[Path], None] | None) -> None:
    """Prove a written temporary file complete: it exists, is not empty, is on disk (fsync), and `verify`
    (the writer's own check: read it back) accepts it. Raises IncompleteWrite otherwise."""
    if not temporary.is_file():
        raise IncompleteWrite("the writer made no file")
    if temporary.stat().st_size == 0:
        raise IncompleteWrite("0 bytes reached the disk: is it full?")
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    if verify is not None:
        verify(temporary)
    os.chmod(temporary, _default_file_mode())


@contextlib.contextmanager
def atomic_path(path: Path, verify: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """A temporary name beside `path` to write to; renamed to `path` once proved complete, removed otherwise.

    Readers therefore see either no file or a complete one, never a half-written one: before the
    rename the file must exist, be non-empty, be flushed to disk (fsync), and pass `verify` (which
    reads it back and raises IncompleteWrite when it is not what was written; some writers, ITK's
    among them, do not report a full disk). Either, or a file system error while writing, becomes an
    OutputError naming `path`. The file gets the mode of any new file (some writers, safetensors' among them,
    make theirs readable by the owner only, which a container's unprivileged user then cannot read).
    """
    name = path.name
    if has_image_suffix(path):  # ITK's MetaImage writer makes .mhd + .zraw of "x.MHA": suffixes in lower case
        suffix = next(s for s in IMAGE_SUFFIXES if name.lower().endswith(s))
        name = name[: -len(suffix)] + suffix
    temporary = path.parent / f"{PARTIAL_PREFIX}{uuid.uuid4().hex[:8]}-{name}"
    try:
        with _as_output_error(path):
            yield temporary
        place(temporary, path, verify)
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def _as_output_error(path: Path) -> Iterator[None]:
    """A file system error or an IncompleteWrite in the block becomes an OutputError naming `path`."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except IncompleteWrite as exc:
        raise OutputError(f"{path}: cannot write ({exc})") from None


def place(temporary: Path, path: Path, verify: Callable[[Path], None] | None = None) -> None:
    """Rename a written file `temporary` (in `path`'s folder, or a folder beside on the same file system) to
    `path` once proved complete, as `atomic_path` does; for writers that make files `atomic_path` does not name
    (OpenVINO writes a model's .bin beside its .xml)."""
    with _as_output_error(path):
        _settle(temporary, verify)
        os.replace(temporary, path)
        _sync_folder(path.parent)


def require_writable(folder: Path) -> None:
    """Refuse, before any work, a folder where no file can be made (read-only, full, or not there): an OutputError
    naming it. A command whose output cannot be written learns so first, not after minutes of computing."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=PARTIAL_PREFIX):
            pass
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write there ({exc.strerror or exc})") from None


def _make_folder(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path.parent}: cannot create output folder ({exc.strerror})") from None


def write_bytes(path: Path | str, data: bytes) -> Path:
    """Write `data` atomically, checked to have reached the file whole."""
    path = Path(path)
    _make_folder(path)

    def verify(temporary: Path) -> None:
        if temporary.stat().st_size != len(data):
            raise IncompleteWrite(f"{temporary.stat().st_size} of {len(data)} bytes reached the disk: is it full?")

    with atomic_path(path, verify) as temporary:
        temporary.write_bytes(data)
    return path


def verify_zip(temporary: Path) -> None:
    """`atomic_path`'s check of a zip file (a torch.save or TorchScript file): every member's CRC."""
    try:
        with zipfile.ZipFile(temporary) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise IncompleteWrite(f"not a complete zip file: {exc}") from None
    if bad is not None:
        raise IncompleteWrite(f"zip member {bad} is damaged")


def verify_gzip(temporary: Path) -> None:
    """`atomic_path`'s check of a gzip file (a model tarball): the stream to its end, CRC-32 and length."""
    try:
        gzip_size(temporary)
    except GZIP_ERRORS as exc:
        raise IncompleteWrite(f"the gzip stream does not read back: {exc}") from None


PNG_SIGNATURE, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


def verify_png(temporary: Path) -> None:
    """`atomic_path`'s check of a PNG: its signature at the start and its IEND chunk at the end."""
    with open(temporary, "rb") as handle:
        start = handle.read(len(PNG_SIGNATURE))
        handle.seek(max(0, temporary.stat().st_size - len(PNG_END)))
        end = handle.read()
    if start != PNG_SIGNATURE or end != PNG_END:
        raise IncompleteWrite("the PNG is incomplete")


def write_text(path: Path | str, text: str) -> Path:
    """Write UTF-8 text (JSON, markdown, HTML) atomically, checked like `write_bytes`."""
    return write_bytes(path, text.encode("utf-8"))


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A spreadsheet runs a cell beginning so as a formula (OWASP's CSV injection list)."""


def spreadsheet_safe(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: text beginning with `FORMULA_STARTS` (a file name in an error
    message, `=HYPERLINK(...).mha`) gets a leading apostrophe, as spreadsheets themselves mark text; numbers, and
    text that is a number ("-0.5"), are kept."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def write_csv(path: Path | str, rows: list[dict], columns: tuple[str, ...] = ()) -> Path:
    """A table of dicts as CSV, atomically: the header is `columns`, then every other key in the order first met
    (a row without one leaves its cell empty); a table without rows is its header alone. Every cell is
    `spreadsheet_safe`."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys([*columns, *(key for row in rows for key in row)])))
    writer.writeheader()
    writer.writerows({key: spreadsheet_safe(value) for key, value in row.items()} for row in rows)
    return write_text(path, buffer.getvalue())


def write_image(array: np.ndarray, geometry: Geometry, path: Path | str, compress: bool = True) -> Path:
    """Write a (z, y, x) array with `geometry`, keeping its dtype, atomically.

    The file is written under a temporary name in the target folder, read back
    and compared with `array` and `geometry`, and then renamed, so the target
    either does not exist or is complete and right.
    """
    path = Path(path)
    if path.suffix.lower() in (".mhd", ".nhdr"):
        raise ValueError(f"{path}: write one file (.mha, renamed into place when complete), not a header and data")
    array = np.ascontiguousarray(array)
    image = itk_image(array, geometry)
    itk_path(path)
    _make_folder(path)

    def verify(temporary: Path) -> None:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(temporary))
        reader.SetImageIO(image_io(path))
        try:
            written = reader.Execute()
        except RuntimeError as exc:
            raise IncompleteWrite(f"the file does not read back: {_sitk_message(exc)}") from None
        same = (Geometry.of(written).differences(geometry, tolerance=1e-6) == []
                and np.array_equal(sitk.GetArrayViewFromImage(written), array, equal_nan=array.dtype.kind == "f"))
        if not same:
            raise IncompleteWrite("the file read back differs from what was written")

    try:
        with atomic_path(path, verify) as temporary:
            writer = sitk.ImageFileWriter()
            writer.SetFileName(str(temporary))
            writer.SetImageIO(image_io(path))
            writer.SetUseCompression(compress)
            writer.Execute(image)
    except RuntimeError as exc:
        raise OutputError(f"{path}: cannot write ({_sitk_message(exc)})") from None
    return path


def write_mask(mask: np.ndarray, reference: Geometry, path: Path | str) -> Path:
    """Write a binary (z, y, x) mask as uint8 {0, 1} on the reference image's grid."""
    return write_image((np.asarray(mask) != 0).astype(np.uint8), reference, path)
