"""The network factory and self-describing checkpoints.

A checkpoint is one `.safetensors` file: the weights, and in its header a JSON
document with the run config (architecture, preprocessing constants,
threshold, training settings), the data fingerprint, validation metrics, code
and library versions, the sha256 of the weights, the network's logits on a
fixed probe input (`probe_input`: every engine that runs it is checked against
them), and `checkpoint_sha256`, which covers every other field of the header:
an edited threshold, or a "synthetic" data fingerprint emptied, is refused.
Loading checks the weights too, never unpickles anything, and rebuilds the
model from the stored config alone. A readable copy of the JSON is written
beside it. Checkpoints of earlier formats are read, and say which of their
fields no hash covers.

Files made from a checkpoint (its OpenVINO export and int8 model) are
`sparseg.derived`'s; the safetensors file stays the one source
of truth.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from sparseg.config import ModelConfig, RunConfig, run_config_from_dict, to_dict
from sparseg.environment import code_version, library_versions
from sparseg.errors import ConfigError, InputError
from sparseg.io import IncompleteWrite, atomic_path, write_text

log = logging.getLogger(__name__)

FORMAT = "sparseg-checkpoint/3"
"""/3: `checkpoint_sha256` covers the whole header (`header_sha256`). Earlier formats are still read: /2's covers
the weights' hash and the run config only, /1 records the weights' hash alone."""
FORMAT_CONFIG_HASH = "sparseg-checkpoint/2"
FORMAT_WEIGHTS_HASH_ONLY = "sparseg-checkpoint/1"
FORMATS = (FORMAT, FORMAT_CONFIG_HASH, FORMAT_WEIGHTS_HASH_ONLY)
PROBE_SIDE = 32
"""The probe is one slice of this side (the smallest the network's five halvings take)."""


def build_model(config: ModelConfig, in_channels: int) -> nn.Module:
    """The segmentation network, one output channel (lesion logit). No pretrained weights are fetched.

    The config's names were checked when it was built, except the encoder's, which only
    segmentation-models-pytorch knows: an unknown one raises ConfigError("model.encoder").
    """
    import segmentation_models_pytorch as smp  # here, not at the top: a derived network needs none of it

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
    """The hash of what decides a checkpoint's masks: its weights' hash and its run config (as JSON). The identity
    of its network in resume keys (`Checkpoint.sha256`), and format /2's `checkpoint_sha256`."""
    document = json.dumps({"weights_sha256": weights_sha256, "config": config}, sort_keys=True,
                          separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(document.encode()).hexdigest()


def header_sha256(metadata: dict[str, Any]) -> str:
    """The hash of every field of a checkpoint's header but `checkpoint_sha256` itself (as canonical JSON, where a
    validation score of NaN is the token NaN): format /3's `checkpoint_sha256`."""
    fields = {key: value for key, value in metadata.items() if key != "checkpoint_sha256"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def uncovered_fields(metadata: dict[str, Any]) -> list[str]:
    """The fields of a checkpoint's header that no hash covers (those of earlier formats); [] for /3."""
    covered = {FORMAT: set(metadata), FORMAT_CONFIG_HASH: {"config", "weights_sha256", "checkpoint_sha256"},
               FORMAT_WEIGHTS_HASH_ONLY: {"weights_sha256"}}[metadata["format"]]
    return sorted(set(metadata) - covered)


def probe_input(config: RunConfig) -> torch.Tensor:
    """The fixed input whose logits every checkpoint records: one slice of uniform noise in [0, 1) (the range of
    the network's inputs), the same for the same config. Shape: (1, C, PROBE_SIDE, PROBE_SIDE)."""
    generator = torch.Generator().manual_seed(0)
    return torch.rand(1, config.in_channels, PROBE_SIDE, PROBE_SIDE, generator=generator)


def _probe_logits(state: dict[str, torch.Tensor], config: RunConfig) -> list[float]:
    """The logits of the network `state` holds on `probe_input`, by torch in fp32 on the CPU (what an exported
    network must give back), to float32's 7 digits."""
    model = build_model(config.model, config.in_channels)
    model.load_state_dict(state)
    with torch.no_grad():
        logits = model.eval()(probe_input(config))
    return [float(f"{value:.7g}") for value in logits.reshape(-1).tolist()]


@dataclass
class Checkpoint:
    config: RunConfig
    metadata: dict[str, Any]
    path: Path | None = None
    """The file it was read from (None for a network still in training)."""
    module: nn.Module | None = None
    """The network rebuilt from the config with the checked weights (`load_checkpoint`); None when only the
    header was read (`read_checkpoint`: a derived network runs instead)."""

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
        """One line for a job's log: which file, which weights, what data."""
        data = "SYNTHETIC data" if self.synthetic else "real data"
        return f"{self.path} (sha256 {self.sha256[:12]}, trained on {data})"


def save_checkpoint(
    path: Path | str, model: nn.Module, config: RunConfig, extra: dict[str, Any] | None = None
) -> Path:
    """Write weights + metadata to `path` (.safetensors) and the metadata to `path` with .json."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = model.module if hasattr(model, "module") else model
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    config_document = json.loads(json.dumps(to_dict(config)))  # as the header will hold it
    metadata = {
        "format": FORMAT,
        "config": config_document,
        "parameters": count_parameters(module),
        "code_version": code_version(),
        "libraries": library_versions(),
        **(extra or {}),
        "weights_sha256": weights_sha256(state),
        "probe": {"input": f"probe_input: torch.rand(1, {config.in_channels}, {PROBE_SIDE}, {PROBE_SIDE}) with "
                           "torch.Generator().manual_seed(0)", "logits": _probe_logits(state, config)},
    }
    metadata = json.loads(json.dumps(metadata))  # as the header will hold it
    metadata["checkpoint_sha256"] = header_sha256(metadata)
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
    if not isinstance(metadata, dict) or metadata.get("format") not in FORMATS:
        found = metadata.get("format") if isinstance(metadata, dict) else None
        raise InputError(f"{path}: unknown checkpoint format {found!r}")
    if metadata["format"] != FORMAT and "probe" in metadata:
        raise InputError(f"{path}: says format {metadata['format']} but holds the probe logits only "
                         f"{FORMAT} records: a checkpoint relabelled as an earlier format (whose hash covers less)")
    if not isinstance(metadata.get("config"), dict):
        raise InputError(f"{path}: no run config in the checkpoint's header (it cannot say how to rebuild the network)")
    if not isinstance(metadata.get("weights_sha256"), str):
        raise InputError(f"{path}: no weights_sha256 in the checkpoint's header")
    try:
        expected = {FORMAT: lambda: header_sha256(metadata),
                    FORMAT_CONFIG_HASH: lambda: checkpoint_sha256(metadata["weights_sha256"], metadata["config"]),
                    FORMAT_WEIGHTS_HASH_ONLY: lambda: metadata.get("checkpoint_sha256")}[metadata["format"]]()
    except ValueError:  # NaN or infinity in a field
        expected = None
    if metadata.get("checkpoint_sha256") != expected:
        covered = "fields" if metadata["format"] == FORMAT else "run config or weights hash"
        raise InputError(f"{path}: the header was edited after the checkpoint was saved (its {covered} no longer "
                         "match checkpoint_sha256)")
    return metadata


def read_header(path: Path) -> tuple[dict[str, Any], RunConfig]:
    """A checkpoint's checked metadata and its run config, built from it (no weights loaded)."""
    metadata = read_metadata(path)
    try:
        return metadata, run_config_from_dict(metadata["config"])
    except ConfigError as exc:
        raise InputError(f"{path}: the checkpoint's run config: {exc}") from None


def read_checkpoint(path: Path | str) -> Checkpoint:
    """A checkpoint's checked header, without its weights (for a network derived from it)."""
    path = Path(path)
    metadata, config = read_header(path)
    uncovered = uncovered_fields(metadata)
    if uncovered:
        log.warning("%s: format %s (saved by an earlier SPARSeg): no hash covers its %s", path, metadata["format"],
                    ", ".join(uncovered))
    return Checkpoint(config=config, metadata=metadata, path=path)


def load_checkpoint(path: Path | str, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the network from the stored config, load and verify its weights."""
    checkpoint = read_checkpoint(path)
    path, config = checkpoint.path, checkpoint.config
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise InputError(f"{path}: checkpoint weights cannot be read ({exc})") from None
    if weights_sha256(state) != checkpoint.metadata.get("weights_sha256"):
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
    checkpoint.module = model.to(device).eval()
    return checkpoint
