"""The network as the `Predictor` sees it: preprocessed slices in, logits out, whatever runs them.

`Network` is one interface over every engine:

- `TorchNetwork`: torch, on the runtime's device and in its precision, the
  network rebuilt from the checkpoint;
- `OpenVINONetwork`: OpenVINO on the CPU, fp32 or bf16 from the export, or
  the int8 model.

`load_network` picks the right one for a checkpoint and a resolved `Runtime`.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from sparseg.config import INT8_MIN_AGREEMENT, InferenceConfig
from sparseg.derived import INT8, OPENVINO, PARITY_TOLERANCE, Derived, current, library_version, recorded_agreement
from sparseg.errors import InputError, OutputError
from sparseg.model import Checkpoint, load_checkpoint, probe_input, read_checkpoint
from sparseg.paths import remove_stale
from sparseg.runtime import Runtime

log = logging.getLogger(__name__)


class Network(Protocol):
    """A checkpoint's network on one engine."""

    identity: str
    """What decides its outputs besides the checkpoint's weights ("" for the torch network, rebuilt from them; an
    OpenVINO model, fp32 export or int8, is its own files: their hash)."""

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits. Shape: (N, C, H, W) float32 -> (N, 1, H, W) float32."""
        ...

    def describe(self) -> str:
        """One line: what runs it."""
        ...


class TorchNetwork:
    """A torch module on the runtime's device, in evaluation mode, fed in the memory format of the settings."""

    identity = ""

    def __init__(self, module: nn.Module, runtime: Runtime, channels_last: bool = True) -> None:
        layout = torch.channels_last if channels_last else torch.contiguous_format
        self.module = module.to(runtime.device, memory_format=layout).eval()
        self.runtime, self.channels_last = runtime, channels_last

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self.runtime.device.type == "cuda":
            tensor = tensor.pin_memory()
        tensor = tensor.to(self.runtime.device, non_blocking=True)
        if self.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        with self.runtime.autocast():
            logits = self.module(tensor)
        return logits.float().cpu().numpy()

    def describe(self) -> str:
        return f"torch {torch.__version__} {self.runtime.precision}, rebuilt from the checkpoint"


class OpenVINONetwork:
    """A derived OpenVINO model (fp32 export or int8) compiled for the CPU with the runtime's precision hint."""

    def __init__(self, derived: Derived, runtime: Runtime) -> None:
        import openvino as ov

        settings = {"INFERENCE_PRECISION_HINT": runtime.openvino_hint, "PERFORMANCE_HINT": "LATENCY",
                    "INFERENCE_NUM_THREADS": torch.get_num_threads()}
        xml = derived.files[".xml"]
        try:
            self.compiled = ov.Core().compile_model(str(xml), "CPU", settings)
        except RuntimeError as exc:
            raise InputError(f"{xml}: OpenVINO cannot compile it ({str(exc).splitlines()[0]})") from None
        self.derived, self.runtime = derived, runtime
        self.identity = f"{derived.kind.name}:{derived.identity()}"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.compiled(np.ascontiguousarray(batch, dtype=np.float32))[0]

    def describe(self) -> str:
        return f"OpenVINO {library_version('openvino')} {self.runtime.precision} ({self.derived.files['.xml'].name})"


def load_network(path: Path | str, runtime: Runtime, inference: InferenceConfig = InferenceConfig()
                 ) -> tuple[Checkpoint, Network]:
    """Checkpoint `path` and its network for `runtime`: OpenVINO from its export (made now when missing or stale)
    or its int8 model (refused without a current one); torch with the network rebuilt from the checkpoint."""
    path = Path(path)
    if runtime.engine == "openvino":
        checkpoint = read_checkpoint(path)
        kind = INT8 if runtime.precision == "int8" else OPENVINO
        derived = current(path, kind, checkpoint.metadata["weights_sha256"])
        if kind is INT8:
            _log_agreement(derived)
        network = OpenVINONetwork(derived, runtime)
        problem = probe_problem(checkpoint, network)
        if problem is not None and kind is OPENVINO:  # files of another network under a stamp that fits: remake
            log.warning("%s: %s: made again", derived.files[".xml"], problem)
            with contextlib.suppress(OutputError):  # a folder it cannot write: the check below refuses them
                remove_stale(derived.all_paths)  # files its stamp names, of another network: removed, made anew
            network = OpenVINONetwork(current(path, kind, checkpoint.metadata["weights_sha256"]), runtime)
            problem = probe_problem(checkpoint, network)
        if problem is not None:
            raise InputError(f"{derived.files['.xml']}: {problem}: not this checkpoint's network")
        return checkpoint, network
    checkpoint = load_checkpoint(path)
    return checkpoint, TorchNetwork(checkpoint.module, runtime, inference.channels_last)


PROBE_MIN_CORRELATION = 0.5
"""Where a network may differ from the checkpoint's fp32 logits by design (int8, bf16), its logits on the probe must
still correlate with them this much. Measured: an int8 model of the tests' random network correlated 0.84-0.86 with
its fp32 logits; the logits of other networks of one architecture (random ones, and the demo weights against a
random one) within +-0.11 of 0."""


def probe_problem(checkpoint: Checkpoint, network: Network) -> str | None:
    """Why `network` is not the checkpoint's, by the logits its header records on `model.probe_input` (an fp32
    engine within `PARITY_TOLERANCE`, others correlated at least `PROBE_MIN_CORRELATION`), or None. A checkpoint
    of an earlier format records no probe: nothing is checked (a log line says so)."""
    probe = checkpoint.metadata.get("probe")
    if not isinstance(probe, dict) or not isinstance(probe.get("logits"), list):
        log.info("%s: records no probe logits (saved by an earlier SPARSeg): its %s network is not checked against "
                 "them", checkpoint.path, network.describe())
        return None
    try:
        expected = np.asarray(probe["logits"], dtype=np.float32)
    except (TypeError, ValueError):
        return "the checkpoint's probe logits are not numbers"
    got = np.asarray(network(probe_input(checkpoint.config).numpy()), dtype=np.float32).reshape(-1)
    if got.shape != expected.shape:
        return f"it gives {got.size} probe logits, the checkpoint records {expected.size}"
    if getattr(network, "runtime", None) is not None and network.runtime.precision == "fp32":
        difference = float(np.abs(got - expected).max())
        if difference > PARITY_TOLERANCE * max(1.0, float(np.abs(expected).max())):
            return f"its logits on the probe differ from the checkpoint's by {difference:.2g}"
        return None
    correlation = float(np.corrcoef(got, expected)[0, 1]) if got.std() > 0 and expected.std() > 0 else 0.0
    if not correlation >= PROBE_MIN_CORRELATION:
        return f"its logits on the probe correlate with the checkpoint's by only {correlation:.2f}"
    return None


def _log_agreement(int8: Derived) -> None:
    """Say how well the int8 model agreed with fp32 when it was made (a warning below `INT8_MIN_AGREEMENT`)."""
    xml, stamp = int8.files[".xml"], int8.stamp() or {}
    smallest, cases = recorded_agreement(stamp)
    if smallest is None:
        log.warning("%s: its agreement with fp32 is not recorded (not measured yet, `sparseg quantize` did not "
                    "finish, or its stamp holds no Dice between 0 and 1)", xml)
    elif smallest < INT8_MIN_AGREEMENT:
        log.warning("%s: on %r held-out cases its masks agreed with fp32's only down to Dice %.4f (required: %.2f)",
                    xml, cases, smallest, INT8_MIN_AGREEMENT)
    else:
        log.info("%s: agrees with fp32 on %r held-out cases (smallest Dice %.4f)", xml, cases, smallest)
    made_with = stamp.get("libraries") if isinstance(stamp.get("libraries"), dict) else {}
    if made_with.get("openvino") != library_version("openvino"):
        log.warning("%s: quantized with OpenVINO %s, running with %s", xml, made_with.get("openvino"),
                    library_version("openvino"))
