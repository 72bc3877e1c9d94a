"""NIfTI (.nii, .nii.gz): the header parsed by nibabel (byte order, NIfTI-1 against NIfTI-2, each field's place),
then held to what nibabel's own checks hold a header to, where ITK is silent: dimensions, spacing, where the data
starts, bits per voxel against the datatype, and the data's length against all of them.

ITK reads NIfTI-1 only. The bits of each datatype are the standard's table: nibabel has no dtype for every code
(complex256 is `V0` on some platforms)."""

from __future__ import annotations

import gzip
import io
import math
from pathlib import Path

import nibabel as nib
import numpy as np

from sparseg.errors import InputError
from sparseg.formats.streams import GZIP_ERRORS

FIRST_DATA_BYTE = 352
"""Data starts after the 348-byte header and its 4-byte extension flag, or later."""
BITS = {2: 8, 4: 16, 8: 32, 16: 32, 32: 64, 64: 64, 128: 24, 256: 8, 512: 16, 768: 32, 1024: 64, 1280: 64,
        1536: 128, 1792: 128, 2048: 256, 2304: 32}
"""Bits per voxel of each NIfTI datatype code (the standard's table)."""


def _first_bytes(path: Path) -> bytes:
    """The first 540 bytes (a NIfTI-2 header's length) of the file, decompressed for .gz."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            return handle.read(nib.Nifti2Header.template_dtype.itemsize)
    except GZIP_ERRORS as exc:
        raise InputError(f"{path}: compressed data is damaged ({exc})") from None


def refuse_nifti2(path: Path) -> None:
    """ITK reads NIfTI-1 only, and on a NIfTI-2 file its library prints errors of its own first."""
    if nib.Nifti2Header.may_contain_header(_first_bytes(path)):
        raise InputError(f"{path}: a NIfTI-2 file, which the image reader (ITK) cannot read; save it as NIfTI-1")


def check_data(path: Path, data_bytes: int) -> None:
    """A NIfTI file's header must agree with its data, as nibabel checks it: dim[0] from 1 to 7 and every used dim
    positive (ITK reads an 8-slice volume with a negative dim as one slice), pixdim positive numbers (ITK otherwise
    takes a spacing from the sform without a word), vox_offset after the header (not inside it), bitpix that of
    the datatype (ITK reads by datatype), and exactly vox_offset + the voxels' stored bytes (not the scaled type
    ITK returns) of data (`data_bytes`, decompressed): ITK reads a short file as zeros and a long one as the wrong
    voxels."""
    block = _first_bytes(path)[: nib.Nifti1Header.template_dtype.itemsize]
    if not nib.Nifti1Header.may_contain_header(block):
        return  # not a NIfTI-1 header ITK would have read; ITK's own error stands
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(block), check=False)
    dim = np.asarray(header["dim"])
    rank = int(dim[0])
    if not 1 <= rank <= 7 or not np.all(dim[1 : rank + 1] >= 1):
        raise InputError(f"{path}: NIfTI dim {tuple(int(v) for v in dim[: rank + 1 if 0 <= rank <= 7 else 8])}: "
                         "the number of dimensions must be 1 to 7 and every size positive")
    spacing = np.asarray(header["pixdim"])[1:4]
    if not (np.all(np.isfinite(spacing)) and np.all(spacing > 0)):
        raise InputError(f"{path}: NIfTI pixdim {tuple(float(v) for v in spacing)}: every voxel spacing must be a "
                         "positive number")
    offset = float(header["vox_offset"])
    if not math.isfinite(offset) or offset < FIRST_DATA_BYTE:
        raise InputError(f"{path}: NIfTI vox_offset {offset:g} lies inside the header (data starts at byte "
                         f"{FIRST_DATA_BYTE} or later)")
    datatype, bitpix = int(header["datatype"]), int(header["bitpix"])
    bits = BITS.get(datatype)
    if bits is None:
        return  # ITK's own error names an unknown datatype
    if bitpix != bits:
        raise InputError(f"{path}: NIfTI bitpix {bitpix} disagrees with its datatype {datatype} ({bits} bits)")
    needed = int(offset) + int(np.prod(dim[1 : rank + 1].astype(np.int64))) * bits // 8
    if data_bytes != needed:
        how = "cut short" if data_bytes < needed else "longer than its header says"
        raise InputError(f"{path}: pixel data is {how} ({data_bytes} bytes, the header needs {needed})")
