"""Compressed streams decoded to their end, where gzip checks its CRC-32 and length and zlib its Adler-32: ITK
reports neither a bad checksum nor a stream cut short (it returns zeros or garbage)."""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path

from sparseg.errors import InputError

log = logging.getLogger(__name__)


GZIP_ERRORS = (OSError, EOFError, zlib.error)
"""What reading a damaged or cut-short gzip stream raises."""


def gzip_size(path: Path) -> int:
    """Read a .gz file to its end, where gzip checks its CRC-32 and length; the decompressed size.
    Raises one of `GZIP_ERRORS` for a damaged stream."""
    size = 0
    with gzip.open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            size += len(chunk)
    return size


def check_gzip(path: Path) -> int:
    """`gzip_size` of an input, whose damage is an InputError (ITK does not report a bad CRC)."""
    try:
        return gzip_size(path)
    except GZIP_ERRORS as exc:
        raise InputError(f"{path}: compressed data is damaged ({exc})") from None


def check_zlib_stream(source: Path, start: int, expected_bytes: int) -> int:
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
