"""What makes a mask deserve a look before it is trusted: an ADC volume that is implausible (no brain, the wrong
unit or scale, a sign flip, an implausible spacing), a mask that spills out of the brain, and weights trained on
synthetic data.

Neither stops a job: the mask is still written, each finding is logged as a
warning, and a batch lists them in its summary's flags and its QA page.
"""

from __future__ import annotations

import logging

import numpy as np

from sparseg.inference import Predictor
from sparseg.io import PLAUSIBLE_SPACING_MM, Volume

log = logging.getLogger(__name__)

ADC_IN_MM2_PER_S_BELOW = 0.01
"""Brain ADC values all below this look like mm^2/s; BONBID-HIE ADC is in 1e-6 mm^2/s (brain ~800-3000)."""
ADC_PLAUSIBLE_MAX = 1e5
"""No tissue diffuses faster than free water (~3000 x 1e-6 mm^2/s at body temperature); far above is another map."""


MASK_OUTSIDE_BRAIN = 0.1
"""The share of a mask's voxels outside the brain (zero ADC) above which the mask is flagged: a lesion is tissue."""


def spills_out(mask: np.ndarray, adc: np.ndarray) -> list[str]:
    """A flag when more than `MASK_OUTSIDE_BRAIN` of the mask's voxels lie where the ADC is zero (no brain)."""
    voxels = int(np.count_nonzero(mask))
    outside = int(np.count_nonzero(mask & (adc == 0)))
    if voxels and outside > MASK_OUTSIDE_BRAIN * voxels:
        return [f"lesion outside the brain ({outside / voxels:.0%} of the mask)"]
    return []


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
