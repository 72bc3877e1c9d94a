"""Where the network runs and in what precision: the device and autocast choices of training and inference."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from pathlib import Path

import torch

from sparseg.config import DEVICES, ENGINES, PRECISIONS
from sparseg.environment import cpu_model
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


def resolve_engine(device: torch.device, engine: str = "auto", precision: str = "auto") -> str:
    """"torch" or "openvino" for one of `ENGINES` on `device`; "auto" is OpenVINO on the CPU where it is
    installed (and always for int8), torch elsewhere. An engine or precision the device cannot run is an
    InputError."""
    if engine not in ENGINES:
        raise InputError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if device.type != "cpu":
        if engine == "openvino" or precision == "int8":
            raise InputError(f"{'--precision int8' if precision == 'int8' else '--engine openvino'}: "
                             f"the OpenVINO engine runs on the CPU, not on {device.type.upper()} (use --device cpu)")
        return "torch"
    installed = importlib.util.find_spec("openvino") is not None
    if engine == "torch":
        if precision == "int8":
            raise InputError("--precision int8 runs on the OpenVINO engine, not on torch")
        return "torch"
    if not installed and (engine == "openvino" or precision == "int8"):
        raise InputError("the OpenVINO engine is not installed (pip install -r requirements.txt)")
    return "openvino" if installed else "torch"


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast type for one of `PRECISIONS`, or None for full fp32.

    "auto": bf16 on CUDA GPUs that have it (fp16 on others), none on the CPU, so a CPU's masks are
    fp32's; "bf16": bf16 on the CPU too; "fp32": none anywhere.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "fp32":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and precision == "bf16":
        return torch.bfloat16
    return None  # fp32, and int8, which only the OpenVINO engine runs


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """Mixed precision as `autocast_dtype` decides; no autocast for full fp32."""
    dtype = autocast_dtype(device, precision)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def precision_name(device: torch.device, precision: str = "auto", engine: str = "torch") -> str:
    """What the network computes in: fp32, bf16, fp16 or int8."""
    if engine == "openvino":
        return "fp32" if precision == "auto" else precision
    dtype = autocast_dtype(device, precision)
    return "fp32" if dtype is None else str(dtype).removeprefix("torch.")


def describe(device: torch.device, precision: str = "auto", engine: str = "torch") -> str:
    """One line for a job's log: the device by name, the engine and the precision it computes in."""
    name = f"GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else f"CPU {cpu_model()}"
    computes = precision_name(device, precision, engine)
    if engine == "openvino":
        return f"{name}, OpenVINO {computes}"
    return f"{name}, torch {computes}{'' if computes == 'fp32' else ' autocast'}"


def training_precision(device: torch.device) -> str:
    """Mixed precision for training on CUDA; fp32 on the CPU, where training is for tests and demos."""
    return "auto" if device.type == "cuda" else "fp32"


def gradient_scaler(device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for fp16 autocast (CUDA GPUs without bf16); a pass-through everywhere else."""
    return torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
