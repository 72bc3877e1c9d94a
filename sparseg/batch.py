"""Batch mode (`sparseg predict`): any number of cases in either layout, the model loaded once.

Writes `<case_id>_lesion.mha` (or the ADC file's format) per case, optionally
its probabilities and overlay, a summary CSV recording what made each mask
(`sparseg.resume`), and optionally the QA page (`sparseg.report`); the names
are in `sparseg.cases`. The next cases are read in the background
(`sparseg.reader`) while each is segmented (`sparseg.segment`); a failing case
is reported and the others go on.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import asdict, replace
from pathlib import Path

from tqdm import tqdm

from sparseg.cases import Case, batch_part, case_inputs, data_inputs, find_any_cases
from sparseg.errors import InputError, SparsegError
from sparseg.evaluation import CaseRow, evaluate_case
from sparseg.inference import Predictor
from sparseg.io import PARTIAL_PREFIX, PNG_END, PNG_SIGNATURE, TEMPORARY_NAME, write_csv
from sparseg.outputs import (
    BATCH_REPORT,
    BATCH_SUMMARY,
    FINISHED,
    case_outputs,
    folder_summaries,
    mask_suffix,
    overlay_name,
    part_name,
    prediction_name,
    probabilities_name,
    recorded_mask,
    recorded_outputs_problem,
    recorded_rows,
    zadc_name,
)
from sparseg.paths import file_problem, files_sha256, remove_stale, require_apart
from sparseg.plausibility import synthetic_warning
from sparseg.reader import LoadedCase, load_case, read_ahead
from sparseg.report import ReportCase, write_report
from sparseg.resume import IN_PROGRESS, SUMMARY_COLUMNS, CaseSummary, earlier_rows, why_redo
from sparseg.segment import CaseOutputs, CaseResult, earlier_result, segment
from sparseg.zmap import ZmapMaker

log = logging.getLogger(__name__)


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
                  summary_name: str = BATCH_SUMMARY, zmaker: ZmapMaker | None = None,
                  save_zadc: bool = False) -> list[CaseSummary]:
    """Segment `cases` (part `part` of `parts` of them); a failing case is reported and the others go on.

    Per case `<case_id>_lesion<suffix>` (`mask_format`: the ADC file's format, or .mha or .nii.gz) and
    optionally `<case_id>_probabilities<suffix>` and `<case_id>_overlay.png` (the slices with the most
    lesion; true contours too where labels exist); `report` writes report.html (`sparseg.report`), which shows
    the overlays, so it implies `overlays`. A case without a Z_ADC gets one from `zmaker` (an atlas), kept as
    `<case_id>_zadc<suffix>` with `save_zadc`. The next cases are read, their Z_ADC computed and preprocessed in
    the background, `read_depth` ahead, while the network runs.
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
    overlays = overlays or report
    cases = batch_part(cases, part, parts)
    summary_path = out / part_name(summary_name, part, parts)
    _clear_for_this_run(cases, out, part, parts, overwrite, summary_name)
    earlier = {} if overwrite else earlier_rows(summary_path)
    made_by = predictor.made_by()
    outputs_of = {case.case_id: _case_outputs(case, out, mask_format, save_probabilities, overlays, save_zadc)
                  for case in cases}
    if not overwrite:
        _require_own_zadc(outputs_of, earlier)

    def key_of(case: Case, digest: str) -> dict[str, str]:
        """What makes the case's outputs (the resume key): its inputs, the checkpoints, the settings, and the atlas
        where its Z_ADC is computed."""
        atlas = zmaker.key() if zmaker is not None and case.z is None else ""
        return {"inputs_sha256": digest, **made_by, "atlas": atlas}

    def keepable(case: Case, digest: str) -> bool:
        """Whether an earlier run's outputs of the case may be kept: the reader then computes no Z_ADC for it."""
        outputs = outputs_of[case.case_id]
        return not overwrite and outputs.exist() and why_redo(earlier.get(case.case_id), key_of(case, digest),
                                                              outputs.sha256) is None

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
    for index, loaded in enumerate(read_ahead(cases, predictor, read_depth, zmaker, keepable)):
        case, upcoming = loaded.case, cases[index + 1 :]
        outputs = outputs_of[case.case_id]
        key = key_of(case, loaded.inputs_sha256)
        try:
            result = None if overwrite else _kept(loaded, outputs, earlier.get(case.case_id), key, report)
            if result is None:
                if loaded.error is None and loaded.z is None:  # read for keeping, but it is to be segmented
                    loaded = load_case(case, predictor, zmaker)
                    key = key_of(case, loaded.inputs_sha256)
                # Recorded as in progress, with what is about to make them, before any output is replaced: a run
                # killed from here on leaves a row that a rerun redoes, never a stale mask under a new key.
                record(upcoming, CaseSummary(case_id=case.case_id, status=IN_PROGRESS, **key))
                outputs.remove_others(case.case_id)
                result = segment(loaded, predictor, outputs, picture=report)
            result.summary = replace(result.summary, mask=outputs.mask.name, mask_sha256=files_sha256([outputs.mask]),
                                     outputs_sha256=outputs.sha256(), **key)
        except SparsegError as exc:
            result = _failed(case.case_id, exc, outputs)
        results.append(result)
        bar.update()
        if not terminal:
            _log_case(index + 1, len(cases), result)
        record(upcoming)
    bar.close()
    if report:
        path = _write_batch_report(out / part_name(BATCH_REPORT, part, parts), results, predictor, zmaker)
        log.info("QA report: %s", path)
    return [r.summary for r in results]


def _require_own_zadc(outputs_of: dict[str, CaseOutputs], earlier: dict[str, dict[str, str]]) -> None:
    """Refuse, before any work, to replace a Z_ADC file (`--save-zadc`) that no earlier run into this folder wrote
    (its summary records no Z_ADC computed for the case): it may be a given Z_ADC map lying beside the ADC."""
    foreign = [outputs.zadc for case_id, outputs in outputs_of.items() if outputs.zadc is not None
               and outputs.zadc.exists() and not (earlier.get(case_id) or {}).get("atlas")]
    if foreign:
        raise InputError(f"{foreign[0]}: a Z_ADC file is there that no run into this folder computed (its summary "
                         f"records none{f'; {len(foreign) - 1} more' if len(foreign) > 1 else ''}): a given Z_ADC? "
                         "--save-zadc would replace it; choose another --out, or move it")


def _clear_for_this_run(cases: list[Case], out: Path, part: int, parts: int, overwrite: bool,
                        summary_name: str) -> None:
    """Check that no output of the run is one of its inputs, then remove from `out` what an earlier run left that
    this one must not be taken for: its QA page, with `overwrite` every case's outputs, and an interrupted run's
    temporaries of these outputs (no others')."""
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


def _case_outputs(case: Case, out: Path, mask_format: str, save_probabilities: bool, overlays: bool,
                  save_zadc: bool = False) -> CaseOutputs:
    """Where a case's outputs go in `out`: its mask in `mask_format`, its probabilities, overlay and computed
    Z_ADC (a case with no Z_ADC of its own) if asked for."""
    suffix = mask_suffix(case.adc, mask_format)
    return CaseOutputs(out / prediction_name(case.case_id, suffix),
                       out / probabilities_name(case.case_id, suffix) if save_probabilities else None,
                       out / overlay_name(case.case_id) if overlays else None,
                       out / zadc_name(case.case_id, suffix) if save_zadc and case.z is None else None)


def _kept(loaded: LoadedCase, outputs: CaseOutputs, row: dict[str, str] | None, key: dict[str, str],
          picture: bool) -> CaseResult | None:
    """The result of a case an earlier run segmented, when its outputs exist and can be kept (`row`, its earlier
    summary row, says they were made as `key` would make them); None, logged with why, when it is to be segmented."""
    if loaded.error is not None or not outputs.exist():
        return None
    reason = why_redo(row, key, outputs.sha256)
    if reason is not None:
        log.info("%s: segmenting again: %s", loaded.case.case_id, reason)
        return None
    try:
        return earlier_result(loaded, outputs, picture, _recorded(row))
    except InputError as exc:
        log.info("%s: segmenting again: its earlier output cannot be used (%s)", loaded.case.case_id, exc)
        return None


def _recorded(row: dict[str, str]) -> CaseSummary:
    """A summary.csv row as a `CaseSummary` (cells it lacks empty, numbers it cannot read NaN)."""
    return CaseSummary(**{name: _typed(name, row.get(name) or "") for name in SUMMARY_COLUMNS})


def _number(text: str | None) -> float:
    """A number an earlier summary.csv recorded; NaN for none or an unreadable one."""
    try:
        return float(text) if text else float("nan")
    except ValueError:
        return float("nan")


def _failed(case_id: str, error: SparsegError, outputs: CaseOutputs) -> CaseResult:
    """A failed case's result; its outputs an earlier run left are removed (they were not made from these inputs,
    which no longer give them)."""
    log.error("%s: %s", case_id, error)
    result = CaseResult(CaseSummary(case_id=case_id, status="failed", error=str(error)))
    stale = outputs.remove_others(case_id, keep=False)
    if stale:  # an earlier run's outputs, from inputs that no longer give them
        log.warning("%s: removed its earlier outputs (%s): they were not made from these inputs",
                    case_id, ", ".join(stale))
    return result


MERGED_LESIONS_FLAG = 3
"""A case whose predicted lesions each merge this many true lesions or more, together, is flagged: its lesion-wise
F1 counts them all found (a mask of the whole brain scores F1 1)."""


def _report_case(summary: CaseSummary, overlay: Path | None, png: bytes | None, scores: CaseRow | None,
                 more_flags: list[str] | None = None) -> ReportCase:
    """What the QA page shows of one case: its summary row, its overlay file beside the page (and a thumbnail of
    it; a PNG that does not decode is flagged, not shown), its scores against its label, and `more_flags`."""
    from sparseg.plots import thumbnail_png

    flags = [f for f in summary.flags.split("; ") if f] + (["failed"] if summary.error else []) + (more_flags or [])
    if scores is not None and scores.lesions_merged >= MERGED_LESIONS_FLAG:
        flags.append(f"{scores.lesions_merged} true lesions merged into fewer predicted ones: lesion-wise F1 "
                     "flatters this mask")
    thumbnail = None
    if png:
        try:
            thumbnail = thumbnail_png(png)
        except (OSError, ValueError, SyntaxError) as exc:  # what Pillow raises for a damaged PNG
            flags.append(f"{overlay.name if overlay else 'the overlay'} does not decode ({type(exc).__name__}): not "
                         "shown")
            png = None
    return ReportCase(case_id=summary.case_id, status=summary.status, lesion_ml=summary.lesion_ml,
                      burden_group=summary.burden_group, seconds=summary.seconds, flags=flags,
                      error=summary.error, overlay=overlay.name if overlay is not None and png else "",
                      thumbnail_png=thumbnail, scores=scores, agreement=summary.member_agreement)


def _write_batch_report(path: Path, results: list[CaseResult], predictor: Predictor,
                        zmaker: ZmapMaker | None = None) -> Path:
    cases = [_report_case(r.summary, path.parent / overlay_name(r.summary.case_id), r.overlay_png, r.scores)
             for r in results]
    context = [f"device: {predictor.runtime.describe()}",
               *(f"checkpoint: {c.describe()}, network {n.describe()}"
                 for c, n in zip(predictor.checkpoints, predictor.networks, strict=True)),
               f"settings: {predictor.made_by()['settings']}; threshold {predictor.config.threshold:g}",
               *([f"Z_ADC computed with the atlas {zmaker.atlas.describe()}; {zmaker.config.key()}; the dashed "
                  "yellow outline is the atlas's brain registered onto the case"] if zmaker is not None else [])]
    warning = synthetic_warning(predictor)
    return write_report(path, cases, context, [warning.upper()] if warning else [])


def folder_report(out: Path, data: Path | None = None) -> tuple[Path, int]:
    """`report.html` of an output folder as it is: every summary in it (`summary.csv`, each part's, a case's row
    taken from the newest file naming it; a damaged summary is an InputError naming its line), each case's overlay
    file, and with `data` (its labelled cases) the scores of each mask its run wrote. What the page shows is what
    the run wrote: a mask that is not the file its summary records (another file, changed since) is flagged and
    not scored, a label that cannot be scored or an overlay that is not a PNG is flagged, and the page is built.
    The folder's earlier page is removed first. Returns the page and the number of cases."""
    out = Path(out)
    summaries = folder_summaries(out)
    if not summaries:
        raise InputError(f"{out}: no {BATCH_SUMMARY} or summary_part*.csv: not an output folder of sparseg predict")
    page = out / BATCH_REPORT
    labelled = {c.case_id: c for c in find_any_cases(data) if c.label is not None} if data is not None else {}
    require_apart([page], [*summaries, *(data_inputs(data, list(labelled.values())) if data is not None else [])])
    remove_stale([page])  # a page that fails to be made leaves no earlier one to look like it
    rows = recorded_rows(out)
    cases = []
    for case_id in sorted(rows):
        row = rows[case_id]
        summary, flags = _recorded(row), []
        overlay = out / overlay_name(case_id)
        png, problem = _overlay_file(overlay)
        if png is not None and row.get("status") in FINISHED:
            changed = recorded_outputs_problem(out, row)
            if changed:
                png, problem = None, f"{overlay.name} not shown: {changed}"
        flags += [problem] if problem else []
        scores = None
        if case_id in labelled and row.get("status") in FINISHED:
            mask, why = recorded_mask(out, row)
            try:
                if mask is None:
                    raise InputError(f"not scored: {why}")
                scores = evaluate_case(labelled[case_id], mask)
            except InputError as exc:
                log.warning("%s: %s", case_id, exc)
                flags.append(f"not scored: {exc}" if mask is not None else str(exc))
        cases.append(_report_case(summary, overlay, png, scores, flags))
    context = [f"merged from {', '.join(p.name for p in summaries)} in {out}"
               + (f"; scored against the labels of {data}" if data is not None else "")]
    return write_report(page, cases, context, []), len(cases)


def _overlay_file(path: Path) -> tuple[bytes | None, str]:
    """An overlay PNG beside the page, and "", or None and why it is not shown ("" when there is none)."""
    if file_problem(path) == "does not exist":
        return None, ""
    try:
        png = path.read_bytes()
    except OSError as exc:
        return None, f"{path.name} cannot be read ({exc.strerror or exc})"
    if not (png.startswith(PNG_SIGNATURE) and png.endswith(PNG_END)):
        return None, f"{path.name} is not a whole PNG: not shown"
    return png, ""


def _typed(name: str, text: str) -> str | float:
    """A summary.csv cell as its `CaseSummary` field's type."""
    if isinstance(CaseSummary.__dataclass_fields__[name].default, float):
        return _number(text)
    return text
