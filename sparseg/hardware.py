"""Where the network runs and in what precision: the device and autocast choices of training and inference."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from sparseg.config import DEVICES, PRECISIONS
from sparseg.errors import InputError


def resolve_device(name: str = "auto") -> torch.device:
    """One of `DEVICES`; "auto" is the GPU when there is one, else the CPU."""
    if name not in DEVICES:
        raise InputError(f"device {name!r}: expected one of {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is available")
    return torch.device(name)


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), where bf16 autocast pays."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """Mixed precision for one of `PRECISIONS`.

    "auto": bf16 on CUDA GPUs that have it (fp16 on others), none on the CPU, so a CPU's masks are
    fp32's; "bf16": bf16 on the CPU too; "fp32": none anywhere.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    if device.type == "cpu" and precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def training_precision(device: torch.device) -> str:
    """Mixed precision for training on CUDA; fp32 on the CPU, where training is for tests and demos."""
    return "auto" if device.type == "cuda" else "fp32"


def gradient_scaler(device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for fp16 autocast (CUDA GPUs without bf16); a pass-through everywhere else."""
    return torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
