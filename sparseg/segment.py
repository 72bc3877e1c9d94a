"""One case segmented: its mask (and probabilities) written on the ADC image's grid, its overlay drawn, its
scores against its label where it has one, and its summary row.

`segment` takes a case as the background reader loaded it (`sparseg.reader`,
which computed its Z_ADC from an atlas where it had none) and hands its
volumes to `sparseg.inference.Predictor`, which does the segmenting;
`predict_case` reads and segments one case (the container job, `sparseg
predict` of one case). `earlier_result` is the same result of a case
an earlier run segmented, read back from its mask (a batch's rerun).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sparseg.cases import Case
from sparseg.config import MEMBER_AGREEMENT_FLAG, burden_group
from sparseg.errors import InputError
from sparseg.evaluation import CaseRow, score_row
from sparseg.inference import Predictor
from sparseg.io import Volume, read_mask, write_bytes, write_image, write_mask
from sparseg.metrics import lesion_burden
from sparseg.outputs import case_outputs
from sparseg.paths import files_sha256
from sparseg.plausibility import spills_out, unusual
from sparseg.reader import LoadedCase, load_case
from sparseg.resume import CaseSummary
from sparseg.zmap import FLAG_PREFIXES as ATLAS_FLAG_PREFIXES
from sparseg.zmap import ZmapMaker

log = logging.getLogger(__name__)


@dataclass
class CaseOutputs:
    """Where one case's outputs go; None for those not asked for."""

    mask: Path
    probabilities: Path | None = None
    overlay: Path | None = None
    zadc: Path | None = None
    """The computed Z_ADC (`--save-zadc`)."""

    @property
    def paths(self) -> list[Path]:
        """The outputs asked for."""
        return [p for p in (self.mask, self.probabilities, self.overlay, self.zadc) if p is not None]

    def exist(self) -> bool:
        return all(p.is_file() for p in self.paths)

    def sha256(self) -> str:
        """The sha256 (16 hex digits) of the outputs asked for, byte for byte ("" when one is missing)."""
        try:
            return files_sha256(self.paths)
        except OSError:
            return ""

    def remove_others(self, case_id: str, keep: bool = True) -> list[str]:
        """Remove the case's outputs in the folder that this run does not write (another format's mask,
        probabilities or an overlay not asked for), or all of them without `keep`; the names removed. Every
        output of a case is then one run's."""
        mine = set(self.paths) if keep else set()
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
    adc, z, zmap = loaded.adc, loaded.z, loaded.zmap
    flags = unusual(adc) + (zmap.flags if zmap is not None else [])
    result = predictor.predict(adc, z, loaded.prepared)
    if outputs.zadc is not None:
        write_image(z.array.astype(np.float32), adc.geometry, outputs.zadc)
    if outputs.probabilities is not None:
        write_image(result.probabilities.astype(np.float32), adc.geometry, outputs.probabilities)
    write_mask(result.mask, adc.geometry, outputs.mask)
    outline = zmap.atlas_brain if zmap is not None else None
    png, scores, label_flags = _picture_and_scores(loaded.case, adc, result.mask, outputs.overlay, picture, outline)
    summary = _summary(loaded.case.case_id, "ok", result.mask, adc, flags + label_flags,
                       time.perf_counter() - started, result.member_agreement)
    if zmap is not None:
        summary = replace(summary, atlas_overlap=zmap.overlap, atlas_similarity=zmap.similarity,
                          adc_scale=zmap.scale)
    return CaseResult(summary, png, scores)


def _label(case: Case, adc: Volume) -> tuple[np.ndarray | None, list[str]]:
    """The case's label where it has one on the ADC image's grid; one that cannot be scored (not binary, not
    readable) or lies on another grid is left out, flagged: the case's mask is not its label's fault."""
    if case.label is None:
        return None, []
    try:
        label, grid = read_mask(case.label)
    except InputError as exc:
        log.warning("%s: left out of the overlay and scores", exc)
        return None, ["label unusable: not scored"]
    differences = grid.differences(adc.geometry)
    if differences:
        log.warning("%s: the label's grid differs from the ADC image's (%s): left out of the overlay and scores",
                    case.label, "; ".join(differences))
        return None, ["label on another grid"]
    return label, []


def _picture_and_scores(case: Case, adc: Volume, mask: np.ndarray, overlay: Path | None, picture: bool,
                        outline: np.ndarray | None = None,
                        drawn: bytes | None = None) -> tuple[bytes | None, CaseRow | None, list[str]]:
    """The case's overlay PNG (written to `overlay` if given; returned with `picture`), with the registered
    atlas's brain (`outline`) where its Z_ADC was computed, or `drawn`, the overlay an earlier run drew; with
    `picture` its scores against its label where it has one, and flags about the label."""
    if overlay is None and not picture:
        return None, None, []
    label, flags = _label(case, adc)
    from sparseg.plots import overlay_png

    png = drawn if drawn is not None else overlay_png(adc.array, mask, label, adc.geometry.spacing_mm, case.case_id,
                                                      outline=outline)
    if overlay is not None:
        write_bytes(overlay, png)
    scores = None
    if picture and label is not None:
        scores = score_row(case.case_id, label, mask, adc.geometry, lesion_burden(label, adc.array))
    return (png if picture else None), scores, flags


def predict_case(case: Case, predictor: Predictor, mask_path: Path, probabilities_path: Path | None = None,
                 overlay_path: Path | None = None, zmaker: ZmapMaker | None = None) -> CaseSummary:
    """Read, segment and write one case (the container job; `sparseg predict` of one case), its Z_ADC computed by
    `zmaker` where the case has none."""
    return segment(load_case(case, zmaker=zmaker), predictor,
                   CaseOutputs(mask_path, probabilities_path, overlay_path)).summary


def _summary(case_id: str, status: str, mask: np.ndarray, adc: Volume, flags: list[str],
             seconds: float = float("nan"), agreement: float = float("nan")) -> CaseSummary:
    """A summary row: lesion volume and burden of `mask` on the ADC image's grid, the ensemble's agreement, and
    the flags."""
    burden = lesion_burden(mask, adc.array)
    flags = [*flags, "empty mask"] if not mask.any() and "no brain" not in flags else flags
    flags = [*flags, *spills_out(mask, adc.array)]
    if agreement < MEMBER_AGREEMENT_FLAG:
        flags = [*flags, f"the models disagree: look (agreement {agreement:.2f})"]
    return CaseSummary(case_id=case_id, status=status,
                       lesion_ml=float(mask.sum()) * adc.geometry.voxel_volume_mm3 / 1000.0,
                       burden=burden, burden_group=burden_group(burden), seconds=seconds,
                       member_agreement=agreement, flags="; ".join(flags))


def earlier_result(loaded: LoadedCase, outputs: CaseOutputs, picture: bool, recorded: CaseSummary) -> CaseResult:
    """The result of a case segmented by an earlier run, from its mask file (and its overlay file, for the
    report), with what its summary row `recorded` and the files cannot tell again (the ensemble's agreement, the
    atlas registration's quality and flags)."""
    if loaded.error is not None:
        raise loaded.error
    assert loaded.adc is not None
    mask, grid = read_mask(outputs.mask)
    if grid.differences(loaded.adc.geometry):
        raise InputError(f"{outputs.mask}: not on the grid of {loaded.case.adc.name}")
    drawn = outputs.overlay.read_bytes() if picture and outputs.overlay is not None else None
    png, scores, label_flags = _picture_and_scores(loaded.case, loaded.adc, mask, None, picture, drawn=drawn)
    atlas_flags = [flag for flag in recorded.flags.split("; ") if flag.startswith(ATLAS_FLAG_PREFIXES)]
    summary = _summary(loaded.case.case_id, "done earlier", mask, loaded.adc,
                       unusual(loaded.adc) + atlas_flags + label_flags, agreement=recorded.member_agreement)
    summary = replace(summary, atlas_overlap=recorded.atlas_overlap, atlas_similarity=recorded.atlas_similarity,
                      adc_scale=recorded.adc_scale)
    return CaseResult(summary, png, scores)
