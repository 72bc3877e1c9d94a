"""The threshold baseline of the dataset paper: lesion = Z_ADC < -2.

Scored like any model, it is the floor every trained network must clear
(Bao et al. report DSC 0.54 +- 0.28 on the real data).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sparseg.cases import Case, data_inputs, find_any_cases
from sparseg.config import PreprocessingConfig
from sparseg.io import read_image, require_same_grid, write_mask
from sparseg.outputs import prediction_name
from sparseg.paths import remove_stale, require_apart


def threshold_mask(z: np.ndarray, config: PreprocessingConfig = PreprocessingConfig()) -> np.ndarray:
    """The prior channel of the network, used directly as the segmentation."""
    return z < config.z_threshold


def run_baseline(data: Path | str, out: Path | str, config: PreprocessingConfig = PreprocessingConfig()) -> list[Path]:
    """Write `<case_id>_lesion.mha` = Z_ADC < threshold for every case, on the ADC grid; none of them may be, or
    replace, an input (`sparseg baseline --out RELEASE/3LABEL` would write over the labels)."""
    cases = find_any_cases(data)
    masks = [Path(out) / prediction_name(case.case_id) for case in cases]
    require_apart(masks, data_inputs(data, cases))
    remove_stale(masks)  # a run that fails on the way leaves no earlier mask beside its own
    return [_baseline_case(case, Path(out), config) for case in cases]


def _baseline_case(case: Case, out: Path, config: PreprocessingConfig) -> Path:
    adc, z = read_image(case.adc), read_image(case.z)
    require_same_grid(adc, z)
    return write_mask(threshold_mask(z.array, config), adc.geometry, out / prediction_name(case.case_id))
