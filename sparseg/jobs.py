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

import csv
import hashlib
import logging
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sparseg.cases import (
    BATCH_SUMMARY,
    OUTPUT_MASK,
    Case,
    find_any_cases,
    find_input_case,
    overlay_name,
    prediction_name,
    probabilities_name,
)
from sparseg.config import burden_group
from sparseg.environment import peak_rss_mib
from sparseg.errors import InputError, SparsegError
from sparseg.hardware import describe, resolve_device
from sparseg.inference import Predictor
from sparseg.io import PARTIAL_PREFIX, Volume, read_image, read_mask, write_csv, write_image, write_mask
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


def warn_if_unusual(adc: Volume) -> None:
    """Log what makes an ADC volume unusual enough that the mask may surprise: no brain, the wrong unit or
    scale, or a sign flip."""
    brain = adc.array[adc.array != 0]
    if brain.size == 0:
        log.warning("%s: ADC is all zeros (no brain): the mask is empty", adc.path)
        return
    largest, negative = float(np.abs(brain).max()), float(np.mean(brain < 0))
    if largest < ADC_IN_MM2_PER_S_BELOW:
        log.warning("%s: ADC values are all below %g, as if in mm^2/s; SPARSeg expects 1e-6 mm^2/s "
                    "(multiply by 1e6): THIS MASK IS NOT MEANINGFUL", adc.path, ADC_IN_MM2_PER_S_BELOW)
    elif largest > ADC_PLAUSIBLE_MAX:
        log.warning("%s: ADC values reach %.3g, far above free water's ~3000 x 1e-6 mm^2/s: another map or "
                    "scale? THIS MASK IS NOT MEANINGFUL", adc.path, largest)
    if negative > 0.5:
        log.warning("%s: ADC is negative in %.0f%% of the brain's voxels; ADC cannot be negative (a sign flip?): "
                    "THIS MASK IS NOT MEANINGFUL", adc.path, 100 * negative)


def warn_if_synthetic(predictor: Predictor) -> None:
    for checkpoint in predictor.checkpoints:
        if checkpoint.synthetic:
            log.warning("checkpoint %s", checkpoint.metadata.get("notice", "was trained on synthetic data"))


@dataclass
class CaseSummary:
    """A row of a batch's summary.csv: the result, and what made it (the key a rerun checks)."""

    case_id: str
    status: str
    lesion_ml: float = float("nan")
    burden: float = float("nan")
    burden_group: str = ""
    seconds: float = float("nan")
    error: str = ""
    inputs_sha256: str = ""
    """The sha256 (first 16 hex digits) of the ADC and Z_ADC files' bytes."""
    checkpoints_sha256: str = ""
    settings: str = ""


SUMMARY_COLUMNS = tuple(CaseSummary.__dataclass_fields__)
MADE_BY = ("inputs_sha256", "checkpoints_sha256", "settings")
"""The columns of summary.csv that say what made a mask; a rerun keeps a mask only when all three match."""


def inputs_sha256(case: Case) -> str:
    """The sha256 (16 hex digits) of a case's ADC and Z_ADC files, byte for byte."""
    digest = hashlib.sha256()
    for path in (case.adc, case.z):
        try:
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        except OSError as exc:
            raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _earlier_rows(path: Path) -> dict[str, dict[str, str]]:
    """The rows of an earlier run's summary.csv by case id ({} when there is none or it cannot be read)."""
    try:
        with open(path, newline="") as handle:
            return {row["case_id"]: row for row in csv.DictReader(handle) if row.get("case_id")}
    except (OSError, csv.Error, UnicodeDecodeError, KeyError):
        return {}


def _why_redo(row: dict[str, str] | None, made_by: dict[str, str]) -> str | None:
    """Why a case's existing mask cannot be kept, or None when the earlier run made it as this one would."""
    if row is None:
        return f"no record of what made its mask in {BATCH_SUMMARY}"
    if row.get("status") == "failed":
        return "it failed before"
    changed = [key for key in MADE_BY if row.get(key) != made_by[key]]
    if not changed:
        return None
    what = {"inputs_sha256": "its input files changed", "checkpoints_sha256": "other weights made it",
            "settings": "other settings made it"}
    details = {"checkpoints_sha256": f" ({row.get('checkpoints_sha256') or 'unrecorded'} then, "
                                     f"{made_by['checkpoints_sha256']} now)",
               "settings": f" ({row.get('settings') or 'unrecorded'} then)"}
    return "; ".join(what[key] + details.get(key, "") for key in changed)


def predict_case(case: Case, predictor: Predictor, mask_path: Path, probabilities_path: Path | None = None,
                 overlay_path: Path | None = None) -> CaseSummary:
    started = time.perf_counter()
    adc, z = read_image(case.adc), read_image(case.z)
    warn_if_unusual(adc)
    result = predictor.predict(adc, z)
    if probabilities_path is not None:
        write_image(result.probabilities.astype(np.float32), adc.geometry, probabilities_path)
    write_mask(result.mask, adc.geometry, mask_path)
    if overlay_path is not None:
        from sparseg.plots import plot_overlay

        label = read_mask(case.label)[0] if case.label is not None else None
        plot_overlay(adc.array, result.mask, label, adc.geometry.spacing_mm, case.case_id, overlay_path)
    return _summary(case.case_id, "ok", result.mask, adc, time.perf_counter() - started)


def _summary(case_id: str, status: str, mask: np.ndarray, adc: Volume, seconds: float = float("nan")) -> CaseSummary:
    """A summary row: lesion volume and burden of `mask` on the ADC image's grid."""
    burden = lesion_burden(mask, adc.array)
    return CaseSummary(case_id=case_id, status=status,
                       lesion_ml=float(mask.sum()) * adc.geometry.voxel_volume_mm3 / 1000.0,
                       burden=burden, burden_group=burden_group(burden), seconds=seconds)


def _summary_of_existing(case: Case, mask_path: Path) -> CaseSummary:
    """The summary row of a case segmented by an earlier, interrupted run (from its mask file)."""
    return _summary(case.case_id, "done earlier", read_mask(mask_path)[0], read_image(case.adc))


def predict_batch(data: Path, out: Path, predictor: Predictor, save_probabilities: bool = False,
                  overlays: bool = False, overwrite: bool = False) -> list[CaseSummary]:
    """Segment every case of `data`; a failing case is reported and the others go on.

    Optional per case: `<case_id>_probabilities.mha`, and `<case_id>_overlay.png`
    (the slices with the most lesion; true contours too where labels exist).
    Every file is written under a temporary name and renamed, so an interrupted
    batch leaves only complete files (and temporary ones, removed by the next
    run). summary.csv is rewritten after each case and records what made each
    mask (`MADE_BY`: the inputs' hash, the checkpoints' hashes, the settings). A
    rerun keeps a case's outputs only when they all exist and that record
    matches (unless `overwrite`): it continues where an interrupted run
    stopped, and redoes, saying why, a case whose inputs, weights or settings
    changed.
    """
    cases = find_any_cases(data)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{PARTIAL_PREFIX}*"):
        stale.unlink()
    summary_path = out / BATCH_SUMMARY
    earlier = {} if overwrite else _earlier_rows(summary_path)
    made_by = predictor.made_by()
    summaries: list[CaseSummary] = []
    for index, case in enumerate(tqdm(cases, desc="cases", unit="case", disable=not sys.stderr.isatty())):
        mask = out / prediction_name(case.case_id)
        probabilities = out / probabilities_name(case.case_id) if save_probabilities else None
        overlay = out / overlay_name(case.case_id) if overlays else None
        try:
            key = {"inputs_sha256": inputs_sha256(case), **made_by}
            summary = None
            if not overwrite and all(p is None or p.is_file() for p in (mask, probabilities, overlay)):
                reason = _why_redo(earlier.get(case.case_id), key)
                if reason is None:
                    try:
                        summary = _summary_of_existing(case, mask)
                    except InputError as exc:
                        log.info("%s: segmenting again: its earlier output cannot be read (%s)", case.case_id, exc)
                else:
                    log.info("%s: segmenting again: %s", case.case_id, reason)
            summary = summary or predict_case(case, predictor, mask, probabilities, overlay)
            summaries.append(replace(summary, **key))
        except SparsegError as exc:
            log.error("%s: %s", case.case_id, exc)
            summaries.append(CaseSummary(case_id=case.case_id, status="failed", error=str(exc)))
        not_yet = [{name: row.get(name, "") for name in SUMMARY_COLUMNS}  # still on disk, from the earlier run
                   for c in cases[index + 1 :] if (row := earlier.get(c.case_id)) is not None]
        write_csv(summary_path, [asdict(s) for s in summaries] + not_yet)
    return summaries


def run_container_job(input_dir: Path, output_dir: Path, predictor: Predictor) -> Path:
    """The grand-challenge job: the one /input case -> /output/images/hie-lesion-segmentation/overlay.mha."""
    case = find_input_case(input_dir)
    summary = predict_case(case, predictor, output_dir / OUTPUT_MASK)
    log.info("%s: %.2f mL of lesion (%s burden) in %.2f s; peak memory %.0f MiB", case.case_id,
             summary.lesion_ml, summary.burden_group, summary.seconds, peak_rss_mib())
    return output_dir / OUTPUT_MASK


def load_predictor(weights: list[Path] | None, device: str = "auto", **options) -> Predictor:
    """The Predictor of `--weights` (files or folders; default: an uploaded model, else the baked weights).

    Logs the device and precision, and each checkpoint used, so a job that fell back to other weights
    than intended says so.
    """
    predictor = Predictor.load(resolve_weights(weights), resolve_device(device), **options)
    log.info("device: %s", describe(predictor.device, predictor.inference.precision))
    for checkpoint in predictor.checkpoints:
        log.info("checkpoint: %s", checkpoint.describe())
    warn_if_synthetic(predictor)
    return predictor
