"""The one I/O boundary: every image file is read and written here.

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

import bz2
import contextlib
import csv
import gzip
import hashlib
import io
import logging
import math
import os
import re
import stat
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from sparseg.errors import InputError, OutputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".mha", ".mhd", ".nii.gz", ".nii", ".nrrd", ".nhdr")
"""File types read as images (the release ships .mha; users bring NIfTI too)."""

DEFAULT_MAX_VOXELS = 512 * 512 * 512
"""Volumes larger than this are refused before their pixels are read."""


IMAGE_IO = {".mha": "MetaImageIO", ".mhd": "MetaImageIO", ".nii.gz": "NiftiImageIO", ".nii": "NiftiImageIO",
            ".nrrd": "NrrdImageIO", ".nhdr": "NrrdImageIO"}
"""The ITK reader/writer of each suffix, named so that a suffix in capitals (.MHA) works too."""

PLAUSIBLE_SPACING_MM = (0.05, 20.0)
"""Voxel spacings outside this range are warned about: MRI of a newborn's brain is ~0.5-6 mm (BONBID ~1-2)."""

PIXEL_BYTES = {sitk.sitkUInt8: 1, sitk.sitkInt8: 1, sitk.sitkUInt16: 2, sitk.sitkInt16: 2, sitk.sitkUInt32: 4,
               sitk.sitkInt32: 4, sitk.sitkUInt64: 8, sitk.sitkInt64: 8, sitk.sitkFloat32: 4, sitk.sitkFloat64: 8}


def has_image_suffix(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES)


def image_io(path: Path) -> str:
    """The ITK ImageIO for `path`'s suffix, in any case; "" (ITK guesses) for another suffix."""
    name = path.name.lower()
    return next((io_name for suffix, io_name in IMAGE_IO.items() if name.endswith(suffix)), "")


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


METAIMAGE_HEADER_BYTES = 65536
"""A MetaImage (.mha/.mhd) text header must end (at ElementDataFile) within this many bytes."""


ELEMENT_DATA_FILE = re.compile(rb"(?m)^[ \t]*ElementDataFile[ \t]*=")
"""The header line after which a MetaImage's data follows (a Comment may mention the name: only a field counts)."""


def _metaimage_fields(path: Path) -> tuple[dict[str, str], int]:
    """A MetaImage file's header fields and the offset of its first data byte (after ElementDataFile's line)."""
    with open(path, "rb") as handle:
        head = handle.read(METAIMAGE_HEADER_BYTES)
    found = ELEMENT_DATA_FILE.search(head)
    if found is None:
        raise InputError(f"{path}: not a readable image (no MetaImage header ending in ElementDataFile)")
    line_end = head.find(b"\n", found.start())
    fields = {}
    for line in head[:line_end if line_end >= 0 else len(head)].decode("latin-1").splitlines():
        key, equals, value = line.partition("=")
        if equals:
            fields[key.strip()] = value.strip()
    return fields, (line_end + 1 if line_end >= 0 else len(head))


def _metaimage_data(path: Path, fields: dict[str, str], data_start: int) -> list[Path] | None:
    """The files a MetaImage's pixel data lies in: None when it follows the header in `path` itself (LOCAL),
    else one file, the files a LIST names (one per line after the header), or those of a printf pattern with its
    first, last and step numbers."""
    value = fields.get("ElementDataFile", "LOCAL")
    if value.upper() == "LOCAL":
        return None
    if value.upper().startswith("LIST"):
        with open(path, "rb") as handle:
            handle.seek(data_start)
            names = [line.strip() for line in handle.read().decode("latin-1").splitlines() if line.strip()]
    elif "%" in value and len(value.split()) >= 3:
        pattern, *numbers = value.split()
        try:
            first, last, step = (int(v) for v in (numbers + ["1"])[:3])
            names = [pattern % number for number in range(first, last + 1, step or 1)]
        except (ValueError, TypeError):
            raise InputError(f"{path}: MetaImage ElementDataFile {value!r} is not a usable file pattern") from None
    else:
        names = [value]
    return [Path(name) if Path(name).is_absolute() else path.parent / name for name in names]


def _check_metaimage_header(path: Path, fields: dict[str, str]) -> None:
    """Refuse MetaImage headers that ITK does not refuse cleanly (a huge NDims aborts the process).

    Checks, before ITK parses the file, that NDims, DimSize and
    ElementNumberOfChannels are small positive integers that agree, and that
    the geometry fields are finite numbers (ITK reads "nan" as 0 without a word).
    """
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
    missing = [file.name for file in _metaimage_data(path, *_metaimage_fields(path)) or [] if not file.is_file()]
    if missing:
        raise InputError(f"{path}: its pixel data file{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} missing")
    for key in ("ElementSpacing", "Offset", "Origin", "Position", "TransformMatrix", "Orientation", "Rotation"):
        if key in fields:
            try:
                values = [float(v) for v in fields[key].split()]
            except ValueError:
                raise InputError(f"{path}: MetaImage {key} {fields[key]!r} is not a list of numbers") from None
            if not all(math.isfinite(v) for v in values):
                raise InputError(f"{path}: MetaImage {key} {fields[key]!r} is not finite")


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


def _check_compressed_data(path: Path, fields: dict[str, str], data_start: int, expected_bytes: int) -> None:
    """Decode a compressed MetaImage's zlib stream (each data file's, for a LIST or pattern) once, to its end
    (where zlib checks its Adler-32), and compare its length with the header's, and the stream's size with
    CompressedDataSize (ITK decodes only that many bytes and fills the rest with zeros). ITK prints "Uncompress
    failed" for a damaged stream and returns zeros, or decodes garbage from damage in the middle; here each is
    an InputError."""
    files = _metaimage_data(path, fields, data_start)
    parts = [(path, data_start)] if files is None else [(file, 0) for file in files]
    for source, start in parts:
        stream = _check_zlib_stream(source, start, expected_bytes // len(parts) if expected_bytes else 0)
    declared = fields.get("CompressedDataSize")
    if len(parts) == 1 and declared is not None and (not declared.isdigit() or int(declared) != stream):
        raise InputError(f"{path}: MetaImage CompressedDataSize {declared!r} does not match its {stream}-byte "
                         "compressed pixel data")


def _check_zlib_stream(source: Path, start: int, expected_bytes: int) -> int:
    """Decode the zlib stream in `source` from `start` to its end; its compressed size. Damage, a stream cut
    short, or data of another length than `expected_bytes` (when given) is an InputError; bytes after the
    stream are warned about."""
    decoder = zlib.decompressobj()
    decoded = consumed = 0
    try:
        with open(source, "rb") as handle:
            handle.seek(start)
            while chunk := handle.read(1 << 20):
                decoded += len(decoder.decompress(chunk))
                consumed += len(chunk)
                if decoder.eof:
                    break
            decoded += len(decoder.flush())
            trailing = len(decoder.unused_data) + len(handle.read())
    except zlib.error as exc:
        raise InputError(f"{source}: compressed pixel data is damaged (zlib: {exc})") from None
    if not decoder.eof:
        raise InputError(f"{source}: compressed pixel data is cut short (its zlib stream does not end)")
    if expected_bytes and decoded != expected_bytes:
        raise InputError(f"{source}: compressed pixel data holds {decoded} bytes, the header says {expected_bytes}")
    if trailing:
        log.warning("%s: %d bytes after the compressed pixel data ignored", source, trailing)
    return consumed - len(decoder.unused_data)


GZIP_ERRORS = (OSError, EOFError, zlib.error)
"""What reading a damaged or cut-short gzip stream raises."""


def _gzip_size(path: Path) -> int:
    """Read a .gz file to its end, where gzip checks its CRC-32 and length; the decompressed size.
    Raises one of `GZIP_ERRORS` for a damaged stream."""
    size = 0
    with gzip.open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            size += len(chunk)
    return size


def _check_gzip(path: Path) -> int:
    """`_gzip_size` of an input, whose damage is an InputError (ITK does not report a bad CRC)."""
    try:
        return _gzip_size(path)
    except GZIP_ERRORS as exc:
        raise InputError(f"{path}: compressed data is damaged ({exc})") from None


def _nifti_header(path: Path) -> bytes:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            return handle.read(540)
    except GZIP_ERRORS as exc:
        raise InputError(f"{path}: compressed data is damaged ({exc})") from None


NIFTI_FIELDS = {"dim": (40, "i2", 8), "datatype": (70, "i2", 1), "bitpix": (72, "i2", 1), "pixdim": (76, "f4", 8),
                "vox_offset": (108, "f4", 1)}
"""Where a NIfTI-1 header keeps what the checks read: byte offset, type and count of each field."""
NIFTI_FIRST_DATA_BYTE = 352
"""Data starts after the 348-byte header and its 4-byte extension flag, or later."""
NIFTI_BITS = {2: 8, 4: 16, 8: 32, 16: 32, 32: 64, 64: 64, 128: 24, 256: 8, 512: 16, 768: 32, 1024: 64, 1280: 64,
              1536: 128, 1792: 128, 2048: 256, 2304: 32}
"""Bits per voxel of each NIfTI datatype code (the standard's table)."""


def _nifti_order(header: bytes) -> str | None:
    """The byte order of a NIfTI-1 header ("<" or ">"), or None when `header` is not one (`sizeof_hdr` 348)."""
    return next((order for order in ("<", ">") if len(header) >= 4
                 and int(np.frombuffer(header[:4], dtype=f"{order}i4")[0]) == 348), None)


def _refuse_nifti2(path: Path) -> None:
    """ITK reads NIfTI-1 only, and on a NIfTI-2 file its library prints errors of its own first."""
    header = _nifti_header(path)
    if any(len(header) >= 4 and int(np.frombuffer(header[:4], dtype=f"{order}i4")[0]) == 540 for order in "<>"):
        raise InputError(f"{path}: a NIfTI-2 file, which the image reader (ITK) cannot read; save it as NIfTI-1")


def _check_nifti(path: Path, data_bytes: int) -> None:
    """A NIfTI file's header must agree with its data, as nibabel checks it: dim[0] from 1 to 7 and every used dim
    positive (ITK reads an 8-slice volume with a negative dim as one slice), pixdim positive numbers (ITK otherwise
    takes a spacing from the sform without a word), vox_offset after the header (not inside it), bitpix that of
    the datatype (ITK reads by datatype), and exactly vox_offset + the voxels' stored bytes (not the scaled type
    ITK returns) of data: ITK reads a short file as zeros and a long one as the wrong voxels."""
    header = _nifti_header(path)
    order = _nifti_order(header)
    if order is None:
        return  # not a NIfTI header ITK would have read; ITK's own error stands

    def field(name: str) -> np.ndarray:
        offset, kind, count = NIFTI_FIELDS[name]
        return np.frombuffer(header[offset : offset + count * np.dtype(kind).itemsize], dtype=f"{order}{kind}")

    dim = field("dim")
    rank = int(dim[0])
    if not 1 <= rank <= 7 or not np.all(dim[1 : rank + 1] >= 1):
        raise InputError(f"{path}: NIfTI dim {tuple(int(v) for v in dim[: rank + 1 if 0 <= rank <= 7 else 8])}: "
                         "the number of dimensions must be 1 to 7 and every size positive")
    spacing = field("pixdim")[1:4]
    if not (np.all(np.isfinite(spacing)) and np.all(spacing > 0)):
        raise InputError(f"{path}: NIfTI pixdim {tuple(float(v) for v in spacing)}: every voxel spacing must be a "
                         "positive number")
    offset = float(field("vox_offset")[0])
    if not math.isfinite(offset) or offset < NIFTI_FIRST_DATA_BYTE:
        raise InputError(f"{path}: NIfTI vox_offset {offset:g} lies inside the header (data starts at byte "
                         f"{NIFTI_FIRST_DATA_BYTE} or later)")
    datatype, bitpix = int(field("datatype")[0]), int(field("bitpix")[0])
    bits = NIFTI_BITS.get(datatype)
    if bits is None:
        return  # ITK's own error names an unknown datatype
    if bitpix != bits:
        raise InputError(f"{path}: NIfTI bitpix {bitpix} disagrees with its datatype {datatype} ({bits} bits)")
    needed = int(offset) + int(np.prod(dim[1 : rank + 1].astype(np.int64))) * bits // 8
    if data_bytes != needed:
        how = "cut short" if data_bytes < needed else "longer than its header says"
        raise InputError(f"{path}: pixel data is {how} ({data_bytes} bytes, the header needs {needed})")


NRRD_TYPES = {"signed char": 1, "int8": 1, "int8_t": 1, "uchar": 1, "unsigned char": 1, "uint8": 1, "uint8_t": 1,
              "short": 2, "short int": 2, "signed short": 2, "signed short int": 2, "int16": 2, "int16_t": 2,
              "ushort": 2, "unsigned short": 2, "unsigned short int": 2, "uint16": 2, "uint16_t": 2,
              "int": 4, "signed int": 4, "int32": 4, "int32_t": 4, "uint": 4, "unsigned int": 4, "uint32": 4,
              "uint32_t": 4, "longlong": 8, "long long": 8, "long long int": 8, "signed long long": 8,
              "signed long long int": 8, "int64": 8, "int64_t": 8, "ulonglong": 8, "unsigned long long": 8,
              "unsigned long long int": 8, "uint64": 8, "uint64_t": 8, "float": 4, "double": 8}
"""Bytes per value of each NRRD type name (the format's own list)."""


MAX_DATA_FILES = 4096
"""A header may name at most this many detached data files (one per slice is the most any scanner writes)."""


def _nrrd_header(path: Path) -> tuple[dict[str, str], list[str], int | None] | None:
    """A NRRD header's fields (names in lower case), the lines after a `data file: LIST` field (its file names),
    and the offset of the byte after the header's blank line (None without one: a detached header ends at its
    file's end); None when the file does not start as NRRD."""
    with open(path, "rb") as handle:
        head = handle.read(METAIMAGE_HEADER_BYTES)
    if not head.startswith(b"NRRD"):
        return None
    blank = re.search(rb"\r?\n\r?\n", head)
    end = blank.end() if blank is not None else None
    lines = head[: blank.start() if blank is not None else len(head)].decode("latin-1").splitlines()[1:]
    fields: dict[str, str] = {}
    listed: list[str] = []
    for number, line in enumerate(lines):
        key, colon, value = line.partition(":")
        if not colon or line.startswith("#"):
            continue
        name = key.strip().lower()
        fields[name] = value.strip().lstrip("=").strip()
        if name in ("data file", "datafile") and fields[name].upper().startswith("LIST"):
            listed = [entry.strip() for entry in lines[number + 1 :] if entry.strip()]
            break
    return fields, listed, end


def _nrrd_data_files(path: Path) -> list[Path] | None:
    """The detached data files a NRRD header (.nhdr, or a .nrrd) names: one file, the files a LIST names, or those
    of a printf pattern with its first, last and step numbers; None when the data follows the header. An
    InputError for a pattern that is not one or names more than `MAX_DATA_FILES` files."""
    header = _nrrd_header(path)
    value = (header[0].get("data file") or header[0].get("datafile")) if header is not None else None
    if not value:
        return None
    words = value.split()
    if words[0].upper() == "LIST":
        names = header[1]
    elif "%" in words[0] and len(words) >= 4:
        try:
            first, last, step = (int(w) for w in words[1:4])
            if step == 0 or not 0 <= (last - first) // step < MAX_DATA_FILES:
                raise ValueError("empty or too long")
            names = [words[0] % number for number in range(first, last + (1 if step > 0 else -1), step)]
        except (ValueError, TypeError):
            raise InputError(f"{path}: NRRD data file {value!r} is not a usable file pattern") from None
    else:
        names = [value]
    if len(names) > MAX_DATA_FILES:
        raise InputError(f"{path}: NRRD data file names {len(names)} files, over {MAX_DATA_FILES}")
    return [Path(name) if Path(name).is_absolute() else path.parent / name for name in names]


def _require_nrrd_data_files(path: Path) -> list[Path] | None:
    """A NRRD header's detached data files (`_nrrd_data_files`), each checked to be there before ITK opens them:
    an InputError naming the missing ones."""
    data_files = _nrrd_data_files(path)
    missing = [file.name for file in data_files or [] if file_problem(file) is not None]
    if missing:
        raise InputError(f"{path}: its pixel data file{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} missing or not a regular file")
    return data_files


def _check_nrrd(path: Path) -> None:
    """A NRRD file's data must be what its header says, after its `line skip` lines and `byte skip` bytes: a
    gzip or bzip2 stream decoded to its end (every member, each to its checksum) into exactly sizes x type bytes,
    raw data exactly that long (byte skip -1: the file's last bytes), text (ascii) exactly sizes values, hex
    exactly twice the bytes in digits. ITK reads a damaged stream, or data of another length, without a word.
    Several detached data files (a LIST or a pattern) must each be there; their lengths are left to ITK."""
    header = _nrrd_header(path)
    if header is None:
        return  # ITK's own error stands
    fields, _, header_end = header
    data_files = _require_nrrd_data_files(path)
    if (data_files is not None and len(data_files) > 1) or (not data_files and header_end is None):
        return  # several files: their lengths are ITK's to check; no blank line before attached data: ITK's error
    source = path if not data_files else data_files[0]
    try:
        count = math.prod(int(v) for v in fields.get("sizes", "").split())
        expected = count * NRRD_TYPES[fields.get("type", "")]
        line_skip, byte_skip = int(fields.get("line skip", "0")), int(fields.get("byte skip", "0"))
    except (KeyError, ValueError):
        return
    with open(source, "rb") as handle:
        handle.seek(header_end if not data_files else 0)
        for _ in range(line_skip):
            handle.readline()
        if byte_skip > 0:
            handle.seek(byte_skip, os.SEEK_CUR)
        encoding = fields.get("encoding", "raw").lower()
        try:
            if encoding in ("gzip", "gz", "bzip2", "bz2"):
                stream = gzip.GzipFile(fileobj=handle) if encoding.startswith("g") else bz2.BZ2File(handle)
                decoded = sum(len(chunk) for chunk in iter(lambda: stream.read(1 << 20), b""))
            elif encoding == "raw":
                decoded = len(handle.read())
                if byte_skip == -1:  # the data is the file's last bytes
                    decoded = min(decoded, expected)
            elif encoding in ("ascii", "text", "txt"):
                decoded, expected = len(handle.read().split()), count
            elif encoding == "hex":
                decoded = len(re.sub(rb"\s", b"", handle.read())) // 2
            else:
                return
        except (*GZIP_ERRORS, ValueError) as exc:
            raise InputError(f"{source}: compressed pixel data is damaged ({exc})") from None
    if decoded != expected:
        unit = "values" if encoding in ("ascii", "text", "txt") else "bytes"
        raise InputError(f"{source}: holds {decoded} {unit} of pixel data, its header says {expected}")


def _check_raw_length(path: Path, fields: dict[str, str], data_start: int, expected_bytes: int) -> None:
    """An uncompressed MetaImage's pixel data must be exactly as long as its header says, after HeaderSize bytes
    skipped (-1: the data is the file's last bytes), in each of its data files (a LIST or pattern: one slice
    each). ITK reads a longer file as the wrong voxels and a short list as uninitialised memory, without a word.
    Text data (BinaryData = False) is left to ITK."""
    if fields.get("BinaryData", "True").lower() == "false":
        return
    files = _metaimage_data(path, fields, data_start)
    parts = [(path, data_start)] if files is None else [(file, 0) for file in files]
    sizes = fields.get("DimSize", "").split()
    if len(parts) > 1 and (not sizes or len(parts) != int(sizes[-1]) or expected_bytes % len(parts)):
        raise InputError(f"{path}: ElementDataFile names {len(parts)} data files for {sizes[-1] if sizes else '?'} "
                         "slices")
    each = expected_bytes // len(parts)
    skip = fields.get("HeaderSize", "0")
    for source, start in parts:
        available = source.stat().st_size - start
        if skip == "-1":  # the data is the file's last bytes
            available = min(available, each)
        elif skip.isdigit():
            available -= int(skip)
        if available != each:
            how = "cut short" if available < each else "longer than its header says"
            raise InputError(f"{source}: pixel data is {how} ({available} bytes, the header needs {each})")


def image_files(path: Path | str) -> list[Path]:
    """Every file an image is read from: the file itself and, for a MetaImage header (.mhd) or a NRRD header
    (.nhdr, or a .nrrd with detached data), the pixel data files it names (one file, a LIST of files, or a printf
    pattern with its range)."""
    path = Path(path)
    if image_io(path) not in ("MetaImageIO", "NrrdImageIO") or not path.is_file():
        return [path]
    try:
        if image_io(path) == "NrrdImageIO":
            return [path, *(_nrrd_data_files(path) or [])]
        return [path, *(_metaimage_data(path, *_metaimage_fields(path)) or [])]
    except (InputError, OSError):
        return [path]


def files_sha256(paths: Iterable[Path]) -> str:
    """The sha256 (16 hex digits) of files' bytes, in order, each ended by a NUL; OSError where one cannot be
    read. What resume keys and summaries record."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as a file, in words ("does not exist", "is a folder", "is not a regular file (a
    FIFO, a device, a socket)"), or None when it is a regular file (or a link to one)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "does not exist" if not path.is_symlink() else "is a link to nothing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(mode):
        return "is not a regular file (a FIFO, a device or a socket)"
    return None


def file_sha256(path: Path) -> str:
    """The sha256 (64 hex digits) of one file's bytes: what a stamp or an atlas.json records of each file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file: the same path once symbolic links are followed, or one file under two
    names (a hard link)."""
    try:
        if first.resolve() == second.resolve():
            return True
        return first.exists() and second.exists() and os.path.samefile(first, second)
    except (OSError, RuntimeError):  # a link loop
        return False


def remove_stale(paths: Iterable[Path]) -> None:
    """Remove an earlier run's outputs before a run that will write them again, so that a run that fails leaves
    none that look finished (the caller has checked that none is an input: `require_apart`)."""
    for path in paths:
        try:
            Path(path).unlink(missing_ok=True)
        except NotADirectoryError:  # a folder on the way is a file: there is no earlier output (writing will say)
            continue
        except IsADirectoryError:
            raise OutputError(f"{path}: a folder where this command writes a file") from None
        except OSError as exc:
            raise OutputError(f"{path}: cannot remove the earlier output ({exc.strerror or exc})") from None


def require_apart(outputs: Iterable[Path], inputs: Iterable[Path]) -> None:
    """Refuse, before anything is read or written, any output path that is, or would replace, one of the inputs
    (symbolic links followed, hard links seen, paths that differ in letter case alone, in any of their folders'
    names too): an InputError naming both."""
    inputs = [Path(p) for p in dict.fromkeys(inputs)]
    by_path, by_folded_path, by_inode = {}, {}, {}
    for path in inputs:
        with contextlib.suppress(OSError, RuntimeError):
            resolved = path.resolve()
            by_path.setdefault(resolved, path)
            by_folded_path.setdefault(str(resolved).casefold(), path)
            status = path.stat()
            by_inode.setdefault((status.st_dev, status.st_ino), path)
    for output in outputs:
        output = Path(output)
        hit = None
        with contextlib.suppress(OSError, RuntimeError):
            resolved = output.resolve()
            # paths that differ in letter case only are one file on macOS and Windows file systems
            hit = by_path.get(resolved) or by_folded_path.get(str(resolved).casefold())
            if hit is None and output.exists():
                status = output.stat()
                hit = by_inode.get((status.st_dev, status.st_ino))
        if hit is not None:
            raise InputError(f"{output}: this command would write there, but it is an input ({hit}); choose another "
                             "output")


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
        fields = _metaimage_fields(path)[0]
        _check_metaimage_header(path, fields)
        if "ElementSpacing" not in fields and "ElementSize" not in fields:
            log.warning("%s: no ElementSpacing in the MetaImage header: 1 mm is assumed (lesion volumes in mL come "
                        "from it)", path)
    if image_io(path) == "NiftiImageIO":
        _refuse_nifti2(path)
    if image_io(path) == "NrrdImageIO":
        _require_nrrd_data_files(path)
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
        fields, data_start = _metaimage_fields(path)
        expected = int(np.prod(reader.GetSize(), dtype=np.int64)) * reader.GetNumberOfComponents() * \
            PIXEL_BYTES.get(reader.GetPixelID(), 0)
        if fields.get("CompressedData", "False").lower() == "true":
            _check_compressed_data(path, fields, data_start, expected)
        elif expected:
            _check_raw_length(path, fields, data_start, expected)
    elif io_name == "NiftiImageIO":
        _check_nifti(path, _check_gzip(path) if path.name.lower().endswith(".gz") else path.stat().st_size)
    elif io_name == "NrrdImageIO":
        _check_nrrd(path)
    elif path.name.lower().endswith(".gz"):
        _check_gzip(path)


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
        _gzip_size(temporary)
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
