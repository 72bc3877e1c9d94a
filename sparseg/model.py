"""The network factory and self-describing checkpoints.

A checkpoint is one `.safetensors` file: the weights, and in its header a JSON
document with the run config (architecture, preprocessing constants,
threshold, training settings), the data fingerprint, validation metrics, code
and library versions, and the sha256 of the weights. Loading checks the
hash, never unpickles anything, and rebuilds the model from the stored
config alone. A readable copy of the JSON is written beside it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from sparseg.config import ModelConfig, RunConfig, run_config_from_dict, to_dict
from sparseg.environment import code_version, library_versions
from sparseg.errors import InputError
from sparseg.io import atomic_path

FORMAT = "sparseg-checkpoint/1"


def build_model(config: ModelConfig, in_channels: int) -> nn.Module:
    """The segmentation network, one output channel (lesion logit). No pretrained weights are fetched."""
    try:
        architecture = getattr(smp, config.architecture)
    except AttributeError:
        raise ValueError(f"unknown architecture {config.architecture!r}") from None
    model = architecture(
        encoder_name=config.encoder,
        encoder_weights=None,
        in_channels=in_channels,
        classes=1,
        decoder_attention_type=config.attention,
        decoder_channels=list(config.decoder_channels),
    )
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
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass
class Checkpoint:
    model: nn.Module
    config: RunConfig
    metadata: dict[str, Any]


def save_checkpoint(
    path: Path | str, model: nn.Module, config: RunConfig, extra: dict[str, Any] | None = None
) -> Path:
    """Write weights + metadata to `path` (.safetensors) and the metadata to `path` with .json."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = model.module if hasattr(model, "module") else model
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "config": to_dict(config),
        "parameters": count_parameters(module),
        "code_version": code_version(),
        "libraries": library_versions(),
        **(extra or {}),
        "weights_sha256": weights_sha256(state),
    }
    with atomic_path(path) as temporary:
        save_file(state, str(temporary), metadata={"sparseg": json.dumps(metadata)})
    with atomic_path(path.with_suffix(".json")) as temporary:
        temporary.write_text(json.dumps(metadata, indent=2) + "\n")
    return path


def read_metadata(path: Path | str) -> dict[str, Any]:
    """The metadata of a checkpoint, from its header (no weights loaded)."""
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
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{path}: not a SPARSeg checkpoint (no readable safetensors header)") from None
    if metadata.get("format") != FORMAT:
        raise InputError(f"{path}: unknown checkpoint format {metadata.get('format')!r}")
    return metadata


def load_checkpoint(path: Path | str, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model from the stored config, load and verify its weights."""
    path = Path(path)
    metadata = read_metadata(path)
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise InputError(f"{path}: checkpoint weights cannot be read ({exc})") from None
    if weights_sha256(state) != metadata.get("weights_sha256"):
        raise InputError(f"{path}: weights do not match their recorded sha256 (corrupt or modified checkpoint)")
    config = run_config_from_dict(metadata["config"])
    model = build_model(config.model, config.in_channels)
    model.load_state_dict(state)
    model.to(device).eval()
    return Checkpoint(model=model, config=config, metadata=metadata)
