"""The container job (`process.py`, `sparseg process`): the one case of a grand-challenge /input folder
segmented into /output/images/hie-lesion-segmentation/overlay.mha.

The mask is a uint8 {0, 1} image with the ADC image's size, spacing, origin
and direction (`sparseg.segment.predict_case`); the names of the input and
output files are in `sparseg.cases`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sparseg.cases import OUTPUT_MASK, Case
from sparseg.environment import peak_rss_mib
from sparseg.inference import Predictor
from sparseg.segment import predict_case

log = logging.getLogger(__name__)


def run_container_job(case: Case, output_dir: Path, predictor: Predictor) -> Path:
    """The grand-challenge job: the one /input case -> /output/images/hie-lesion-segmentation/overlay.mha."""
    summary = predict_case(case, predictor, output_dir / OUTPUT_MASK)
    log.info("%s: %.2f mL of lesion (%s burden) in %.2f s; peak memory %.0f MiB", case.case_id,
             summary.lesion_ml, summary.burden_group, summary.seconds, peak_rss_mib())
    return output_dir / OUTPUT_MASK
