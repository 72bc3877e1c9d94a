"""The image formats' own rules, one module each, checked before SimpleITK reads a file (`sparseg.io` calls them):
what ITK would accept silently or abort the process on.

- `metaimage`: .mha/.mhd headers (NDims, DimSize, channels, finite geometry) and their data: LOCAL, one
  detached file, a LIST or a printf pattern; compressed (zlib) or raw, exactly as long as the header says.
- `nifti`: .nii/.nii.gz headers, parsed by nibabel (byte order, NIfTI-1 against NIfTI-2) and held to what
  nibabel's own checks hold them to (dimensions, spacing, vox_offset, bitpix), and the data's length.
- `nrrd`: .nrrd/.nhdr headers, detached data files (one, a LIST, a pattern) and their encodings (raw, gzip,
  bzip2, ascii, hex). Hand-written: pynrrd reads one detached file only, not LISTs nor patterns, and reads the
  whole array to check it.
- `streams`: gzip and zlib streams decoded to their end, where their checksums are checked.

Here: the suffixes read as images and the ITK reader of each.
"""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = (".mha", ".mhd", ".nii.gz", ".nii", ".nrrd", ".nhdr")
"""File types read as images (the release ships .mha; users bring NIfTI too)."""


IMAGE_IO = {".mha": "MetaImageIO", ".mhd": "MetaImageIO", ".nii.gz": "NiftiImageIO", ".nii": "NiftiImageIO",
            ".nrrd": "NrrdImageIO", ".nhdr": "NrrdImageIO"}
"""The ITK reader/writer of each suffix, named so that a suffix in capitals (.MHA) works too."""


HEADER_BYTES = 65536
"""A text header (MetaImage, NRRD) must end within this many bytes."""


def has_image_suffix(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES)


def image_io(path: Path) -> str:
    """The ITK ImageIO for `path`'s suffix, in any case; "" (ITK guesses) for another suffix."""
    name = path.name.lower()
    return next((io_name for suffix, io_name in IMAGE_IO.items() if name.endswith(suffix)), "")
