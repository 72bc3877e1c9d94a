"""MetaImage (.mha, .mhd): the text header's fields, the files its pixel data lies in (LOCAL, one detached file, a
LIST, a printf pattern), and the data checked against the header. Hand-written: no well-kept Python library
reads MetaImage headers apart from ITK itself, which aborts the process on some (a huge NDims) and reads others
silently wrong."""

from __future__ import annotations

import math
import re
from pathlib import Path

from sparseg.errors import InputError
from sparseg.formats import HEADER_BYTES
from sparseg.formats.streams import check_zlib_stream

ELEMENT_DATA_FILE = re.compile(rb"(?m)^[ \t]*ElementDataFile[ \t]*=")
"""The header line after which a MetaImage's data follows (a Comment may mention the name: only a field counts)."""


def read_fields(path: Path) -> tuple[dict[str, str], int]:
    """A MetaImage file's header fields and the offset of its first data byte (after ElementDataFile's line)."""
    with open(path, "rb") as handle:
        head = handle.read(HEADER_BYTES)
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


def data_files(path: Path, fields: dict[str, str], data_start: int) -> list[Path] | None:
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


def check_header(path: Path, fields: dict[str, str]) -> None:
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
    missing = [file.name for file in data_files(path, *read_fields(path)) or [] if not file.is_file()]
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


def check_compressed_data(path: Path, fields: dict[str, str], data_start: int, expected_bytes: int) -> None:
    """Decode a compressed MetaImage's zlib stream (each data file's, for a LIST or pattern) once, to its end
    (where zlib checks its Adler-32), and compare its length with the header's, and the stream's size with
    CompressedDataSize (ITK decodes only that many bytes and fills the rest with zeros). ITK prints "Uncompress
    failed" for a damaged stream and returns zeros, or decodes garbage from damage in the middle; here each is
    an InputError."""
    files = data_files(path, fields, data_start)
    parts = [(path, data_start)] if files is None else [(file, 0) for file in files]
    for source, start in parts:
        stream = check_zlib_stream(source, start, expected_bytes // len(parts) if expected_bytes else 0)
    declared = fields.get("CompressedDataSize")
    if len(parts) == 1 and declared is not None and (not declared.isdigit() or int(declared) != stream):
        raise InputError(f"{path}: MetaImage CompressedDataSize {declared!r} does not match its {stream}-byte "
                         "compressed pixel data")


def check_raw_length(path: Path, fields: dict[str, str], data_start: int, expected_bytes: int) -> None:
    """An uncompressed MetaImage's pixel data must be exactly as long as its header says, after HeaderSize bytes
    skipped (-1: the data is the file's last bytes), in each of its data files (a LIST or pattern: one slice
    each). ITK reads a longer file as the wrong voxels and a short list as uninitialised memory, without a word.
    Text data (BinaryData = False) is left to ITK."""
    if fields.get("BinaryData", "True").lower() == "false":
        return
    files = data_files(path, fields, data_start)
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


def check_data(path: Path, expected_bytes: int) -> None:
    """A MetaImage's pixel data against its header: a compressed stream decoded whole (`check_compressed_data`),
    raw data exactly `expected_bytes` long (`check_raw_length`; 0: the pixel type's size is unknown, left to ITK)."""
    header, data_start = read_fields(path)
    if header.get("CompressedData", "False").lower() == "true":
        check_compressed_data(path, header, data_start, expected_bytes)
    elif expected_bytes:
        check_raw_length(path, header, data_start, expected_bytes)
