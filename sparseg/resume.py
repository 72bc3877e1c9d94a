"""A batch's record and how a rerun resumes from it: summary.csv holds one row per case (`CaseSummary`) with
what made its mask (`MADE_BY`: the inputs' hash, the checkpoints' hashes, the settings) and the hash of the
files it wrote.

A rerun keeps a case's outputs only when that record matches what this run
would use and the files are those the earlier run wrote (`why_redo` says why
not otherwise); a case recorded `IN_PROGRESS` (a run killed while writing its
outputs) is always redone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sparseg.cases import Case, case_inputs
from sparseg.errors import InputError
from sparseg.outputs import read_summary
from sparseg.paths import files_sha256

log = logging.getLogger(__name__)


@dataclass
class CaseSummary:
    """A row of a batch's summary.csv: the result, and what made it (the key a rerun checks)."""

    case_id: str
    status: str
    """"ok", "done earlier", "failed", or "in progress" (recorded before its outputs are written: a run killed
    then leaves it so, and a rerun redoes it)."""
    mask: str = ""
    """The file name of the case's mask in the output folder, once written (`sparseg evaluate` scores that one)."""
    mask_sha256: str = ""
    """The sha256 (16 hex digits) of that mask as written: `sparseg evaluate` refuses it when it changed since."""
    lesion_ml: float = float("nan")
    burden: float = float("nan")
    burden_group: str = ""
    seconds: float = float("nan")
    member_agreement: float = float("nan")
    """With a fold ensemble: the mean Dice between the masks its members alone would make (`inference`); low values
    are flagged."""
    atlas_overlap: float = float("nan")
    """Where the Z_ADC was computed from an atlas: the Dice between the registered atlas brain and the case's brain
    (`zmap.ZmapResult`); low values are flagged."""
    atlas_similarity: float = float("nan")
    """The correlation of the case's smoothed ADC with the registered atlas mean, inside the brain."""
    adc_scale: float = float("nan")
    """What the ADC was multiplied by to meet the atlas's level before its Z_ADC was computed."""
    flags: str = ""
    """What deserves a look, "; "-separated: an empty mask, an implausible unit or spacing."""
    error: str = ""
    inputs_sha256: str = ""
    """The sha256 (first 16 hex digits) of the case's input files' bytes (`inputs_sha256`)."""
    checkpoints_sha256: str = ""
    settings: str = ""
    atlas: str = ""
    """Where the Z_ADC was computed: the atlas's sha256 and the Z_ADC settings (`zmap.ZmapMaker.key`); empty where
    the Z_ADC was given."""
    outputs_sha256: str = ""
    """The sha256 (16 hex digits) of the case's output files as this run wrote them: a file changed since (another
    tool or run writing into the folder) is not kept."""


SUMMARY_COLUMNS = tuple(CaseSummary.__dataclass_fields__)
MADE_BY = ("inputs_sha256", "checkpoints_sha256", "settings", "atlas")
"""The columns of summary.csv that say what made a mask; a rerun keeps a mask only when all of them match."""


IN_PROGRESS = "in progress"


def inputs_sha256(case: Case) -> str:
    """The sha256 (16 hex digits) of every byte a case's outputs are made from: its ADC and Z_ADC files (the ADC
    alone where the Z_ADC is computed: the atlas is in `MADE_BY`), its label where it has one (it draws the
    overlay's true contour and gives the report's scores) and, for a MetaImage header (.mhd), the pixel data files
    each names (`cases.case_inputs`)."""
    try:
        return files_sha256(case_inputs(case))
    except OSError as exc:
        raise InputError(f"{exc.filename}: cannot be read ({exc.strerror})") from None


def earlier_rows(path: Path) -> dict[str, dict[str, str]]:
    """The rows of an earlier run's summary.csv by case id ({} when there is none; a damaged one is logged and
    taken as none, so every case is done again)."""
    if not path.exists():
        return {}
    try:
        return {row["case_id"]: row for row in read_summary(path)}
    except InputError as exc:
        log.warning("%s: every case is done again", exc)
        return {}


def why_redo(row: dict[str, str] | None, made_by: dict[str, str], outputs_sha256: Callable[[], str]) -> str | None:
    """Why a case's existing outputs cannot be kept, or None when the earlier run made them as this one would and
    they are the files it wrote (`outputs_sha256`: their hash as they are now, asked only then)."""
    if row is None:
        return "no record of what made its mask in the summary"
    if row.get("status") == "failed":
        return "it failed before"
    if row.get("status") == IN_PROGRESS:
        return "the run that was writing its outputs was interrupted"
    changed = [key for key in MADE_BY if (row.get(key) or "") != made_by[key]]
    if not changed:
        return None if row.get("outputs_sha256") == outputs_sha256() else "its files are not those the run wrote"
    what = {"inputs_sha256": "its input files changed", "checkpoints_sha256": "other weights made it",
            "settings": "other settings made it", "atlas": "another atlas or other Z_ADC settings made its Z_ADC"}
    details = {"checkpoints_sha256": f" ({row.get('checkpoints_sha256') or 'unrecorded'} then, "
                                     f"{made_by['checkpoints_sha256']} now)",
               "settings": f" ({row.get('settings') or 'unrecorded'} then)",
               "atlas": f" ({row.get('atlas') or 'a given Z_ADC'} then, {made_by['atlas'] or 'a given Z_ADC'} now)"}
    return "; ".join(what[key] + details.get(key, "") for key in changed)
