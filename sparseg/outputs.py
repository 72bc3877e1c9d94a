"""What a run writes, and reading it back: the names of each case's outputs (mask, probabilities, Z_ADC, picture),
of a batch's summary and QA page (and of a part's, on a cluster), and the one strict reader of a run folder's
summaries and masks that every consumer (evaluate, report, a rerun) goes through."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from sparseg.cases import CASE_ID, case_id_of, case_id_problem, folder_images, listed_problems
from sparseg.errors import InputError
from sparseg.formats import IMAGE_SUFFIXES
from sparseg.paths import file_problem, files_sha256

MASK_FORMATS = (".mha", ".nii.gz")
"""What masks can be written as; by default the ADC file's own (`mask_suffix`)."""


def mask_suffix(image: Path, choice: str = "auto") -> str:
    """The suffix of a case's outputs: `choice` (one of `MASK_FORMATS`), or with "auto" the ADC image's
    format (.nii and .nii.gz give .nii.gz; everything else .mha)."""
    if choice != "auto":
        return choice if choice.startswith(".") else f".{choice}"
    return ".nii.gz" if image.name.lower().endswith((".nii", ".nii.gz")) else ".mha"


def prediction_name(case_id: str, suffix: str = ".mha") -> str:
    """File name of a case's predicted mask in a batch output folder (`sparseg predict`, `sparseg baseline`)."""
    return f"{case_id}_lesion{suffix}"


def probabilities_name(case_id: str, suffix: str = ".mha") -> str:
    """File name of a case's lesion probabilities in a batch output folder (`--save-probabilities`)."""
    return f"{case_id}_probabilities{suffix}"


def zadc_name(case_id: str, suffix: str = ".mha") -> str:
    """File name of a case's computed Z_ADC in an output folder (`sparseg zmap`, `sparseg predict --save-zadc`)."""
    return f"{case_id}_zadc{suffix}"


def overlay_name(case_id: str) -> str:
    """File name of a case's overlay picture in a batch output folder (`--overlays`)."""
    return f"{case_id}_overlay.png"


def case_outputs(case_id: str) -> list[str]:
    """Every file name a batch may write, or remove as stale, for a case: its mask, probabilities and computed
    Z_ADC in each of `MASK_FORMATS`, and its overlay."""
    return [*(name(case_id, suffix) for suffix in MASK_FORMATS
              for name in (prediction_name, probabilities_name, zadc_name)), overlay_name(case_id)]


BATCH_SUMMARY = "summary.csv"
"""One row per case of a batch output folder: status, lesion volume, burden, seconds, flags, what made it."""


BATCH_REPORT = "report.html"
"""The QA page of a batch output folder (`sparseg predict --report`)."""


def part_name(name: str, part: int, parts: int) -> str:
    """`name` of one part of a batch split over `parts` machines (`summary_part1of4.csv`); `name` when whole."""
    if parts == 1:
        return name
    stem, dot, suffix = name.partition(".")
    return f"{stem}_part{part + 1}of{parts}{dot}{suffix}"


FINISHED = ("ok", "done earlier")
"""The statuses of a summary row whose mask the run finished (others: "failed", "in progress")."""


SUMMARY_GLOB = "summary*.csv"
"""Every batch summary of an output folder: `sparseg predict`'s, each part's and each cross-validation fold's."""


NEWLINE = b"\n"


MAX_SUMMARY_FIELD = 1 << 16
"""No field a run writes in a summary comes near this many characters (an error message is the longest)."""


def read_summary(path: Path) -> list[dict[str, str]]:
    """The rows of a batch summary as its run wrote them. What no run writes is an InputError naming the file and
    the line: bytes that are not UTF-8, an empty file, a header without case_id, a row with more or fewer cells
    than the header (a file cut short), a field over `MAX_SUMMARY_FIELD` characters, a case id that cannot be one
    (`case_id_problem`: `../x` would name files outside the folder)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(NEWLINE) + 1
        raise InputError(f"{path}: line {line}: not UTF-8 text (byte {data[exc.start]:#04x}): not a summary a run "
                         "wrote") from None
    if not text.strip():
        raise InputError(f"{path}: empty: not a summary a run wrote")
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        header = next(reader)
        if "case_id" not in header:
            raise InputError(f"{path}: line 1: no case_id column: not a summary a run wrote")
        for cells in reader:
            if not cells:
                continue
            if len(cells) != len(header):
                raise InputError(f"{path}: line {reader.line_num}: {len(cells)} cells where the header has "
                                 f"{len(header)} (the file is cut short or was edited)")
            long = next((cell for cell in cells if len(cell) > MAX_SUMMARY_FIELD), None)
            if long is not None:
                raise InputError(f"{path}: line {reader.line_num}: a field of {len(long)} characters: not a "
                                 "summary a run wrote")
            row = dict(zip(header, cells, strict=True))
            problem = case_id_problem(row["case_id"])
            if problem is not None:
                raise InputError(f"{path}: line {reader.line_num}: case id {row['case_id'][:80]!r} {problem}")
            rows.append(row)
    except csv.Error as exc:  # a field over the csv module's own limit, a NUL byte
        raise InputError(f"{path}: line {reader.line_num}: not a readable summary ({exc})") from None
    return rows


def folder_summaries(folder: Path) -> list[Path]:
    """The batch summaries of an output folder, oldest first (a newer one's row of a case is the current one)."""
    return sorted((p for p in folder.glob(SUMMARY_GLOB) if p.is_file()), key=lambda path: path.stat().st_mtime_ns)


def recorded_rows(folder: Path) -> dict[str, dict[str, str]]:
    """Each case's current row in the summaries of an output folder (a newer summary's over an older one's); a
    damaged summary is an InputError naming it (`read_summary`). Cases no summary names are absent."""
    rows: dict[str, dict[str, str]] = {}
    for summary in folder_summaries(folder):
        rows.update((row["case_id"], row) for row in read_summary(summary))
    return rows


def recorded_mask(folder: Path, row: dict[str, str]) -> tuple[Path | None, str]:
    """The mask a summary row says its run finished in `folder`, and "", when it is that file: the case's own mask
    (`prediction_name`, a file of this folder, no other path), unchanged since it was written (its sha256). Else
    None and why, in words (the run did not finish it, the row names another file, the file is gone or changed)."""
    case_id, name = row.get("case_id", ""), row.get("mask") or ""
    if row.get("status") not in FINISHED:
        return None, f"its last run did not finish it (status {row.get('status')!r})"
    if name not in {prediction_name(case_id, suffix) for suffix in IMAGE_SUFFIXES}:
        return None, f"its summary names {name[:80]!r}, which is not its mask in this folder"
    path = folder / name
    problem = file_problem(path)
    if problem is not None:
        return None, f"{name} {problem}"
    if row.get("mask_sha256") and files_sha256([path]) != row["mask_sha256"]:
        return None, f"{name} is not the mask its run wrote (changed since: another tool or run wrote there?)"
    return path, ""


def recorded_outputs_problem(folder: Path, row: dict[str, str]) -> str:
    """Why a finished case's files in `folder` are not those its run wrote, in words, or "": the files of its
    outputs that are there (mask, probabilities, overlay, computed Z_ADC, in the order the run hashed them; the
    run removed those it did not write) against the row's `outputs_sha256`. A row without one ("": an older run)
    is taken as it is."""
    case_id, name, recorded = row.get("case_id", ""), row.get("mask") or "", row.get("outputs_sha256") or ""
    if not recorded:
        return ""
    suffix = next((s for s in IMAGE_SUFFIXES if name == prediction_name(case_id, s)), None)
    if suffix is None:
        return f"its summary names {name[:80]!r}, which is not its mask in this folder"
    candidates = [folder / prediction_name(case_id, suffix), folder / probabilities_name(case_id, suffix),
                  folder / overlay_name(case_id), folder / zadc_name(case_id, suffix)]
    try:
        present = files_sha256([path for path in candidates if file_problem(path) is None])
    except OSError as exc:
        return f"its files cannot be read ({exc.strerror or exc})"
    return "" if present == recorded else "its files are not those its run wrote (changed or replaced since)"


def find_masks(folder: Path, case_ids: list[str]) -> dict[str, Path]:
    """The mask of each case in a folder of predictions, where there is one. A folder with summaries (a run of
    `sparseg predict` or `sparseg cv`) gives only what they record (`recorded_mask`): a mask of a case no summary
    names is an earlier run's, and one that is not the file its run wrote is refused. A folder without summaries
    (another tool's) gives the one file named for the case (`prediction_name` in any format, its suffix in any
    letter case; for BONBID ids, any file whose name holds the id); two candidates are an InputError naming both."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    files = folder_images(folder)
    found, problems = {}, []
    if folder_summaries(folder):
        recorded = recorded_rows(folder)
        for case_id in case_ids:
            if case_id not in recorded:
                leftover = [p.name for p in files if p.name in {prediction_name(case_id, s) for s in IMAGE_SUFFIXES}]
                if leftover:
                    problems.append(f"{case_id}: no summary of this folder names it, so {', '.join(leftover)} is an "
                                    "earlier run's, not the last run's")
                continue
            path, why = recorded_mask(folder, recorded[case_id])
            if path is not None:
                found[case_id] = path
            elif recorded[case_id].get("status") in FINISHED:
                problems.append(f"{case_id}: {why}")
        if problems:
            raise listed_problems(folder, problems)
        return found
    for case_id in case_ids:
        names = {prediction_name(case_id, suffix).lower() for suffix in IMAGE_SUFFIXES}
        named = [p for p in files if p.name.lower() in names]
        if not named and CASE_ID.fullmatch(case_id):
            named = [p for p in files if case_id_of(p) == case_id and not p.name.lower().startswith(
                probabilities_name(case_id, ".").lower())]
        if len(named) > 1:
            problems.append(f"{case_id} has {len(named)} masks and no summary says which is current: "
                            f"{', '.join(p.name for p in named)}")
        elif named:
            found[case_id] = named[0]
    if problems:
        raise listed_problems(folder, problems)
    return found
