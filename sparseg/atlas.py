"""A normative ADC atlas as a folder: what Z_ADC is measured against.

::

    ATLAS/mean.mha       the mean ADC of the norm (1e-6 mm^2/s): the template the atlas is registered by
    ATLAS/sd.mha         its voxel-wise standard deviation (1e-6 mm^2/s)
    ATLAS/mask.mha       1 inside the atlas's brain, where Z_ADC is computed; 0 outside
    ATLAS/coverage.mha   how many cases cover each voxel (an atlas built from a cohort; absent when imported)
    ATLAS/atlas.json     what the atlas is, its units, how it was made and from which cases, each file's sha256,
                         and the sha256 of its own other fields

`read_atlas` refuses a folder whose files are missing, changed against their
hashes, not on one grid, or whose SD is not a positive number inside the mask;
`write_atlas` makes a folder all or nothing (a staging folder, read back, then
renamed into place); `import_atlas` makes one from published mean and SD maps
(Ou et al. 2017's neonatal atlases, for instance) in any format the project
reads. `sparseg.template` builds one from a cohort.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparseg.errors import InputError, OutputError
from sparseg.io import PARTIAL_PREFIX, Geometry, Volume, read_image, write_image, write_text
from sparseg.paths import file_sha256, require_apart, writer_gone

ATLAS_JSON = "atlas.json"
ATLAS_FORMAT = "sparseg-atlas"
ATLAS_VERSION = 1
MAPS = {"mean": "mean.mha", "sd": "sd.mha", "mask": "mask.mha", "coverage": "coverage.mha"}
"""Each map of an atlas and its file name; coverage is optional (an imported atlas has none)."""
REQUIRED_MAPS = ("mean", "sd", "mask")
UNITS = {"mean": "ADC, 1e-6 mm^2/s", "sd": "ADC, 1e-6 mm^2/s", "mask": "1 inside the atlas's brain, 0 outside",
         "coverage": "number of cases whose brain (not lesion) covers the voxel"}

ADC_MEDIAN_RANGE = (100.0, 5000.0)
"""The median of a brain's ADC in 1e-6 mm^2/s lies here (neonatal white matter ~1300, grey ~1100, CSF ~3000). A
median ~1000x smaller is ADC in mm^2/s, or in 1e-3 mm^2/s; ~1000x larger, in 1e-9 mm^2/s."""


def adc_unit_problem(values: np.ndarray) -> str | None:
    """Why brain ADC values (the non-zero voxels) are not in 1e-6 mm^2/s, or None when they look so."""
    if values.size == 0:
        return "is empty (no voxel above 0: no brain)"
    median = float(np.median(values))
    low, high = ADC_MEDIAN_RANGE
    if median < low:
        return (f"has a median brain ADC of {median:.4g}, about {low * 10 / max(median, 1e-12):.0f}x smaller than "
                "ADC in 1e-6 mm^2/s: in mm^2/s or 1e-3 mm^2/s? (multiply by 1e6 or 1e3)")
    if median > high:
        return f"has a median brain ADC of {median:.4g}: not ADC in 1e-6 mm^2/s (another map, or another unit?)"
    return None


@dataclass(frozen=True)
class Atlas:
    """An atlas as read and checked (`read_atlas`); arrays in (z, y, x) on `geometry`."""

    folder: Path
    mean: np.ndarray
    sd: np.ndarray
    mask: np.ndarray
    """bool: where Z_ADC is computed."""
    coverage: np.ndarray | None
    geometry: Geometry
    description: dict[str, Any]
    """atlas.json as written."""
    sha256: str
    """The sha256 (16 hex digits) of atlas.json's bytes, which name every file's sha256: the atlas's identity (a
    batch's resume key holds it)."""

    def describe(self) -> str:
        """The folder, what atlas.json says the atlas is, and its sha256, in one line."""
        what = self.description.get("description") or self.description.get("kind") or "an atlas"
        return f"{self.folder} ({what}; atlas {self.sha256})"


def _body_sha256(body: dict[str, Any]) -> str:
    """The sha256 of atlas.json's fields other than `sha256`, as canonical JSON."""
    fields = {key: value for key, value in body.items() if key != "sha256"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, allow_nan=False).encode()).hexdigest()


def _regular_file(path: Path) -> str | None:
    """Why `path` cannot be read as an atlas file, or None."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None if stat.S_ISREG(mode) else "is not a regular file"


def read_description(folder: Path) -> tuple[dict[str, Any], str]:
    """atlas.json of an atlas folder, checked to be one (format, version, its own hash, a file for each map), and
    the sha256 (16 hex digits) of its bytes as read."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not an atlas folder" if folder.exists() else "no such atlas folder"
        raise InputError(f"{folder}: {what} (an atlas is a folder: atlas.json, mean, sd, mask)")
    path = folder / ATLAS_JSON
    problem = _regular_file(path)
    if problem is not None:
        raise InputError(f"{path}: {problem}: {folder} is not an atlas folder (sparseg atlas build / import)")
    try:
        data = path.read_bytes()
        body = json.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"{path}: not a readable atlas description ({type(exc).__name__})") from None
    if not isinstance(body, dict) or body.get("format") != ATLAS_FORMAT:
        raise InputError(f"{path}: not a {ATLAS_FORMAT} description")
    if body.get("version") != ATLAS_VERSION:
        raise InputError(f"{path}: atlas format version {body.get('version')!r}; this SPARSeg reads {ATLAS_VERSION}")
    try:
        own = _body_sha256(body)
    except ValueError:  # NaN or Infinity in a field
        raise InputError(f"{path}: holds a value that is not a number JSON allows") from None
    if body.get("sha256") != own:
        raise InputError(f"{path}: its fields were changed after it was written (their sha256 is not the one it "
                         "records)")
    files = body.get("files")
    if not isinstance(files, dict) or not all(isinstance(files.get(role), dict) for role in REQUIRED_MAPS):
        raise InputError(f"{path}: names no file for each of {', '.join(REQUIRED_MAPS)}")
    for role, entry in files.items():
        if role not in MAPS or not isinstance(entry, dict) or entry.get("name") != MAPS[role] \
                or not isinstance(entry.get("sha256"), str):
            raise InputError(f"{path}: files.{role} is not one of the atlas's maps with its name and sha256")
    return body, hashlib.sha256(data).hexdigest()[:16]


SD_TO_MEAN_RANGE = (0.02, 1.0)
"""Inside the mask, the median of SD / mean of a normative ADC atlas lies here (healthy neonatal tissue varies by
~5-30% between babies): an SD ~1e-20 or ~1e9 would turn every Z-score into +-10 or 0, and is refused."""
MEAN_NON_POSITIVE_MAX = 0.01
"""An ADC mean is above 0 inside the brain: a larger share of voxels at 0 or below means another map."""


def maps_problem(mean: np.ndarray, sd: np.ndarray, mask: np.ndarray) -> tuple[str, str] | None:
    """Why an atlas's maps (mean ADC, its SD, the brain mask as bool) cannot make a Z_ADC, as (which map, the
    problem), or None: an empty mask, an SD not above 0 inside it, a mean not ADC in 1e-6 mm^2/s there (units, or
    a share of it at 0 or below), an SD implausibly small or large against the mean."""
    if not mask.any():
        return "mask", "the mask is empty"
    bad = int(np.count_nonzero(~(sd[mask] > 0)))
    if bad:
        return "sd", f"the SD is 0 or less at {bad} voxels inside the mask"
    inside = mean[mask]
    non_positive = float(np.mean(inside <= 0))
    if non_positive > MEAN_NON_POSITIVE_MAX:
        return "mean", (f"the atlas mean is 0 or less at {non_positive:.1%} of the voxels inside the mask: not an ADC "
                        "map")
    problem = adc_unit_problem(inside[inside > 0])
    if problem is not None:
        return "mean", f"the atlas mean {problem}"
    ratio = float(np.median(sd[mask][inside > 0] / inside[inside > 0]))
    low, high = SD_TO_MEAN_RANGE
    if not low <= ratio <= high:
        return "sd", (f"the SD is {ratio:.3g} times the mean (median inside the mask), outside {low:g}-{high:g}: "
                      "not the SD of a normative ADC atlas (every Z-score would be near 0 or at the clip)")
    return None


def read_atlas(folder: Path | str) -> Atlas:
    """An atlas folder, every file checked against atlas.json's sha256 and read; InputError naming the file when
    one is missing or changed, the maps are not on one grid, a map holds NaN or Inf, the SD is not above 0 inside
    the mask, the mask is empty, or the mean is not ADC in 1e-6 mm^2/s."""
    folder = Path(folder)
    body, sha256 = read_description(folder)
    volumes: dict[str, Volume] = {}
    for role, entry in body["files"].items():
        path = folder / entry["name"]
        problem = _regular_file(path)
        if problem is not None:
            raise InputError(f"{path}: {problem} ({ATLAS_JSON} names it)")
        if file_sha256(path) != entry["sha256"]:
            raise InputError(f"{path}: changed since the atlas was written (its sha256 is not the one {ATLAS_JSON} "
                             "records)")
        volumes[role] = read_image(path, finite=True)
    mean = volumes["mean"]
    for role, volume in volumes.items():
        differences = volume.geometry.differences(mean.geometry)
        if differences:
            raise InputError(f"{volume.path}: not on the grid of {mean.path.name} ({'; '.join(differences)})")
    mask = volumes["mask"].array > 0.5
    sd = volumes["sd"].array
    problem = maps_problem(mean.array, sd, mask)
    if problem is not None:
        raise InputError(f"{volumes[problem[0]].path}: {problem[1]}")
    coverage = volumes["coverage"].array if "coverage" in volumes else None
    return Atlas(folder=folder, mean=mean.array, sd=sd, mask=mask, coverage=coverage, geometry=mean.geometry,
                 description=body, sha256=sha256)


def atlas_files(folder: Path | str) -> list[Path]:
    """Every file an atlas folder is read from (what a command must never write over)."""
    folder = Path(folder)
    return [folder / ATLAS_JSON, *(folder / name for name in MAPS.values())]


def require_atlas_destination(out: Path, inputs: list[Path]) -> None:
    """Refuse, before any work, an atlas destination that is an input, is a file, or is a folder holding anything
    but an earlier atlas (which a new one replaces whole)."""
    require_apart([out, *atlas_files(out)], inputs)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: a file, not a folder for an atlas")
    if out.is_dir() and any(out.iterdir()):
        others = sorted(p.name for p in out.iterdir() if p.name not in {ATLAS_JSON, *MAPS.values()})
        if others:
            raise InputError(f"{out}: holds other files ({', '.join(others[:5])}); an atlas goes into a new folder, "
                             "or replaces an atlas")
        try:
            read_atlas(out)  # every file the one its atlas.json names: an atlas this project wrote, unchanged
        except InputError as exc:
            raise InputError(f"{out}: holds files of an atlas's names but is not an atlas ({exc}); an atlas goes "
                             "into a new folder, or replaces an atlas") from None


def write_atlas(out: Path | str, maps: dict[str, np.ndarray], geometry: Geometry,
                description: dict[str, Any]) -> Atlas:
    """Write an atlas folder all or nothing: every map and atlas.json into a staging folder beside `out`, read back
    and checked (`read_atlas`), then renamed to `out` (an earlier atlas there is replaced whole). `description`
    gives atlas.json's fields besides the format, units and files."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out.parent}: cannot create the folder ({exc.strerror or exc})") from None
    staging = out.parent / _staging_name(out, "new")
    retired = out.parent / _staging_name(out, "replaced")
    try:
        files = {}
        for role, array in maps.items():
            path = write_image(array, geometry, staging / MAPS[role])
            files[role] = {"name": MAPS[role], "sha256": file_sha256(path), "units": UNITS[role]}
        body = {"format": ATLAS_FORMAT, "version": ATLAS_VERSION, **description, "files": files}
        body["sha256"] = _body_sha256(body)
        write_text(staging / ATLAS_JSON, json.dumps(body, indent=2, allow_nan=False) + "\n")
        read_atlas(staging)  # what is renamed into place reads back as an atlas
        try:
            if out.exists():
                os.replace(out, retired)
            os.replace(staging, out)
        except OSError as exc:
            raise OutputError(f"{out}: cannot put the atlas in place ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)
    return read_atlas(out)


def _staging_name(out: Path, role: str) -> str:
    """The name of a staging ("new") or retired ("replaced") folder of a write into `out`, which says whose it is:
    this host and process."""
    return f"{PARTIAL_PREFIX}{uuid.uuid4().hex[:8]}-{socket.gethostname()}-{os.getpid()}-{role}-{out.name}"


def remove_staging(out: Path, inputs: list[Path] = ()) -> None:
    """Remove what a killed `write_atlas` into `out` left beside it: its staging and replaced folders, named for
    `out` exactly, by a process of this host that is gone; never one that holds any of `inputs`."""
    pattern = re.compile(re.escape(PARTIAL_PREFIX) + r"[0-9a-f]{8}-(?P<host>.+)-(?P<pid>[0-9]{1,9})-(?:new|replaced)-"
                         + re.escape(out.name))
    held = {str(Path(p).resolve()) for p in inputs}
    with contextlib.suppress(OSError):
        for stale in out.parent.iterdir():
            found = pattern.fullmatch(stale.name)
            if found is None or not stale.is_dir() or stale.is_symlink() or not writer_gone(found["host"],
                                                                                            found["pid"]):
                continue
            root = str(stale.resolve())
            if any(path == root or path.startswith(root + os.sep) for path in held):
                continue
            shutil.rmtree(stale, ignore_errors=True)


def import_atlas(mean: Path, sd: Path, mask: Path | None, out: Path, description: str = "") -> Atlas:
    """An atlas folder from published maps (any format the project reads): the mean ADC, its SD and a brain mask
    (without one, the mask is where the mean is above 0). Refused, naming the file, when the maps are not on one
    grid, hold NaN, the SD is not above 0 inside the mask, or the mean is not ADC in 1e-6 mm^2/s."""
    sources = {"mean": Path(mean), "sd": Path(sd), **({"mask": Path(mask)} if mask is not None else {})}
    require_atlas_destination(Path(out), list(sources.values()))
    remove_staging(Path(out), list(sources.values()))
    volumes = {role: read_image(path, finite=True) for role, path in sources.items()}
    reference = volumes["mean"]
    for role, volume in volumes.items():
        differences = volume.geometry.differences(reference.geometry)
        if differences:
            raise InputError(f"{volume.path}: not on the grid of the mean {reference.path.name} "
                             f"({'; '.join(differences)})")
    brain = volumes["mask"].array > 0.5 if mask is not None else reference.array > 0
    if not brain.any():
        raise InputError(f"{sources['mask' if mask is not None else 'mean']}: no voxel inside the brain "
                         f"({'the mask is empty' if mask is not None else 'the mean is nowhere above 0'})")
    problem = maps_problem(reference.array, volumes["sd"].array, brain)
    if problem is not None:
        raise InputError(f"{sources[problem[0]]}: {problem[1]}")
    maps = {"mean": reference.array.astype(np.float32), "sd": volumes["sd"].array.astype(np.float32),
            "mask": brain.astype(np.uint8)}
    made = {"how": "imported from published maps",
            "sources": {role: {"path": str(path), "sha256": file_sha256(path)} for role, path in sources.items()}}
    return write_atlas(out, maps, reference.geometry, {
        "kind": "imported", "description": description or "a published normative atlas", "made": made})
