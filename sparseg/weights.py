"""Which weights segment: the checkpoints of `--weights`, else an uploaded model's, else those baked into the
image, and the Predictor loaded from them.

grand-challenge unpacks a model tarball uploaded with the algorithm into
/opt/ml/model/ (`sparseg.submission`); the image bakes the demo checkpoint(s)
into model_weights/. An uploaded model wins, and the baked-in weights are then
never averaged into it. `load_predictor` logs the device and each checkpoint
it loaded, so a job that fell back to other weights than intended says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sparseg.errors import InputError
from sparseg.inference import Predictor
from sparseg.plausibility import synthetic_warning

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
