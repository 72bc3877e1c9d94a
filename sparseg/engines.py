"""The CPU engine: a checkpoint's network exported to OpenVINO, in fp32 or quantized to int8, beside the checkpoint.

On a CPU, OpenVINO runs the same network as torch faster (docs/performance.md),
and its int8 model, calibrated with NNCF on real training slices
(`sparseg.quantization`), several times faster again. Both are kept beside the
checkpoint like the traced network, as OpenVINO's own format (IR: an `.xml`
graph and a `.bin` of weights) plus a stamp (`.json`):

    best.safetensors  ->  best.openvino.xml/.bin/.json   (fp32)
                          best.int8.xml/.bin/.json       (int8, with its calibration and its agreement with fp32)

The stamp names the checkpoint's weights (`weights_sha256`), the OpenVINO and
torch versions that made the export, and the sha256 of the `.xml` and `.bin`;
a model is used only when all of them match, so an export of other weights,
an interrupted write or an edited file is never run. A stale or missing fp32
export is made again from the checkpoint (at start-up when needed, in a
temporary folder when the checkpoint's folder is read-only); an int8 model
cannot be remade without calibration data, so a stale one is refused.

The network goes to OpenVINO through its PyTorch front end (`openvino.convert_model`),
not through an ONNX file: one step and one library fewer (no `onnx` or
`onnxscript`), and the IR is what OpenVINO would compile an ONNX file into anyway.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import json
import logging
import shutil
import tempfile
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparseg.config import INT8_MIN_AGREEMENT
from sparseg.errors import InputError, OutputError
from sparseg.io import PARTIAL_PREFIX, place, require_apart, write_text
from sparseg.model import Checkpoint, load_checkpoint, parity_frames, read_header, require_parity, traced_path

log = logging.getLogger(__name__)

ENGINE_FORMAT = "sparseg-openvino/1"
SUFFIXES = {"fp32": ".openvino", "int8": ".int8"}
"""The name part of each export: `<checkpoint stem><suffix>.xml/.bin/.json`."""
OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
"""OpenVINO's inference precision per SPARSeg precision. It must be set: OpenVINO's CPU default is bf16 on
processors with native bf16, which would change the masks. For int8, the layers left unquantized run in f32."""


def available() -> bool:
    """Whether OpenVINO is installed (it is in requirements.txt; a minimal install may lack it)."""
    return importlib.util.find_spec("openvino") is not None


def openvino_version() -> str:
    import openvino

    return openvino.__version__.split("-")[0]


@dataclass(frozen=True)
class ExportPaths:
    xml: Path
    bin: Path
    stamp: Path

    @classmethod
    def beside(cls, checkpoint: Path, precision: str, folder: Path | None = None) -> ExportPaths:
        folder, base = folder or checkpoint.parent, checkpoint.stem + SUFFIXES[precision]
        return cls(folder / f"{base}.xml", folder / f"{base}.bin", folder / f"{base}.json")


def checkpoint_files(path: Path) -> list[Path]:
    """A checkpoint and every file derived from it beside it: its JSON copy, traced network, OpenVINO export and
    int8 model (what a command must never write over)."""
    path = Path(path)
    exports = [getattr(ExportPaths.beside(path, precision), kind) for precision in SUFFIXES
               for kind in ("xml", "bin", "stamp")]
    return [path, path.with_suffix(".json"), traced_path(path), *exports]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_stamp(paths: ExportPaths) -> dict[str, Any] | None:
    """The stamp of an export, or None when there is none or it is unreadable."""
    try:
        stamp = json.loads(paths.stamp.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return stamp if isinstance(stamp, dict) and stamp.get("format") == ENGINE_FORMAT else None


def stale_because(paths: ExportPaths, weights_sha256: str, precision: str) -> str | None:
    """Why the export at `paths` cannot run for these weights (None: it is current)."""
    stamp = read_stamp(paths)
    if stamp is None:
        return "there is none" if not paths.stamp.exists() else f"{paths.stamp.name} is unreadable"
    if stamp.get("weights_sha256") != weights_sha256:
        return "it was made from other weights"
    if stamp.get("precision") != precision:
        return f"it is {stamp.get('precision')}, not {precision}"
    if precision == "fp32" and stamp.get("openvino") != openvino_version():
        return f"it was made by OpenVINO {stamp.get('openvino')}, this is {openvino_version()}"
    for kind in ("xml", "bin"):
        path = getattr(paths, kind)
        if not path.is_file():
            return f"{path.name} is missing"
        if _sha256(path) != stamp.get(f"{kind}_sha256"):
            return f"{path.name} is not the file its stamp names (interrupted or edited)"
    return None


def _save(model, paths: ExportPaths, stamp: dict[str, Any]) -> ExportPaths:
    """Write an OpenVINO model and its stamp: the IR pair into a staging folder beside, read back whole, then
    each file proved on disk and renamed into place (`io.place`), then the stamp, last, naming both files'
    sha256, so a half-replaced pair is never taken as current."""
    import openvino as ov

    folder = paths.xml.parent
    staging = folder / f"{PARTIAL_PREFIX}{uuid.uuid4().hex[:8]}-openvino"
    try:
        try:
            staging.mkdir(parents=True)
            staged = ExportPaths(staging / paths.xml.name, staging / paths.bin.name, staging / paths.stamp.name)
            ov.save_model(model, str(staged.xml), compress_to_fp16=False)
            ov.Core().read_model(str(staged.xml))  # reads back whole, or raises
            stamp = {**stamp, "xml_sha256": _sha256(staged.xml), "bin_sha256": _sha256(staged.bin)}
            paths.stamp.unlink(missing_ok=True)  # no stamp names a pair while it is being replaced
        except OSError as exc:
            raise OutputError(f"{paths.xml}: cannot write ({exc.strerror or exc})") from None
        except RuntimeError as exc:  # OpenVINO's errors, a full disk among them
            raise OutputError(f"{paths.xml}: cannot write ({str(exc).splitlines()[0]})") from None
        for kind in ("bin", "xml"):
            place(getattr(staged, kind), getattr(paths, kind))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_text(paths.stamp, json.dumps(stamp, indent=2) + "\n")
    return paths


def export(path: Path | str, folder: Path | None = None) -> ExportPaths:
    """Export checkpoint `path`'s network to OpenVINO fp32 beside it (or into `folder`), once `require_parity`
    holds for it."""
    import openvino as ov

    path = Path(path)
    paths = ExportPaths.beside(path, "fp32", folder)
    require_apart([paths.xml, paths.bin, paths.stamp], [path])
    checkpoint = load_checkpoint(path)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing warnings of the converter
        model = ov.convert_model(checkpoint.model, example_input=parity_frames(checkpoint.config)[0],
                                 input=[(-1, checkpoint.config.in_channels, -1, -1)])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": OPENVINO_HINTS["fp32"]})
    require_parity(checkpoint, "OpenVINO's network", lambda frame: compiled(frame.numpy())[0])
    stamp = {"format": ENGINE_FORMAT, "precision": "fp32", "weights_sha256": checkpoint.metadata["weights_sha256"],
             "checkpoint": path.name, "openvino": openvino_version(), "torch": torch.__version__}
    return _save(model, paths, stamp)


def current_fp32(path: Path, weights_sha256: str) -> ExportPaths:
    """The fp32 export of checkpoint `path`: the one beside it when current, else made now (beside it, or in a
    temporary folder when its folder cannot be written)."""
    paths = ExportPaths.beside(path, "fp32")
    reason = stale_because(paths, weights_sha256, "fp32")
    if reason is None:
        return paths
    log.info("%s: exporting to OpenVINO (%s)", path, "no export yet" if reason == "there is none" else reason)
    try:
        return export(path)
    except OutputError as exc:
        folder = Path(tempfile.mkdtemp(prefix="sparseg-openvino-"))
        log.info("%s; exporting into %s for this run only", exc, folder)
        return export(path, folder)
    finally:
        gc.collect()  # the torch network and the converted model, before the job's own peak


def save_int8(model, path: Path, weights_sha256: str, provenance: dict[str, Any]) -> ExportPaths:
    """Write a quantized OpenVINO model as checkpoint `path`'s int8 model, with what made it (`provenance`:
    the calibration and the agreement measured with `sparseg.quantization`)."""
    stamp = {"format": ENGINE_FORMAT, "precision": "int8", "weights_sha256": weights_sha256,
             "checkpoint": path.name, "openvino": openvino_version(), **provenance}
    return _save(model, ExportPaths.beside(path, "int8"), stamp)


def update_stamp(paths: ExportPaths, fields: dict[str, Any]) -> None:
    """Add `fields` to a current export's stamp (the agreement measured after the int8 model was written)."""
    stamp = read_stamp(paths)
    if stamp is None:
        raise OutputError(f"{paths.stamp}: no stamp to add to")
    write_text(paths.stamp, json.dumps({**stamp, **fields}, indent=2, allow_nan=True) + "\n")


class OpenVINONetwork:
    """A checkpoint's network compiled by OpenVINO for the CPU: preprocessed slices in, logits out."""

    def __init__(self, paths: ExportPaths, precision: str, threads: int = 0) -> None:
        import openvino as ov

        settings = {"INFERENCE_PRECISION_HINT": OPENVINO_HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            settings["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = ov.Core().compile_model(str(paths.xml), "CPU", settings)
        except RuntimeError as exc:
            raise InputError(f"{paths.xml}: OpenVINO cannot compile it ({str(exc).splitlines()[0]})") from None
        self.paths, self.precision = paths, precision
        self.stamp = read_stamp(paths) or {}

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits. Shape: (N, C, H, W) float32 -> (N, 1, H, W) float32."""
        return self.compiled(batch)[0]

    def describe(self) -> str:
        return f"OpenVINO {openvino_version()} {self.precision} ({self.paths.xml.name})"


def load_checkpoint_openvino(path: Path | str, precision: str = "fp32") -> Checkpoint:
    """Checkpoint `path` with its OpenVINO network (`Checkpoint.model` is an `OpenVINONetwork`): fp32 exported
    when there is no current export; int8 only from a current int8 model (`sparseg quantize`)."""
    path = Path(path)
    metadata, config = read_header(path)
    if precision == "int8":
        paths = ExportPaths.beside(path, "int8")
        reason = stale_because(paths, metadata["weights_sha256"], "int8")
        if reason is not None:
            raise InputError(f"{path}: no int8 model to run ({paths.xml.name}: {reason}); make one with: "
                             f"sparseg quantize {path} --data TRAINING_DATA")
        stamp = read_stamp(paths) or {}
        agreement = stamp.get("agreement") if isinstance(stamp.get("agreement"), dict) else {}
        dice = agreement.get("dice_int8_vs_fp32")
        smallest = dice.get("smallest") if isinstance(dice, dict) else None
        if not isinstance(smallest, (int, float)):
            log.warning("%s: its agreement with fp32 is not recorded (not measured yet, or `sparseg quantize` did "
                        "not finish)", paths.xml)
        elif smallest < INT8_MIN_AGREEMENT:
            log.warning("%s: on %s held-out cases its masks agreed with fp32's only down to Dice %.4f "
                        "(required: %.2f)", paths.xml, agreement.get("held_out_cases"), smallest, INT8_MIN_AGREEMENT)
        else:
            log.info("%s: agrees with fp32 on %s held-out cases (smallest Dice %.4f)", paths.xml,
                     agreement.get("held_out_cases"), smallest)
        if stamp.get("openvino") != openvino_version():
            log.warning("%s: quantized with OpenVINO %s, running with %s", paths.xml, stamp.get("openvino"),
                        openvino_version())
    else:
        paths = current_fp32(path, metadata["weights_sha256"])
    network = OpenVINONetwork(paths, precision, torch.get_num_threads())
    return Checkpoint(model=network, config=config, metadata=metadata, path=path)
