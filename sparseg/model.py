"""The network factory and self-describing checkpoints.

A checkpoint is one `.safetensors` file: the weights, and in its header a JSON
document with the run config (architecture, preprocessing constants,
threshold, training settings), the data fingerprint, validation metrics, code
and library versions, the sha256 of the weights, and `checkpoint_sha256`,
which covers the weights' hash and the run config together: what decides a
mask. Reading the header checks the config against it (an edited threshold is
refused); loading checks the weights too, never unpickles anything, and
rebuilds the model from the stored config alone. A readable copy of the JSON
is written beside it.

For a fast start, `trace_checkpoint` writes the same network traced to
TorchScript beside the checkpoint (`<name>.torchscript`, made in the image at
build time). Inference loads it instead of rebuilding the network when its
stamp names the checkpoint's weights and this torch version, which spares the
import of segmentation-models-pytorch, timm and torchvision (docs/performance.md
says how much start-up that saves). The safetensors file stays
the one source of truth.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from sparseg.config import ModelConfig, RunConfig, run_config_from_dict, to_dict
from sparseg.environment import code_version, library_versions
from sparseg.errors import ConfigError, InputError, SparsegError
from sparseg.io import IncompleteWrite, atomic_path, require_apart, verify_zip, write_text

log = logging.getLogger(__name__)

FORMAT = "sparseg-checkpoint/2"
"""/2 records `checkpoint_sha256` (weights and run config); /1 checkpoints (weights' hash only) are still read."""
FORMAT_WEIGHTS_HASH_ONLY = "sparseg-checkpoint/1"
TRACED_FORMAT = "sparseg-torchscript/1"
TRACED_SUFFIX = ".torchscript"
TRACED_STAMP = "sparseg.json"


def build_model(config: ModelConfig, in_channels: int) -> nn.Module:
    """The segmentation network, one output channel (lesion logit). No pretrained weights are fetched.

    The config's names were checked when it was built, except the encoder's, which only
    segmentation-models-pytorch knows: an unknown one raises ConfigError("model.encoder").
    """
    import segmentation_models_pytorch as smp  # here, not at the top: a traced network needs none of it

    try:
        model = getattr(smp, config.architecture)(
            encoder_name=config.encoder,
            encoder_weights=None,
            in_channels=in_channels,
            classes=1,
            decoder_attention_type=config.attention,
            decoder_channels=list(config.decoder_channels),
        )
    except (KeyError, RuntimeError) as exc:
        # smp: KeyError("Wrong encoder name ..."); timm, for "tu-" encoders: RuntimeError("Unknown model ...").
        if not str(exc).strip("'\"").startswith(("Wrong encoder name", "Unknown model")):
            raise
        raise ConfigError("model.encoder", f"unknown encoder {config.encoder!r} (see segmentation-models-pytorch's "
                          "list of encoders)") from None
    if config.init == "xavier_uniform":
        xavier_init(model)
    return model


def xavier_init(model: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every convolution and linear layer (paper, 3.4)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def make_optimizer(model: nn.Module, learning_rate: float, device: torch.device) -> torch.optim.Optimizer:
    """Adam (paper, 3.4); on CUDA its fused kernel, one launch for all parameters instead of several each."""
    return torch.optim.Adam(model.parameters(), lr=learning_rate, fused=device.type == "cuda")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """Hash of the tensors' names, shapes, dtypes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}".encode())
        digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))  # no copy of the bytes
    return digest.hexdigest()


def checkpoint_sha256(weights_sha256: str, config: dict[str, Any]) -> str:
    """The hash of what decides a checkpoint's masks: its weights' hash and its run config (as JSON)."""
    document = json.dumps({"weights_sha256": weights_sha256, "config": config}, sort_keys=True,
                          separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(document.encode()).hexdigest()


@dataclass
class Checkpoint:
    model: nn.Module
    """The network: a torch module, or an engine's compiled network (`sparseg.engines.OpenVINONetwork`)."""
    config: RunConfig
    metadata: dict[str, Any]
    path: Path | None = None
    """The file it was loaded from (None for a network still in training)."""
    traced: bool = False
    """Whether `model` is the traced network beside the file rather than one rebuilt from the config."""

    @property
    def sha256(self) -> str:
        """What identifies the network and the settings it carries: the hash of its weights' hash and its run
        config, computed from what was loaded (for /2 files that is the recorded, checked `checkpoint_sha256`;
        for /1 files, whose header no hash covers, an edited config still changes it)."""
        return checkpoint_sha256(str(self.metadata.get("weights_sha256")), to_dict(self.config))

    @property
    def synthetic(self) -> bool:
        """Whether it was trained on synthetic data (`sparseg synth`), as its data fingerprint says."""
        data = self.metadata.get("data")
        return isinstance(data, dict) and data.get("synthetic") is True

    def describe(self) -> str:
        """One line for a job's log: which file, which weights, what data, how it was loaded."""
        data = "SYNTHETIC data" if self.synthetic else "real data"
        network = (self.model.describe() if hasattr(self.model, "describe")
                   else "traced" if self.traced else "rebuilt from its config")
        return f"{self.path} (sha256 {self.sha256[:12]}, trained on {data}, network {network})"


def save_checkpoint(
    path: Path | str, model: nn.Module, config: RunConfig, extra: dict[str, Any] | None = None
) -> Path:
    """Write weights + metadata to `path` (.safetensors) and the metadata to `path` with .json."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = model.module if hasattr(model, "module") else model
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    config_document = json.loads(json.dumps(to_dict(config)))  # as the header will hold it
    weights_hash = weights_sha256(state)
    metadata = {
        "format": FORMAT,
        "config": config_document,
        "parameters": count_parameters(module),
        "code_version": code_version(),
        "libraries": library_versions(),
        **(extra or {}),
        "weights_sha256": weights_hash,
        "checkpoint_sha256": checkpoint_sha256(weights_hash, config_document),
    }
    def verify(temporary: Path) -> None:  # the header whole and every tensor's bytes within the file
        try:
            with safe_open(str(temporary), framework="pt") as written:
                complete = set(written.keys()) == set(state)
        except (SafetensorError, OSError) as exc:
            raise IncompleteWrite(f"the checkpoint does not read back: {exc}") from None
        if not complete:
            raise IncompleteWrite("the checkpoint read back lacks tensors")

    with atomic_path(path, verify) as temporary:
        try:
            save_file(state, str(temporary), metadata={"sparseg": json.dumps(metadata)})
        except SafetensorError as exc:  # its I/O errors (a full disk) are not OSErrors
            raise IncompleteWrite(str(exc)) from None
    write_text(path.with_suffix(".json"), json.dumps(metadata, indent=2) + "\n")
    return path


def read_metadata(path: Path | str) -> dict[str, Any]:
    """The metadata of a checkpoint, from its header (no weights loaded), its run config checked against
    `checkpoint_sha256`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint")
    try:
        with open(path, "rb") as handle:
            header_size = int.from_bytes(handle.read(8), "little")
            if not 0 < header_size < 100_000_000:
                raise ValueError("bad header size")
            header = json.loads(handle.read(header_size))
        metadata = json.loads(header["__metadata__"]["sparseg"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):  # RecursionError: JSON nested too deep
        raise InputError(f"{path}: not a SPARSeg checkpoint (no readable safetensors header)") from None
    if not isinstance(metadata, dict) or metadata.get("format") not in (FORMAT, FORMAT_WEIGHTS_HASH_ONLY):
        found = metadata.get("format") if isinstance(metadata, dict) else None
        raise InputError(f"{path}: unknown checkpoint format {found!r}")
    if not isinstance(metadata.get("config"), dict):
        raise InputError(f"{path}: no run config in the checkpoint's header (it cannot say how to rebuild the network)")
    if not isinstance(metadata.get("weights_sha256"), str):
        raise InputError(f"{path}: no weights_sha256 in the checkpoint's header")
    if metadata["format"] == FORMAT:
        try:
            expected = checkpoint_sha256(metadata["weights_sha256"], metadata["config"])
        except ValueError:  # NaN or infinity in the config
            expected = None
        if metadata.get("checkpoint_sha256") != expected:
            raise InputError(f"{path}: the header was edited after the checkpoint was saved (its run config or "
                             "weights hash no longer matches checkpoint_sha256)")
    return metadata


def read_header(path: Path) -> tuple[dict[str, Any], RunConfig]:
    """A checkpoint's checked metadata and its run config, built from it (no weights loaded)."""
    metadata = read_metadata(path)
    try:
        return metadata, run_config_from_dict(metadata["config"])
    except ConfigError as exc:
        raise InputError(f"{path}: the checkpoint's run config: {exc}") from None


def load_checkpoint(path: Path | str, device: str | torch.device = "cpu", traced: bool = False) -> Checkpoint:
    """Rebuild the model from the stored config, load and verify its weights.

    `traced=True` (inference): use the TorchScript network beside the checkpoint
    when there is a current one (`load_traced`), else rebuild as usual.
    """
    path = Path(path)
    metadata, config = read_header(path)
    if metadata["format"] == FORMAT_WEIGHTS_HASH_ONLY:
        log.warning("%s: format %s: its run config is not covered by a hash (saved by an earlier SPARSeg)", path,
                    FORMAT_WEIGHTS_HASH_ONLY)
    model = load_traced(path, metadata) if traced else None
    if model is None:
        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise InputError(f"{path}: checkpoint weights cannot be read ({exc})") from None
        if weights_sha256(state) != metadata.get("weights_sha256"):
            raise InputError(f"{path}: weights do not match their recorded sha256 (corrupt or modified checkpoint)")
        try:
            model = build_model(config.model, config.in_channels)
        except ConfigError as exc:
            raise InputError(f"{path}: the checkpoint's run config: {exc}") from None
        try:
            model.load_state_dict(state)
        except RuntimeError:
            raise InputError(f"{path}: its weights do not fit the network its run config describes "
                             f"({config.model.architecture}, encoder {config.model.encoder}, "
                             f"{config.in_channels} channels)") from None
    model.to(device).eval()
    return Checkpoint(model=model, config=config, metadata=metadata, path=path, traced=isinstance(
        model, torch.jit.ScriptModule))


def traced_path(checkpoint: Path | str) -> Path:
    return Path(checkpoint).with_suffix(TRACED_SUFFIX)


PARITY_TOLERANCE = 1e-4
"""A network derived from a checkpoint (traced to TorchScript, exported to OpenVINO) must give the checkpoint's
torch logits to within this, relative to their largest magnitude (at least 1), on `parity_frames`; else it is not
made. A trace that specialised on one shape, or a wrong conversion, is off by far more; measured on the demo, test
and paper networks: 0 for the trace, at most 2e-6 for OpenVINO fp32."""


def parity_frames(config: RunConfig) -> list[torch.Tensor]:
    """Two seeded random batches of different sizes: a derived network must hold for any batch and any frame (the
    brain crop feeds frames of any multiple of 32). Small, because an uploaded model is exported at start-up
    within the container's memory limit. Shape: [(1, C, H, W), (2, C, H/2, about 3W/4)]."""
    height, width = config.preprocessing.slice_size
    channels = config.in_channels
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(1, channels, height, width, generator=generator),
            torch.randn(2, channels, max(32, height // 2), max(32, width * 3 // 4 // 32 * 32), generator=generator)]


def require_parity(checkpoint: Checkpoint, what: str, derived: Callable[[torch.Tensor], Any]) -> None:
    """Raise SparsegError, naming the checkpoint, when `derived` (frames -> logits) differs from the checkpoint's
    torch network by more than `PARITY_TOLERANCE` on `parity_frames`; `what` names the derived network."""
    with torch.no_grad():
        for frame in parity_frames(checkpoint.config):
            expected = checkpoint.model(frame).numpy()
            got = derived(frame)
            got = got.numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
            difference = float(np.abs(got - expected).max())
            if difference > PARITY_TOLERANCE * max(1.0, float(np.abs(expected).max())):
                raise SparsegError(f"{checkpoint.path}: {what} differs from torch's by {difference:.2g} on "
                                   f"{tuple(frame.shape)} slices; it cannot be made")


def trace_checkpoint(path: Path | str) -> Path:
    """Write the checkpoint's network traced to TorchScript beside it, stamped with its weights' hash
    and this torch version, once `require_parity` holds for it."""
    path = Path(path)
    require_apart([traced_path(path)], [path])
    checkpoint = load_checkpoint(path)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export, see DEVELOPERS.md
        traced = torch.jit.trace(checkpoint.model, parity_frames(checkpoint.config)[0], check_trace=False)
        require_parity(checkpoint, "the traced network", traced)
    stamp = {"format": TRACED_FORMAT, "weights_sha256": checkpoint.metadata["weights_sha256"],
             "torch": torch.__version__}
    out = traced_path(path)
    with atomic_path(out, verify_zip) as temporary, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(traced, str(temporary), _extra_files={TRACED_STAMP: json.dumps(stamp)})
    return out


def traced_stamp(path: Path) -> dict[str, Any] | None:
    """The stamp of a traced network file, read without loading it; None if it has none."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith(f"/extra/{TRACED_STAMP}")), None)
            return json.loads(archive.read(name)) if name else None
    except (OSError, zipfile.BadZipFile, ValueError, RecursionError):
        return None


def load_traced(path: Path, metadata: dict[str, Any]) -> nn.Module | None:
    """The traced network beside checkpoint `path` if it is current: its stamp names the checkpoint's
    weights and this torch version, and its weights hash to the checkpoint's recorded sha256.
    None when there is none, or it is stale or unreadable (then the caller rebuilds the network); an
    error when its stamp is current but its weights are not the checkpoint's (modified)."""
    traced = traced_path(path)
    if not traced.is_file():
        return None
    stamp = traced_stamp(traced)
    expected = {"format": TRACED_FORMAT, "weights_sha256": metadata.get("weights_sha256"),
                "torch": torch.__version__}
    if stamp is None:
        log.warning("%s: unreadable (damaged?), not used; rebuilding the network", traced)
        return None
    if stamp != expected:
        log.info("%s: not used (made for other weights or another torch version); rebuilding the network", traced)
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the deprecation notice of torch.jit.load
            module = torch.jit.load(str(traced), map_location="cpu")
    except (RuntimeError, OSError) as exc:
        raise InputError(f"{traced}: traced network cannot be read ({str(exc).splitlines()[0]})") from None
    if weights_sha256(module.state_dict()) != metadata.get("weights_sha256"):
        raise InputError(f"{traced}: weights do not match the checkpoint's recorded sha256 (corrupt or modified)")
    return module
