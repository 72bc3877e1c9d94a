"""NRRD (.nrrd, .nhdr): the header's fields, its detached data files (one, a LIST, a printf pattern with its range),
and the data checked against the header in each encoding. Hand-written: pynrrd reads one detached file only (not
a LIST nor a pattern) and reads the whole array to learn its length; ITK reads a damaged stream, or data of
another length, without a word."""

from __future__ import annotations

import bz2
import gzip
import math
import os
import re
from pathlib import Path

from sparseg.errors import InputError
from sparseg.formats import HEADER_BYTES
from sparseg.formats.streams import GZIP_ERRORS
from sparseg.paths import file_problem

TYPES = {"signed char": 1, "int8": 1, "int8_t": 1, "uchar": 1, "unsigned char": 1, "uint8": 1, "uint8_t": 1,
              "short": 2, "short int": 2, "signed short": 2, "signed short int": 2, "int16": 2, "int16_t": 2,
              "ushort": 2, "unsigned short": 2, "unsigned short int": 2, "uint16": 2, "uint16_t": 2,
              "int": 4, "signed int": 4, "int32": 4, "int32_t": 4, "uint": 4, "unsigned int": 4, "uint32": 4,
              "uint32_t": 4, "longlong": 8, "long long": 8, "long long int": 8, "signed long long": 8,
              "signed long long int": 8, "int64": 8, "int64_t": 8, "ulonglong": 8, "unsigned long long": 8,
              "unsigned long long int": 8, "uint64": 8, "uint64_t": 8, "float": 4, "double": 8}
"""Bytes per value of each NRRD type name (the format's own list)."""


MAX_DATA_FILES = 4096
"""A header may name at most this many detached data files (one per slice is the most any scanner writes)."""


def read_header(path: Path) -> tuple[dict[str, str], list[str], int | None] | None:
    """A NRRD header's fields (names in lower case), the lines after a `data file: LIST` field (its file names),
    and the offset of the byte after the header's blank line (None without one: a detached header ends at its
    file's end); None when the file does not start as NRRD."""
    with open(path, "rb") as handle:
        head = handle.read(HEADER_BYTES)
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


def data_files(path: Path) -> list[Path] | None:
    """The detached data files a NRRD header (.nhdr, or a .nrrd) names: one file, the files a LIST names, or those
    of a printf pattern with its first, last and step numbers; None when the data follows the header. An
    InputError for a pattern that is not one or names more than `MAX_DATA_FILES` files."""
    header = read_header(path)
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


def require_data_files(path: Path) -> list[Path] | None:
    """A NRRD header's detached data files (`data_files`), each checked to be there before ITK opens them:
    an InputError naming the missing ones."""
    files = data_files(path)
    missing = [file.name for file in files or [] if file_problem(file) is not None]
    if missing:
        raise InputError(f"{path}: its pixel data file{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} missing or not a regular file")
    return files


def check_data(path: Path) -> None:
    """A NRRD file's data must be what its header says, after its `line skip` lines and `byte skip` bytes: a
    gzip or bzip2 stream decoded to its end (every member, each to its checksum) into exactly sizes x type bytes,
    raw data exactly that long (byte skip -1: the file's last bytes), text (ascii) exactly sizes values, hex
    exactly twice the bytes in digits. ITK reads a damaged stream, or data of another length, without a word.
    Several detached data files (a LIST or a pattern) must each be there; their lengths are left to ITK."""
    header = read_header(path)
    if header is None:
        return  # ITK's own error stands
    fields, _, header_end = header
    files = require_data_files(path)
    if (files is not None and len(files) > 1) or (not files and header_end is None):
        return  # several files: their lengths are ITK's to check; no blank line before attached data: ITK's error
    source = path if not files else files[0]
    try:
        count = math.prod(int(v) for v in fields.get("sizes", "").split())
        expected = count * TYPES[fields.get("type", "")]
        line_skip, byte_skip = int(fields.get("line skip", "0")), int(fields.get("byte skip", "0"))
    except (KeyError, ValueError):
        return
    with open(source, "rb") as handle:
        handle.seek(header_end if not files else 0)
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
