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

import logging
import sys
import time
from dataclasses import asdict, dataclass
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


def warn_if_unusual(adc: Volume) -> None:
    """Log what makes an ADC volume unusual enough that the mask may surprise: no brain, or the wrong unit."""
    brain = adc.array[adc.array != 0]
    if brain.size == 0:
        log.warning("%s: ADC is all zeros (no brain): the mask is empty", adc.path)
    elif float(np.abs(brain).max()) < ADC_IN_MM2_PER_S_BELOW:
        log.warning("%s: ADC values are all below %g, as if in mm^2/s; SPARSeg expects 1e-6 mm^2/s "
                    "(multiply by 1e6): THIS MASK IS NOT MEANINGFUL", adc.path, ADC_IN_MM2_PER_S_BELOW)


def warn_if_synthetic(predictor: Predictor) -> None:
    for checkpoint in predictor.checkpoints:
        if checkpoint.synthetic:
            log.warning("checkpoint %s", checkpoint.metadata.get("notice", "was trained on synthetic data"))


@dataclass
class CaseSummary:
    case_id: str
    status: str
    lesion_ml: float = float("nan")
    burden: float = float("nan")
    burden_group: str = ""
    seconds: float = float("nan")
    error: str = ""


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
    run). Cases whose outputs all exist are not redone unless `overwrite`: a
    rerun continues where an interrupted one stopped.
    """
    cases = find_any_cases(data)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{PARTIAL_PREFIX}*"):
        stale.unlink()
    summaries = []
    for case in tqdm(cases, desc="cases", unit="case", disable=not sys.stderr.isatty()):
        mask = out / prediction_name(case.case_id)
        probabilities = out / probabilities_name(case.case_id) if save_probabilities else None
        overlay = out / overlay_name(case.case_id) if overlays else None
        try:
            if not overwrite and all(p is None or p.is_file() for p in (mask, probabilities, overlay)):
                summaries.append(_summary_of_existing(case, mask))
                continue
            summaries.append(predict_case(case, predictor, mask, probabilities, overlay))
        except SparsegError as exc:
            log.error("%s: %s", case.case_id, exc)
            summaries.append(CaseSummary(case_id=case.case_id, status="failed", error=str(exc)))
    write_csv(out / BATCH_SUMMARY, [asdict(s) for s in summaries])
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
