"""Find cases and pair their files by case id, in the two layouts the project meets; name the outputs.

The Zenodo release (and `sparseg synth`)::

    ROOT/1ADC_ss/MGHNICU_010-VISIT_01-ADC_ss.mha
    ROOT/2Z_ADC/Zmap_MGHNICU_010-VISIT_01-ADC_smooth2mm_clipped10.mha
    ROOT/3LABEL/MGHNICU_010-VISIT_01_lesion.mha          (absent for unlabelled data)

The grand-challenge container input, one case per run::

    ROOT/images/skull-stripped-adc-brain-mri/<any>.mha
    ROOT/images/z-score-adc/<any>.mha

Files are paired by the case id in their names, never by sort order.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from sparseg.errors import InputError
from sparseg.io import has_image_suffix

CASE_ID = re.compile(r"MGHNICU_\d+-VISIT_\d+")

ADC_DIR, Z_DIR, LABEL_DIR = "1ADC_ss", "2Z_ADC", "3LABEL"
"""Folder names of the Zenodo release."""

INPUT_ADC_DIR = Path("images/skull-stripped-adc-brain-mri")
INPUT_Z_DIR = Path("images/z-score-adc")
OUTPUT_MASK = Path("images/hie-lesion-segmentation/overlay.mha")
"""Container paths below /input and /output (the organisers' reference algorithms)."""


def adc_name(case_id: str, suffix: str = ".mha") -> str:
    return f"{case_id}-ADC_ss{suffix}"


def z_name(case_id: str, suffix: str = ".mha") -> str:
    return f"Zmap_{case_id}-ADC_smooth2mm_clipped10{suffix}"


def label_name(case_id: str, suffix: str = ".mha") -> str:
    return f"{case_id}_lesion{suffix}"


SYNTH_MANIFEST = "synth_manifest.csv"
"""Written by `sparseg synth` beside the case folders: the data is synthetic (checkpoints trained on it say so)."""


def prediction_name(case_id: str) -> str:
    """File name of a case's predicted mask in a batch output folder (`sparseg predict`, `sparseg baseline`)."""
    return f"{case_id}_lesion.mha"


def probabilities_name(case_id: str) -> str:
    """File name of a case's lesion probabilities in a batch output folder (`--save-probabilities`)."""
    return f"{case_id}_probabilities.mha"


def overlay_name(case_id: str) -> str:
    """File name of a case's overlay picture in a batch output folder (`--overlays`)."""
    return f"{case_id}_overlay.png"


BATCH_SUMMARY = "summary.csv"
"""One row per case of a batch output folder: status, lesion volume, burden, seconds."""


@dataclass(frozen=True)
class Case:
    """The files of one case. `label` is None for unlabelled data."""

    case_id: str
    adc: Path
    z: Path
    label: Path | None = None


def case_id_of(path: Path) -> str | None:
    """The MGHNICU case id in a file name, or None."""
    match = CASE_ID.search(path.name)
    return match.group(0) if match else None


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and has_image_suffix(p) and not p.name.startswith("."))


def index_by_case_id(folder: Path, masks_only: bool = False) -> dict[str, Path]:
    """Map case id -> image file in `folder`; files without an id or sharing one are an error.

    `masks_only` (a folder of predictions): a `sparseg predict` probability file is not a mask, so it is
    left out, as are files of another name where the case's `prediction_name` file is there.
    """
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    found: dict[str, list[Path]] = defaultdict(list)
    nameless = []
    files = _image_files(folder)
    if masks_only:
        named = {path.name for path in files}
        files = [path for path in files if (case_id := case_id_of(path)) is None
                 or (path.name != probabilities_name(case_id)
                     and (path.name == prediction_name(case_id) or prediction_name(case_id) not in named))]
    for path in files:
        case_id = case_id_of(path)
        if case_id is None:
            nameless.append(path.name)
        else:
            found[case_id].append(path)
    problems = []
    if nameless:
        problems.append(f"no case id (MGHNICU_<n>-VISIT_<v>) in: {', '.join(nameless)}")
    duplicated = {cid: paths for cid, paths in found.items() if len(paths) > 1}
    for cid, paths in sorted(duplicated.items()):
        problems.append(f"{cid} appears in {len(paths)} files: {', '.join(p.name for p in paths)}")
    if problems:
        raise InputError(f"{folder}: " + "; ".join(problems))
    return {cid: paths[0] for cid, paths in found.items()}


def dataset_root(root: Path) -> Path:
    """The folder holding 1ADC_ss/2Z_ADC: `root` itself or its only such subfolder."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    if (root / ADC_DIR).is_dir():
        return root
    candidates = [p for p in sorted(root.iterdir()) if (p / ADC_DIR).is_dir()]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InputError(f"{root}: no {ADC_DIR}/ and {Z_DIR}/ folders (BONBID-HIE release layout) found")
    raise InputError(f"{root}: several datasets inside ({', '.join(p.name for p in candidates)}); name one")


def find_cases(root: Path | str, require_labels: bool = False) -> list[Case]:
    """All cases of a release-layout folder, paired by case id, sorted by id.

    Labels are attached when a 3LABEL folder exists; then every case must have one.
    """
    root = dataset_root(Path(root))
    adc = index_by_case_id(root / ADC_DIR)
    zmap = index_by_case_id(root / Z_DIR)
    has_labels = (root / LABEL_DIR).is_dir()
    if require_labels and not has_labels:
        raise InputError(f"{root}: no {LABEL_DIR}/ folder, but labels are needed")
    labels = index_by_case_id(root / LABEL_DIR) if has_labels else None
    folders = {ADC_DIR: adc, Z_DIR: zmap}
    if labels is not None:
        folders[LABEL_DIR] = labels
    all_ids = set().union(*(set(v) for v in folders.values()))
    missing = []
    for name, index in folders.items():
        absent = sorted(all_ids - set(index))
        if absent:
            missing.append(f"{name}/ lacks {', '.join(absent)}")
    if missing:
        raise InputError(f"{root}: unpaired cases: " + "; ".join(missing))
    if not all_ids:
        raise InputError(f"{root}: no cases found in {ADC_DIR}/")
    return [
        Case(case_id=cid, adc=adc[cid], z=zmap[cid], label=labels[cid] if labels is not None else None)
        for cid in sorted(all_ids)
    ]


def _single_image(folder: Path) -> Path:
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    files = _image_files(folder)
    if not files:
        raise InputError(f"{folder}: no image file (.mha) found")
    if len(files) > 1:
        raise InputError(f"{folder}: {len(files)} image files, expected exactly one: "
                         f"{', '.join(p.name for p in files)}")
    return files[0]


def find_input_case(root: Path | str) -> Case:
    """The single case of a grand-challenge /input folder."""
    root = Path(root)
    adc = _single_image(root / INPUT_ADC_DIR)
    zmap = _single_image(root / INPUT_Z_DIR)
    ids = {case_id_of(adc), case_id_of(zmap)} - {None}
    if len(ids) > 1:
        raise InputError(f"{root}: ADC and Z_ADC name different cases: {adc.name}, {zmap.name}")
    case_id = ids.pop() if ids else adc.name.split(".")[0]
    return Case(case_id=case_id, adc=adc, z=zmap)


def find_any_cases(root: Path | str) -> list[Case]:
    """Cases in either layout: the container's /input (one case) or the release."""
    root = Path(root)
    if (root / INPUT_ADC_DIR).is_dir() or (root / INPUT_Z_DIR).is_dir():
        return [find_input_case(root)]
    return find_cases(root)
