"""Segmentation jobs, files in and files out: one container job, or a batch of cases.

The container job (`process.py`) reads the single case of a grand-challenge
/input folder and writes /output/images/hie-lesion-segmentation/overlay.mha,
a uint8 {0, 1} mask with the ADC image's size, spacing, origin and direction.
Batch mode (`sparseg predict`) takes any number of cases in either layout,
loads the model once, and writes `<case_id>_lesion.mha` per case and a
summary CSV (the names are in `sparseg.cases`). Both hand the volumes to
`sparseg.inference.Predictor`, which does the segmenting.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sparseg.cases import (
    BATCH_REPORT,
    BATCH_SUMMARY,
    OUTPUT_MASK,
    Case,
    batch_part,
    case_inputs,
    case_outputs,
    mask_suffix,
    overlay_name,
    part_name,
    prediction_name,
    probabilities_name,
)
from sparseg.config import burden_group
from sparseg.environment import peak_rss_mib
from sparseg.errors import InputError, SparsegError
from sparseg.evaluation import CaseRow, score_row
from sparseg.inference import Predictor, Prepared
from sparseg.io import (
    PARTIAL_PREFIX,
    PLAUSIBLE_SPACING_MM,
    TEMPORARY_NAME,
    Volume,
    files_sha256,
    read_image,
    read_mask,
    remove_stale,
    require_apart,
    require_same_grid,
    write_bytes,
    write_csv,
    write_image,
    write_mask,
)
from sparseg.metrics import lesion_burden

log = logging.getLogger(__name__)

PACKAGE_WEIGHTS = Path(__file__).resolve().parent.parent / "model_weights"
"""The checkpoint(s) the image bakes in (/opt/app/model_weights in the container)."""
UPLOADED_WEIGHTS = Path("/opt/ml/model")
"""Where grand-challenge unpacks a model tarball uploaded with the algorithm."""


def checkpoints_in(folder: Path) -> list[Path]:
    """Every checkpoint under `folder`, in subfolders too (a model tarball may unpack into one), sorted."""
    return sorted(p for p in folder.rglob("*.safetensors") if p.is_file() and not p.name.startswith("."))


def default_weights(search: tuple[Path, ...] = (UPLOADED_WEIGHTS, PACKAGE_WEIGHTS)) -> list[Path]:
    """The checkpoints of the first folder in `search` that holds any: an uploaded model wins, and the
    baked-in weights are then never averaged into it."""
    for folder in search:
        found = checkpoints_in(folder) if folder.is_dir() else []
        if found:
            return found
        if folder.is_dir() and folder != search[-1]:
            log.warning("%s exists but holds no checkpoint (*.safetensors): falling back to the next weights", folder)
    raise InputError(f"no checkpoint (*.safetensors) in {' or '.join(str(f) for f in search)}; pass --weights")


def resolve_weights(paths: list[Path] | None) -> list[Path]:
    """`--weights`: checkpoint files, or folders searched for them (an unpacked model tarball); else the default."""
    if not paths:
        return default_weights()
    found = []
    for path in paths:
        if path.is_dir():
            inside = checkpoints_in(path)
            if not inside:
                raise InputError(f"{path}: no checkpoint (*.safetensors) in this folder")
            found += inside
        else:
            found.append(path)
    return found


ADC_IN_MM2_PER_S_BELOW = 0.01
"""Brain ADC values all below this look like mm^2/s; BONBID-HIE ADC is in 1e-6 mm^2/s (brain ~800-3000)."""
ADC_PLAUSIBLE_MAX = 1e5
"""No tissue diffuses faster than free water (~3000 x 1e-6 mm^2/s at body temperature); far above is another map."""


def unusual(adc: Volume) -> list[str]:
    """Flags for what makes an ADC volume unusual enough that its mask may surprise (no brain, the wrong unit
    or scale, a sign flip, an implausible spacing), each also logged as a warning with its details."""
    flags = []
    low, high = PLAUSIBLE_SPACING_MM
    if not all(low <= v <= high for v in adc.geometry.spacing_mm):
        flags.append("implausible spacing")  # io logged the details when it read the file
    brain = adc.array[adc.array != 0]
    if brain.size == 0:
        log.warning("%s: ADC is all zeros (no brain): the mask is empty", adc.path)
        return [*flags, "no brain"]
    largest, negative = float(np.abs(brain).max()), float(np.mean(brain < 0))
    if largest < ADC_IN_MM2_PER_S_BELOW:
        log.warning("%s: ADC values are all below %g, as if in mm^2/s; SPARSeg expects 1e-6 mm^2/s "
                    "(multiply by 1e6): THIS MASK IS NOT MEANINGFUL", adc.path, ADC_IN_MM2_PER_S_BELOW)
        flags.append("ADC unit (mm^2/s?)")
    elif largest > ADC_PLAUSIBLE_MAX:
        log.warning("%s: ADC values reach %.3g, far above free water's ~3000 x 1e-6 mm^2/s: another map or "
                    "scale? THIS MASK IS NOT MEANINGFUL", adc.path, largest)
        flags.append("ADC scale")
    if negative > 0.5:
        log.warning("%s: ADC is negative in %.0f%% of the brain's voxels; ADC cannot be negative (a sign flip?): "
                    "THIS MASK IS NOT MEANINGFUL", adc.path, 100 * negative)
        flags.append("ADC negative")
    return flags


def synthetic_warning(predictor: Predictor) -> str | None:
    """The warning for weights trained on synthetic data, or None."""
    notices = {str(c.metadata.get("notice", "was trained on synthetic data")) for c in predictor.checkpoints
               if c.synthetic}
    return f"checkpoint {' / '.join(sorted(notices))}" if notices else None


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
    flags: str = ""
    """What deserves a look, "; "-separated: an empty mask, an implausible unit or spacing."""
    error: str = ""
    inputs_sha256: str = ""
    """The sha256 (first 16 hex digits) of the ADC and Z_ADC files' bytes."""
    checkpoints_sha256: str = ""
    settings: str = ""
    outputs_sha256: str = ""
    """The sha256 (16 hex digits) of the case's output files as this run wrote them: a file changed since (another
    tool or run writing into the folder) is not kept."""


SUMMARY_COLUMNS = tuple(CaseSummary.__dataclass_fields__)
MADE_BY = ("inputs_sha256", "checkpoints_sha256", "settings")
"""The columns of summary.csv that say what made a mask; a rerun keeps a mask only when all three match."""


IN_PROGRESS = "in progress"


def inputs_sha256(case: Case) -> str:
    """The sha256 (16 hex digits) of every byte a case's outputs are made from: its ADC and Z_ADC files, its
    label where it has one (it draws the overlay's true contour and gives the report's scores) and, for a
    MetaImage header (.mhd), the pixel data files each names (`cases.case_inputs`)."""
    try:
        return files_sha256(case_inputs(case))
    except OSError as exc:
        raise InputError(f"{exc.filename}: cannot be read ({exc.strerror})") from None


def _earlier_rows(path: Path) -> dict[str, dict[str, str]]:
    """The rows of an earlier run's summary.csv by case id ({} when there is none or it cannot be read)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return {row["case_id"]: row for row in csv.DictReader(handle) if row.get("case_id")}
    except (OSError, csv.Error, UnicodeDecodeError, KeyError):
        return {}


def _why_redo(row: dict[str, str] | None, made_by: dict[str, str], outputs: CaseOutputs) -> str | None:
    """Why a case's existing outputs cannot be kept, or None when the earlier run made them as this one would and
    they are the files it wrote."""
    if row is None:
        return "no record of what made its mask in the summary"
    if row.get("status") == "failed":
        return "it failed before"
    if row.get("status") == IN_PROGRESS:
        return "the run that was writing its outputs was interrupted"
    changed = [key for key in MADE_BY if row.get(key) != made_by[key]]
    if not changed:
        return None if row.get("outputs_sha256") == outputs.sha256() else "its files are not those the run wrote"
    what = {"inputs_sha256": "its input files changed", "checkpoints_sha256": "other weights made it",
            "settings": "other settings made it"}
    details = {"checkpoints_sha256": f" ({row.get('checkpoints_sha256') or 'unrecorded'} then, "
                                     f"{made_by['checkpoints_sha256']} now)",
               "settings": f" ({row.get('settings') or 'unrecorded'} then)"}
    return "; ".join(what[key] + details.get(key, "") for key in changed)


@dataclass
class LoadedCase:
    """A case's volumes as read (by the background reader), or why they could not be."""

    case: Case
    adc: Volume | None = None
    z: Volume | None = None
    inputs_sha256: str = ""
    prepared: Prepared | None = None
    """The network input, when the reader was given a predictor to prepare it for."""
    error: SparsegError | None = None
    seconds: float = 0.0


def load_case(case: Case, predictor: Predictor | None = None) -> LoadedCase:
    """Read a case's images (their checks name a bad file best), hash its input files, and with `predictor`
    check their grids and make the network input (`Predictor.prepare`); an error is kept, not raised."""
    started = time.perf_counter()
    try:
        adc, z = read_image(case.adc), read_image(case.z)
        digest = inputs_sha256(case)
        prepared = None
        if predictor is not None:
            require_same_grid(adc, z)
            prepared = predictor.prepare(adc.array, z.array)
    except SparsegError as exc:
        return LoadedCase(case, error=exc, seconds=time.perf_counter() - started)
    return LoadedCase(case, adc, z, digest, prepared, seconds=time.perf_counter() - started)


def read_ahead(cases: list[Case], predictor: Predictor | None = None, depth: int = 2) -> Iterator[LoadedCase]:
    """`load_case` of each case in order, up to `depth` cases ahead in a background thread, so that reading,
    decompressing and preprocessing the next cases overlaps the network on the current one; `depth` 0 reads
    in turn."""
    if depth == 0:
        yield from (load_case(case, predictor) for case in cases)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sparseg-reader") as reader:
        pending: deque = deque()
        upcoming = iter(cases)
        for case in upcoming:
            pending.append(reader.submit(load_case, case, predictor))
            if len(pending) > depth:
                break
        while pending:
            loaded = pending.popleft().result()
            next_case = next(upcoming, None)
            if next_case is not None:
                pending.append(reader.submit(load_case, next_case, predictor))
            yield loaded


@dataclass
class CaseOutputs:
    """Where one case's outputs go; None for those not asked for."""

    mask: Path
    probabilities: Path | None = None
    overlay: Path | None = None

    def exist(self) -> bool:
        return all(p is None or p.is_file() for p in (self.mask, self.probabilities, self.overlay))

    def sha256(self) -> str:
        """The sha256 (16 hex digits) of the outputs asked for, byte for byte ("" when one is missing)."""
        try:
            return files_sha256(p for p in (self.mask, self.probabilities, self.overlay) if p is not None)
        except OSError:
            return ""

    def remove_others(self, case_id: str, keep: bool = True) -> list[str]:
        """Remove the case's outputs in the folder that this run does not write (another format's mask,
        probabilities or an overlay not asked for), or all of them without `keep`; the names removed. Every
        output of a case is then one run's."""
        mine = {self.mask, self.probabilities, self.overlay} if keep else set()
        removed = []
        for name in case_outputs(case_id):
            path = self.mask.parent / name
            if path not in mine and path.is_file():
                path.unlink()
                removed.append(name)
        return removed


@dataclass
class CaseResult:
    summary: CaseSummary
    overlay_png: bytes | None = None
    scores: CaseRow | None = None


def segment(loaded: LoadedCase, predictor: Predictor, outputs: CaseOutputs, picture: bool = False) -> CaseResult:
    """Segment a loaded case, write its outputs, and (with `picture`, or an overlay path) draw its overlay.
    Where the case has a label, its scores are computed too (the report shows them)."""
    if loaded.error is not None:
        raise loaded.error
    assert loaded.adc is not None and loaded.z is not None
    started = time.perf_counter() - loaded.seconds
    adc, z = loaded.adc, loaded.z
    flags = unusual(adc)
    result = predictor.predict(adc, z, loaded.prepared)
    if outputs.probabilities is not None:
        write_image(result.probabilities.astype(np.float32), adc.geometry, outputs.probabilities)
    write_mask(result.mask, adc.geometry, outputs.mask)
    png, scores, label_flags = _picture_and_scores(loaded.case, adc, result.mask, outputs.overlay, picture)
    summary = _summary(loaded.case.case_id, "ok", result.mask, adc, flags + label_flags,
                       time.perf_counter() - started)
    return CaseResult(summary, png, scores)


def _label(case: Case, adc: Volume) -> tuple[np.ndarray | None, list[str]]:
    """The case's label where it has one on the ADC image's grid; one on another grid is left out, flagged."""
    if case.label is None:
        return None, []
    label, grid = read_mask(case.label)
    differences = grid.differences(adc.geometry)
    if differences:
        log.warning("%s: the label's grid differs from the ADC image's (%s): left out of the overlay and scores",
                    case.label, "; ".join(differences))
        return None, ["label on another grid"]
    return label, []


def _picture_and_scores(case: Case, adc: Volume, mask: np.ndarray, overlay: Path | None,
                        picture: bool) -> tuple[bytes | None, CaseRow | None, list[str]]:
    """The case's overlay PNG (written to `overlay` if given; returned with `picture`), with `picture` its scores
    against its label where it has one, and flags about the label."""
    if overlay is None and not picture:
        return None, None, []
    label, flags = _label(case, adc)
    from sparseg.plots import overlay_png

    png = overlay_png(adc.array, mask, label, adc.geometry.spacing_mm, case.case_id)
    if overlay is not None:
        write_bytes(overlay, png)
    scores = None
    if picture and label is not None:
        scores = score_row(case.case_id, label, mask, adc.geometry, lesion_burden(label, adc.array))
    return (png if picture else None), scores, flags


def predict_case(case: Case, predictor: Predictor, mask_path: Path, probabilities_path: Path | None = None,
                 overlay_path: Path | None = None) -> CaseSummary:
    """Read, segment and write one case (the container job; `sparseg predict` of one case)."""
    return segment(load_case(case), predictor, CaseOutputs(mask_path, probabilities_path, overlay_path)).summary


def _summary(case_id: str, status: str, mask: np.ndarray, adc: Volume, flags: list[str],
             seconds: float = float("nan")) -> CaseSummary:
    """A summary row: lesion volume and burden of `mask` on the ADC image's grid, and the flags."""
    burden = lesion_burden(mask, adc.array)
    flags = [*flags, "empty mask"] if not mask.any() and "no brain" not in flags else flags
    return CaseSummary(case_id=case_id, status=status,
                       lesion_ml=float(mask.sum()) * adc.geometry.voxel_volume_mm3 / 1000.0,
                       burden=burden, burden_group=burden_group(burden), seconds=seconds, flags="; ".join(flags))


def _earlier_result(loaded: LoadedCase, outputs: CaseOutputs, picture: bool) -> CaseResult:
    """The result of a case segmented by an earlier run, from its mask file (and overlay, for the report)."""
    if loaded.error is not None:
        raise loaded.error
    assert loaded.adc is not None
    mask, grid = read_mask(outputs.mask)
    if grid.differences(loaded.adc.geometry):
        raise InputError(f"{outputs.mask}: not on the grid of {loaded.case.adc.name}")
    png, scores, label_flags = _picture_and_scores(loaded.case, loaded.adc, mask, None, picture)
    summary = _summary(loaded.case.case_id, "done earlier", mask, loaded.adc, unusual(loaded.adc) + label_flags)
    return CaseResult(summary, png, scores)


def _log_case(index: int, total: int, result: CaseResult) -> None:
    """One line per case for logs without a terminal (`docker run`, CI, a cluster's job log)."""
    s = result.summary
    if s.status == "failed":
        return  # logged as an error where it failed
    what = "done earlier" if s.status == "done earlier" else f"{s.seconds:.1f} s"
    flags = f"; look: {s.flags}" if s.flags else ""
    log.info("[%d/%d] %s: %.2f mL lesion (%s burden), %s%s", index, total, s.case_id, s.lesion_ml, s.burden_group,
             what, flags)


def batch_outputs(cases: list[Case], out: Path, part: int = 0, parts: int = 1, report: bool = False,
                  summary_name: str = BATCH_SUMMARY) -> list[Path]:
    """Every file `predict_batch` may write, or remove as stale, in `out` for `cases` (one part's)."""
    folder = [out / part_name(summary_name, part, parts), *([out / part_name(BATCH_REPORT, part, parts)] if report
                                                            else [])]
    return [*folder, *(out / name for case in cases for name in case_outputs(case.case_id))]


def predict_batch(cases: list[Case], out: Path, predictor: Predictor, save_probabilities: bool = False,
                  overlays: bool = False, overwrite: bool = False, mask_format: str = "auto",
                  report: bool = False, part: int = 0, parts: int = 1, read_depth: int = 2,
                  summary_name: str = BATCH_SUMMARY) -> list[CaseSummary]:
    """Segment `cases` (part `part` of `parts` of them); a failing case is reported and the others go on.

    Per case `<case_id>_lesion<suffix>` (`mask_format`: the ADC file's format, or .mha or .nii.gz) and
    optionally `<case_id>_probabilities<suffix>` and `<case_id>_overlay.png` (the slices with the most
    lesion; true contours too where labels exist); `report` writes report.html (`sparseg.report`).
    The next cases are read and preprocessed in the background, `read_depth` ahead, while the network runs.
    Every file is written under a temporary name and renamed, so an interrupted
    batch leaves only complete files (and temporary ones, removed by the next
    run). summary.csv is rewritten after each case and records what made each
    mask (`MADE_BY`: the inputs' hash, the checkpoints' hashes, the settings). A
    rerun keeps a case's outputs only when they all exist and that record
    matches (unless `overwrite`): it continues where an interrupted run
    stopped, and redoes, saying why, a case whose inputs, weights or settings
    changed. With `parts` > 1 the summary and report are named by part, so N
    machines can share one output folder; `summary_name` names the summary
    otherwise (cross-validation keeps one per fold in one folder).
    """
    cases = batch_part(cases, part, parts)
    summary_path = out / part_name(summary_name, part, parts)
    mine = batch_outputs(cases, out, part, parts, True, summary_name)
    require_apart(mine, [path for case in cases for path in case_inputs(case)])
    # An earlier QA page describes an earlier run (a page is written at the end, or not at all), and with
    # `overwrite` every case's outputs go: a run stopped on the way leaves only its own.
    remove_stale([out / part_name(BATCH_REPORT, part, parts),
                  *(out / name for case in cases for name in case_outputs(case.case_id) if overwrite)])
    out.mkdir(parents=True, exist_ok=True)
    names = {path.name for path in mine}
    for stale in out.glob(f"{PARTIAL_PREFIX}*"):  # an interrupted run's temporaries of these outputs, no others'
        temporary = TEMPORARY_NAME.fullmatch(stale.name)
        if temporary is not None and temporary.group(1) in names:
            with contextlib.suppress(OSError):
                stale.unlink()
    earlier = {} if overwrite else _earlier_rows(summary_path)
    made_by = predictor.made_by()
    results: list[CaseResult] = []
    terminal = sys.stderr.isatty()
    bar = tqdm(total=len(cases), desc="cases", unit="case", disable=not terminal)

    def record(upcoming: list[Case], current: CaseSummary | None = None) -> None:
        """summary.csv: the cases done, the one being written (`current`), and the earlier run's rows of those
        still to come (their files are still on disk)."""
        rows = [asdict(r.summary) for r in results] + ([asdict(current)] if current is not None else [])
        rows += [{name: row.get(name, "") for name in SUMMARY_COLUMNS}
                 for c in upcoming if (row := earlier.get(c.case_id)) is not None]
        write_csv(summary_path, rows, SUMMARY_COLUMNS)

    if not cases:
        record([])  # an empty part: its summary says so, and no earlier run's rows stay in it
    for index, loaded in enumerate(read_ahead(cases, predictor, read_depth)):
        case, upcoming = loaded.case, cases[index + 1 :]
        suffix = mask_suffix(case.adc, mask_format)
        outputs = CaseOutputs(out / prediction_name(case.case_id, suffix),
                              out / probabilities_name(case.case_id, suffix) if save_probabilities else None,
                              out / overlay_name(case.case_id) if overlays else None)
        key = {"inputs_sha256": loaded.inputs_sha256, **made_by}
        try:
            result = None
            if not overwrite and loaded.error is None and outputs.exist():
                reason = _why_redo(earlier.get(case.case_id), key, outputs)
                if reason is None:
                    try:
                        result = _earlier_result(loaded, outputs, report)
                    except InputError as exc:
                        log.info("%s: segmenting again: its earlier output cannot be used (%s)", case.case_id, exc)
                else:
                    log.info("%s: segmenting again: %s", case.case_id, reason)
            if result is None:
                # Recorded as in progress, with what is about to make them, before any output is replaced: a run
                # killed from here on leaves a row that a rerun redoes, never a stale mask under a new key.
                record(upcoming, CaseSummary(case_id=case.case_id, status=IN_PROGRESS, **key))
                outputs.remove_others(case.case_id)
                result = segment(loaded, predictor, outputs, picture=report)
            result.summary = replace(result.summary, mask=outputs.mask.name, mask_sha256=files_sha256([outputs.mask]),
                                     outputs_sha256=outputs.sha256(), **key)
        except SparsegError as exc:
            log.error("%s: %s", case.case_id, exc)
            result = CaseResult(CaseSummary(case_id=case.case_id, status="failed", error=str(exc)))
            stale = outputs.remove_others(case.case_id, keep=False)
            if stale:  # an earlier run's outputs, from inputs that no longer give them
                log.warning("%s: removed its earlier outputs (%s): they were not made from these inputs",
                            case.case_id, ", ".join(stale))
        results.append(result)
        bar.update()
        if not terminal:
            _log_case(index + 1, len(cases), result)
        record(upcoming)
    bar.close()
    if report:
        path = _write_batch_report(out / part_name(BATCH_REPORT, part, parts), results, predictor)
        log.info("QA report: %s", path)
    return [r.summary for r in results]


def _write_batch_report(path: Path, results: list[CaseResult], predictor: Predictor) -> Path:
    from sparseg.report import ReportCase, write_report

    cases = [ReportCase(case_id=r.summary.case_id, status=r.summary.status, lesion_ml=r.summary.lesion_ml,
                        burden_group=r.summary.burden_group, seconds=r.summary.seconds,
                        flags=[f for f in r.summary.flags.split("; ") if f] + (["failed"] if r.summary.error else []),
                        error=r.summary.error, overlay_png=r.overlay_png, scores=r.scores) for r in results]
    context = [f"device: {predictor.runtime.describe()}",
               *(f"checkpoint: {c.describe()}, network {n.describe()}"
                 for c, n in zip(predictor.checkpoints, predictor.networks, strict=True)),
               f"settings: {predictor.made_by()['settings']}; threshold {predictor.config.threshold:g}"]
    warning = synthetic_warning(predictor)
    return write_report(path, cases, context, [warning.upper()] if warning else [])


def run_container_job(case: Case, output_dir: Path, predictor: Predictor) -> Path:
    """The grand-challenge job: the one /input case -> /output/images/hie-lesion-segmentation/overlay.mha."""
    summary = predict_case(case, predictor, output_dir / OUTPUT_MASK)
    log.info("%s: %.2f mL of lesion (%s burden) in %.2f s; peak memory %.0f MiB", case.case_id,
             summary.lesion_ml, summary.burden_group, summary.seconds, peak_rss_mib())
    return output_dir / OUTPUT_MASK


def load_predictor(weights: list[Path] | None, device: str = "auto", **options) -> Predictor:
    """The Predictor of `--weights` (files or folders; default: an uploaded model, else the baked weights).

    Logs the device and precision, and each checkpoint used, so a job that fell back to other weights
    than intended says so.
    """
    predictor = Predictor.load(resolve_weights(weights), device, **options)
    log.info("device: %s", predictor.runtime.describe())
    for checkpoint, network in zip(predictor.checkpoints, predictor.networks, strict=True):
        log.info("checkpoint: %s, network %s", checkpoint.describe(), network.describe())
    warning = synthetic_warning(predictor)
    if warning:
        log.warning("%s", warning)
    return predictor
