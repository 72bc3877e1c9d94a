"""Find cases and pair their files by case id, in every layout a user brings; name the outputs.

The Zenodo release (and `sparseg synth`)::

    ROOT/1ADC_ss/MGHNICU_010-VISIT_01-ADC_ss.mha
    ROOT/2Z_ADC/Zmap_MGHNICU_010-VISIT_01-ADC_smooth2mm_clipped10.mha
    ROOT/3LABEL/MGHNICU_010-VISIT_01_lesion.mha          (absent for unlabelled data)

The grand-challenge container input, one case per run, or a folder of them
(the case id is then the case folder's name)::

    ROOT/images/skull-stripped-adc-brain-mri/<any>.mha
    ROOT/images/z-score-adc/<any>.mha

Any other names: a folder and two glob patterns (`pattern_cases`; the case
id is what the `*`s match, e.g. `patient01` for `patient01_adc.nii.gz` and
`*_adc.nii.gz`), or a CSV manifest, `case_id,adc,zadc[,label]`, paths relative
to the CSV (`manifest_cases`). Files are paired by case id, never by sort
order; unpaired or ambiguous files are all listed in one error.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sparseg.errors import InputError
from sparseg.formats import has_image_suffix
from sparseg.io import image_files
from sparseg.paths import file_problem, same_file

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


CLUSTER_INDICES = ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX")
"""What a cluster tells each task of a job array: SLURM job arrays (with SLURM_ARRAY_TASK_COUNT, _MIN and _STEP)
and Kubernetes Indexed Jobs (0-based; the number of completions is not passed, so --parts gives it)."""


def resolve_part(part: int | None, parts: int | None, environ: Mapping[str, str]) -> tuple[int, int, str]:
    """`--part` (1-based) and `--parts` as given, else from a job array's environment (`CLUSTER_INDICES`); with
    neither, the whole batch. Returns (part, parts, where they came from). A value that is not a whole number, or a
    part outside 1..parts, is an InputError naming the variable."""

    def number(name: str) -> int:
        text = environ.get(name, "").strip()
        if not re.fullmatch(r"[0-9]{1,9}", text):  # ASCII digits: str.isdigit takes "²", which int() refuses
            raise InputError(f"{name}={environ.get(name)[:40]!r}: not a whole number of 0 or more (at most 9 digits)")
        return int(text)

    where = "--part/--parts"
    if part is None and "SLURM_ARRAY_TASK_ID" in environ:
        step = number("SLURM_ARRAY_TASK_STEP") if "SLURM_ARRAY_TASK_STEP" in environ else 1
        first = number("SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in environ else 0
        offset = number("SLURM_ARRAY_TASK_ID") - first
        if step < 1 or offset % step:
            raise InputError(f"SLURM_ARRAY_TASK_ID={environ['SLURM_ARRAY_TASK_ID']}: not a task of the array "
                             f"{first}-...:{step}")
        part = offset // step + 1
        if parts is None and "SLURM_ARRAY_TASK_COUNT" not in environ:
            raise InputError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not: give --parts N")
        where = (f"SLURM_ARRAY_TASK_ID={environ['SLURM_ARRAY_TASK_ID']}"
                 f"{'' if 'SLURM_ARRAY_TASK_COUNT' not in environ else ' of ' + environ['SLURM_ARRAY_TASK_COUNT']}")
    elif part is None and "JOB_COMPLETION_INDEX" in environ:
        if parts is None:
            raise InputError(f"JOB_COMPLETION_INDEX={environ['JOB_COMPLETION_INDEX']}: a Kubernetes Indexed Job does "
                             "not say how many completions it has; give --parts N (the Job's completions)")
        part = number("JOB_COMPLETION_INDEX") + 1
        where = f"JOB_COMPLETION_INDEX={environ['JOB_COMPLETION_INDEX']}"
    if parts is None and "SLURM_ARRAY_TASK_COUNT" in environ:  # what --parts says it defaults to, --part given or not
        parts = number("SLURM_ARRAY_TASK_COUNT")
    part = 1 if part is None else part
    parts = 1 if parts is None else parts
    if parts < 1 or not 1 <= part <= parts:
        raise InputError(f"{where}: part {part} of {parts}: expected 1 <= part <= parts")
    return part, parts, where


def batch_part(cases: list[Case], part: int, parts: int) -> list[Case]:
    """Part `part` (0-based) of `parts`: every `parts`-th case by case id, so N machines sharing one output
    folder each take a disjoint share of a cohort, and together all of it (as nnU-Net's -part_id/-num_parts)."""
    if parts < 1 or not 0 <= part < parts:
        raise InputError(f"--part {part + 1} --parts {parts}: expected 1 <= part <= parts")
    return sorted(cases, key=lambda c: c.case_id)[part::parts]


@dataclass(frozen=True)
class Case:
    """The files of one case. `z` is None where the Z_ADC is to be computed (from an atlas: `sparseg.zmap`),
    `label` for unlabelled data."""

    case_id: str
    adc: Path
    z: Path | None
    label: Path | None = None


def case_inputs(case: Case) -> list[Path]:
    """Every file a case is read from: its images (with a MetaImage header's data files) and its label."""
    return [path for image in (case.adc, case.z, case.label) if image is not None for path in image_files(image)]


def data_inputs(root: Path | str, cases: list[Case]) -> list[Path]:
    """Every file a command reads for `cases` found in `root`: the manifest when `root` is one, and each case's
    files (`case_inputs`)."""
    root = Path(root)
    return [*([root] if root.is_file() else []), *(path for case in cases for path in case_inputs(case))]


def case_id_of(path: Path) -> str | None:
    """The MGHNICU case id in a file name, or None."""
    match = CASE_ID.search(path.name)
    return match.group(0) if match else None


def folder_images(folder: Path) -> list[Path]:
    """The image files of a folder (hidden ones left out); an entry named as an image that is not a regular file
    (a FIFO, a device, a link to one or to nothing) is an InputError naming it."""
    found = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not has_image_suffix(path) or path.is_dir():
            continue
        problem = file_problem(path)
        if problem is not None:
            raise InputError(f"{path}: {problem}")
        found.append(path)
    return found


def index_by_case_id(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Map case id -> image file in `folder` (a release folder), and its problems: files without an id, ids
    in several files (each problem names the folder)."""
    found: dict[str, list[Path]] = defaultdict(list)
    nameless = []
    for path in folder_images(folder):
        case_id = case_id_of(path)
        if case_id is None:
            nameless.append(path.name)
        else:
            found[case_id].append(path)
    problems = [f"{folder.name}/ has files with no case id (MGHNICU_<n>-VISIT_<v>): {_some(nameless)}"] if nameless \
        else []
    problems += [f"{cid} appears in {len(paths)} files of {folder.name}/: {', '.join(p.name for p in paths)}"
                 for cid, paths in sorted(found.items()) if len(paths) > 1]
    return {cid: paths[0] for cid, paths in found.items()}, problems


def dataset_root(root: Path) -> Path:
    """The folder holding 1ADC_ss (and 2Z_ADC): `root` itself or its only such subfolder."""
    root = Path(root)
    if root.is_file():
        raise InputError(f"{root}: a file, not a folder of cases; a manifest is a CSV file named .csv")
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


def find_cases(root: Path | str, require_labels: bool = False, with_zadc: bool = True) -> list[Case]:
    """All cases of a release-layout folder (or a CSV manifest), paired by case id, sorted by id; without
    `with_zadc` their ADC alone (a 2Z_ADC folder, if any, is not read: the Z_ADC is to be computed).

    Labels are attached when a 3LABEL folder exists; then every case must have one.
    """
    if is_manifest(Path(root)):
        return manifest_cases(Path(root), require_labels, with_zadc)
    root = dataset_root(Path(root))
    has_labels = (root / LABEL_DIR).is_dir()
    if require_labels and not has_labels:
        raise InputError(f"{root}: no {LABEL_DIR}/ folder, but labels are needed")
    folders, problems = {}, []
    for name in (ADC_DIR, *([Z_DIR] if with_zadc else []), *([LABEL_DIR] if has_labels else [])):
        if not (root / name).is_dir():
            problems.append(f"no {name}/ folder")
            continue
        folders[name], found = index_by_case_id(root / name)
        problems += found
    all_ids = set().union(*(set(v) for v in folders.values()))
    problems += [f"{name}/ lacks {_some(sorted(all_ids - set(index)))}" for name, index in folders.items()
                 if all_ids - set(index)]
    if not all_ids and not problems:
        problems.append(f"no cases found in {ADC_DIR}/")
    if problems:
        raise listed_problems(root, problems)
    labels = folders.get(LABEL_DIR)
    found = [Case(case_id=cid, adc=folders[ADC_DIR][cid], z=folders[Z_DIR][cid] if with_zadc else None,
                  label=labels[cid] if labels is not None else None) for cid in sorted(all_ids)]
    _require_distinct_files(root, found)
    return found


def _single_image(folder: Path) -> Path:
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    files = folder_images(folder)
    if not files:
        raise InputError(f"{folder}: no image file (.mha) found")
    if len(files) > 1:
        raise InputError(f"{folder}: {len(files)} image files, expected exactly one: "
                         f"{', '.join(p.name for p in files)}")
    return files[0]


def find_input_case(root: Path | str, with_zadc: bool = True) -> Case:
    """The single case of a grand-challenge /input folder (without `with_zadc`, its ADC alone)."""
    root = Path(root)
    adc = _single_image(root / INPUT_ADC_DIR)
    zmap = _single_image(root / INPUT_Z_DIR) if with_zadc else None
    ids = {case_id_of(adc), case_id_of(zmap) if zmap is not None else None} - {None}
    if len(ids) > 1 and zmap is not None:
        raise InputError(f"{root}: ADC and Z_ADC name different cases: {adc.name}, {zmap.name}")
    case_id = ids.pop() if ids else adc.name.split(".")[0]
    case = Case(case_id=case_id, adc=adc, z=zmap)
    _require_distinct_files(root, [case])
    return case


MAX_CASE_ID_BYTES = 200
"""The longest case id, in bytes of UTF-8: with `_probabilities.nii.gz` and a temporary prefix, an output's name
stays within the 255 bytes file systems allow."""


def case_id_problem(case_id: str) -> str | None:
    """Why `case_id` cannot name output files (`<case_id>_lesion.mha`), or None when it can. Any name people give
    files can: spaces, accents, apostrophes, commas, brackets. Refused: what is not one file-name component (a
    `/`, NUL or another control character, `.` or `..`), a leading `-` (read as an option) or `.` (hidden
    outputs; the temporary files start with one), a leading `=`, `+` or `@` (a spreadsheet opening summary.csv
    would run it as a formula), characters that reorder the text around them (bidirectional controls: the name
    shown is not the name) or that are invisible (zero-width characters and marks, Unicode's format characters: two
    ids that look the same would be two cases), and over `MAX_CASE_ID_BYTES` bytes."""
    if not case_id:
        return "is empty"
    try:
        size = len(case_id.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if "/" in case_id:
        return "holds a /"
    if any(unicodedata.category(char) == "Cc" for char in case_id):
        return "holds a control character"
    if case_id.startswith("-"):
        return "starts with - (it would read as an option)"
    if case_id.startswith("."):
        return "starts with . (its outputs would be hidden files)"
    if case_id.startswith(("=", "+", "@")):
        return f"starts with {case_id[0]} (a spreadsheet would run it as a formula)"
    if any(unicodedata.bidirectional(char) in BIDI_CONTROLS for char in case_id):
        return "holds a bidirectional control character (the name shown would not be the name)"
    invisible = next((char for char in case_id if unicodedata.category(char) == "Cf"), None)
    if invisible is not None:
        return (f"holds an invisible formatting character (U+{ord(invisible):04X}: a zero-width or bidirectional mark; "
                "two ids that look the same would be two cases)")
    if size > MAX_CASE_ID_BYTES:
        return f"is {size} bytes of UTF-8, over {MAX_CASE_ID_BYTES}"
    return None


BIDI_CONTROLS = {"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}
"""Unicode's explicit bidirectional formatting characters (U+202A-E, U+2066-9)."""


def _id_problems(ids: list[str]) -> list[str]:
    """Why ids cannot name output files: each id's `case_id_problem`, and ids that differ only in letter case or
    Unicode normalisation (on macOS and Windows file systems they would share their output files)."""
    problems = sorted({f"case id {cid!r} {problem}" for cid in ids if (problem := case_id_problem(cid)) is not None})
    alike: dict[str, list[str]] = defaultdict(list)
    for cid in dict.fromkeys(ids):
        alike[unicodedata.normalize("NFC", cid).casefold()].append(cid)
    return problems + [f"case ids {' and '.join(map(repr, group))} differ only in letter case or Unicode "
                       "normalisation (they would share output files on macOS and Windows)"
                       for group in alike.values() if len(group) > 1]


def _require_usable_ids(source: Path, ids: list[str]) -> None:
    """Every id that cannot name output files (`_id_problems`), with the reason, in one InputError naming
    `source`."""
    problems = _id_problems(ids)
    if problems:
        raise listed_problems(source, problems)


def is_manifest(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


MAX_LISTED = 20
"""An error lists this many problems, then counts the rest."""


def listed_problems(source: Path, problems: list[str]) -> InputError:
    """One InputError naming `source` and its first `MAX_LISTED` problems, then how many more."""
    shown = problems[:MAX_LISTED]
    more = f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return InputError(f"{source}: " + "; ".join(shown) + more)


def manifest_cases(path: Path, require_labels: bool = False, with_zadc: bool = True) -> list[Case]:
    """The cases of a CSV manifest: columns case_id, adc, zadc (not needed, and not read, without `with_zadc`)
    and optionally label; paths relative to the CSV's folder. Every problem (a missing file, a repeated id, a row
    without a label, one file in two roles) is listed in one error, by the line it is on."""
    if path.is_dir():
        raise InputError(f"{path}: a folder, not a CSV manifest")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a readable CSV manifest ({exc})") from None
    columns = set(header)
    repeated = sorted({column for column in header if header.count(column) > 1 and column})
    if repeated:
        raise InputError(f"{path}: the column{'s' if len(repeated) > 1 else ''} {', '.join(repeated)} appear"
                         f"{'' if len(repeated) > 1 else 's'} more than once; which would count?")
    needed = ("case_id", "adc", "zadc") if with_zadc else ("case_id", "adc")
    if not set(needed) <= columns:
        raise InputError(f"{path}: a manifest needs the columns {', '.join(needed)} (and optionally label); "
                         f"found {', '.join(sorted(c for c in columns if c)) or 'none'}")
    if require_labels and "label" not in columns:
        raise InputError(f"{path}: no label column, but labels are needed")
    problems, found, seen = [], [], set()
    for number, row in rows:
        cid = (row.get("case_id") or "").strip()
        if not cid:
            problems.append(f"line {number}: no case_id")
            continue
        if cid in seen:
            problems.append(f"line {number}: case_id {cid} repeated")
        seen.add(cid)
        files = {}
        for column in ("adc", *(["zadc"] if with_zadc else []), "label"):
            value = (row.get(column) or "").strip()
            if not value:
                if column != "label" or require_labels:
                    problems.append(f"line {number} ({cid}): no {column}")
                continue
            file = (path.parent / value) if not Path(value).is_absolute() else Path(value)
            problem = file_problem(file)
            if problem is not None:
                problems.append(f"line {number} ({cid}): {column} {value} {problem}")
            files[column] = file
        case = Case(case_id=cid, adc=files.get("adc", Path()), z=files.get("zadc", Path()) if with_zadc else None,
                    label=files.get("label"))
        problems += [f"line {number} ({cid}): {shared}" for shared in _shared_files(case)]
        found.append(case)
    if not found and not problems:
        problems.append("no cases")
    problems += _id_problems([c.case_id for c in found])
    if problems:
        raise listed_problems(path, problems)
    return sorted(found, key=lambda c: c.case_id)


def _shared_files(case: Case) -> list[str]:
    """Where one file plays two roles in a case (ADC and Z_ADC, or the label too): the same path, a symbolic link
    to it, a hard link, or two .mhd headers naming one data file. Such a case would segment nothing, or score a
    mask against itself."""
    roles = [(name, path) for name, path in (("ADC", case.adc), ("Z_ADC", case.z), ("label", case.label))
             if path is not None and path != Path()]
    return [f"its {first} and {second} are the same file ({path})"
            for index, (first, path) in enumerate(roles) for second, other in roles[index + 1 :]
            if any(same_file(mine, theirs) for mine in image_files(path) for theirs in image_files(other))]


def _require_distinct_files(source: Path, cases: list[Case]) -> None:
    problems = [f"{case.case_id}: {shared}" for case in cases for shared in _shared_files(case)]
    if problems:
        raise listed_problems(source, problems)


def _pattern_regex(pattern: str) -> re.Pattern:
    """`pattern`'s glob as a regex over paths relative to the folder, matching what `Path.glob` matches (its
    fnmatch rules: `*` within one name, empty too; `?` one character; `[...]` a class, `[!...]` its complement, a
    leading `^` a character like any other; `**/` any number of folders). Each run of wildcards with no literal
    text between them is one group: the case id's parts."""
    pieces, index = [], 0  # (regex, is a wildcard)
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            pieces.append(("(?:.+/)?", True))
            index += 3
            continue
        close = pattern.find("]", index + 2) if char == "[" else -1
        if char == "*":
            pieces.append(("[^/]*", True))
        elif char == "?":
            pieces.append(("[^/]", True))
        elif close > 0:
            body = pattern[index + 1 : close].replace("\\", "\\\\")
            body = "^" + body[1:] if body.startswith("!") else "\\" + body if body.startswith("^") else body
            pieces.append((f"[{body}]", True))
            index = close + 1
            continue
        else:
            pieces.append((re.escape(char), False))
        index += 1
    regex, run = "", ""
    for piece, wild in pieces + [("", False)]:
        if wild:
            run += piece
            continue
        if run:
            regex += f"({run})"
            run = ""
        regex += piece
    return re.compile(regex + "$", re.DOTALL)


def pattern_would_read(folder: Path, pattern: str, paths: list[Path]) -> list[Path]:
    """Those of `paths` that `pattern` would find in `folder` once they are written (an output a rerun would read
    as an input)."""
    root = folder.resolve()
    regex, found = _pattern_regex(pattern), []
    for path in paths:
        try:
            relative = path.resolve().relative_to(root).as_posix()
        except ValueError:
            continue
        if regex.match(relative) and not path.name.startswith("."):
            found.append(path)
    return found


def _by_pattern(folder: Path, pattern: str) -> tuple[dict[str, list[Path]], list[Path]]:
    """Files of `folder` matching `pattern`, by case id (what its wildcard runs matched, joined by "_", a "/" of
    a `**/` match too), and the matches that are not files (a folder, a broken link)."""
    regex = _pattern_regex(pattern)
    found: dict[str, list[Path]] = defaultdict(list)
    not_files = []
    for path in sorted(folder.glob(pattern)):
        if path.name.startswith("."):
            continue
        if file_problem(path) is not None:
            not_files.append(path)
            continue
        match = regex.match(path.relative_to(folder).as_posix())
        if match:
            found["_".join(g.strip("/").replace("/", "_") for g in match.groups() if g)].append(path)
    return found, not_files


def pattern_cases(folder: Path, adc_pattern: str, z_pattern: str | None) -> list[Case]:
    """Cases of a folder whose files any names follow, as two glob patterns (`--adc '*_adc.nii.gz'`), or the ADC's
    alone (`z_pattern` None: the Z_ADC is to be computed); the case id is what the patterns' `*`s match. Unpaired,
    ambiguous and repeated files are all listed in one error."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    if z_pattern is None:
        return _adc_pattern_cases(folder, adc_pattern)
    if "*" not in adc_pattern or "*" not in z_pattern:
        raise InputError(f"--adc {adc_pattern!r} --zadc {z_pattern!r}: each pattern needs a * where the case id is")
    for pattern in (adc_pattern, z_pattern):
        if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            raise InputError(f"{pattern}: a pattern names files inside --data {folder}, relative to it")
    try:
        (adc, adc_others), (zmap, z_others) = _by_pattern(folder, adc_pattern), _by_pattern(folder, z_pattern)
    except (ValueError, NotImplementedError) as exc:  # a pattern pathlib cannot take ("a**b")
        raise InputError(f"--adc {adc_pattern!r} --zadc {z_pattern!r}: not a usable pattern ({exc})") from None
    problems = [f"{path.relative_to(folder).as_posix()} matches, but {file_problem(path)}"
                for path in sorted(set(adc_others) | set(z_others))]
    adc_files, z_files = ({p for paths in index.values() for p in paths} for index in (adc, zmap))
    both = sorted(adc_files & z_files)
    if both:
        problems.append(f"matched by both patterns: {_some(p.relative_to(folder).as_posix() for p in both)}")
    for name, index in (("ADC", adc), ("Z_ADC", zmap)):
        for cid, paths in sorted(index.items()):
            if len(paths) > 1:
                names = ", ".join(p.relative_to(folder).as_posix() for p in paths)
                problems.append(f"{name} of {cid} ambiguous: {names}")
    if set(adc) - set(zmap):
        problems.append(f"no Z_ADC ({z_pattern}) for: {_some(sorted(set(adc) - set(zmap)))}")
    if set(zmap) - set(adc):
        problems.append(f"no ADC ({adc_pattern}) for: {_some(sorted(set(zmap) - set(adc)))}")
    if not adc and not zmap:
        problems.append(f"no file matches {adc_pattern} or {z_pattern}")
    problems += _id_problems(sorted(set(adc) | set(zmap)))
    if problems:
        raise listed_problems(folder, problems)
    found = [Case(case_id=cid, adc=adc[cid][0], z=zmap[cid][0]) for cid in sorted(adc)]
    _require_distinct_files(folder, found)
    return found


def _adc_pattern_cases(folder: Path, adc_pattern: str) -> list[Case]:
    """`pattern_cases` for ADC files alone."""
    if "*" not in adc_pattern:
        raise InputError(f"--adc {adc_pattern!r}: the pattern needs a * where the case id is")
    if Path(adc_pattern).is_absolute() or ".." in Path(adc_pattern).parts:
        raise InputError(f"{adc_pattern}: a pattern names files inside --data {folder}, relative to it")
    try:
        adc, others = _by_pattern(folder, adc_pattern)
    except (ValueError, NotImplementedError) as exc:
        raise InputError(f"--adc {adc_pattern!r}: not a usable pattern ({exc})") from None
    problems = [f"{path.relative_to(folder).as_posix()} matches, but {file_problem(path)}" for path in sorted(others)]
    problems += [f"ADC of {cid} ambiguous: {', '.join(p.relative_to(folder).as_posix() for p in paths)}"
                 for cid, paths in sorted(adc.items()) if len(paths) > 1]
    if not adc:
        problems.append(f"no file matches {adc_pattern}")
    problems += _id_problems(sorted(adc))
    if problems:
        raise listed_problems(folder, problems)
    return [Case(case_id=cid, adc=adc[cid][0], z=None) for cid in sorted(adc)]


def _some(names) -> str:
    """Up to `MAX_LISTED` names, then how many more."""
    names = list(names)
    more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return ", ".join(names[:MAX_LISTED]) + more


def is_input_layout(folder: Path) -> bool:
    return (folder / INPUT_ADC_DIR).is_dir() or (folder / INPUT_Z_DIR).is_dir()


def input_folder_cases(root: Path, with_zadc: bool = True) -> list[Case]:
    """A folder of grand-challenge /input folders, one per case: each case is named by its folder."""
    folders = [p for p in sorted(root.iterdir()) if p.is_dir() and is_input_layout(p)]
    found, problems = [], []
    for folder in folders:
        try:
            case = find_input_case(folder, with_zadc)
        except InputError as exc:
            problems.append(str(exc))
            continue
        found.append(Case(case_id=folder.name, adc=case.adc, z=case.z))
    if problems:
        raise InputError("; ".join(problems))
    _require_usable_ids(root, [c.case_id for c in found])
    return found


def find_any_cases(root: Path | str, adc_pattern: str | None = None, z_pattern: str | None = None,
                   with_zadc: bool = True) -> list[Case]:
    """The cases of `root` in whichever layout it has: a CSV manifest, a folder with name patterns, the
    container's /input (one case), a folder of /input folders, or the release. Without `with_zadc` their ADC
    alone (the Z_ADC is to be computed; given Z_ADC files are not read)."""
    root = Path(root)
    if not with_zadc and z_pattern:
        raise InputError(f"--zadc {z_pattern!r}: the Z_ADC is computed from the atlas here; give --atlas or "
                         "--zadc, not both")
    if adc_pattern or z_pattern:
        if with_zadc and not (adc_pattern and z_pattern):
            raise InputError("--adc and --zadc go together: give both patterns, or --adc and --atlas DIR to compute "
                             "the Z_ADC from an atlas")
        if not adc_pattern:
            raise InputError("--zadc goes with --adc: give both patterns")
        return pattern_cases(root, adc_pattern, z_pattern if with_zadc else None)
    if is_manifest(root):
        return manifest_cases(root, with_zadc=with_zadc)
    if is_input_layout(root):
        case = find_input_case(root, with_zadc)
        _require_usable_ids(root, [case.case_id])
        return [case]
    if root.is_dir() and not (root / ADC_DIR).is_dir() and any(
            p.is_dir() and is_input_layout(p) for p in root.iterdir()):
        return input_folder_cases(root, with_zadc)
    return find_cases(root, with_zadc=with_zadc)


