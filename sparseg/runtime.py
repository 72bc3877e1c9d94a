"""Where and how the network runs, decided once: the requested device, engine and precision and this machine in,
one resolved `Runtime` out.

`resolve_runtime` is the only place that knows what "auto" means and which
combinations a machine can run. Everything downstream takes the `Runtime` it
returns: the `Predictor`, the job's log line, the resume key of each mask
(`Runtime.key`), cross-validation's out-of-fold masks and the QA report.

A GPU that is there but unusable is never silent. When NVIDIA device nodes
exist or `nvidia-smi` answers and torch still cannot use a GPU (most often a
driver older than the one torch's CUDA build needs), "auto" runs on the CPU
with a WARNING that names the driver, `torch.version.cuda` and the driver that
build needs; `--device cuda` fails with the same sentence.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from sparseg.config import DEVICES, ENGINES, PRECISIONS
from sparseg.environment import cpu_model
from sparseg.errors import InputError

log = logging.getLogger(__name__)

CUDA_DRIVER_NEEDED = {"11": "450.80", "12": "525.60", "13": "580.65"}
"""The oldest Linux NVIDIA driver each CUDA major version runs on (NVIDIA's CUDA compatibility table; minor-version
compatibility within a major version). torch's PyPI wheels name their CUDA in `torch.version.cuda`."""

SMI_TIMEOUT_S = 5
"""How long `nvidia-smi` may take to say the driver's version before the job goes on without it."""
DRIVER_VERSION = re.compile(r"\d{2,4}(\.\d{1,3}){1,2}")
"""What an NVIDIA driver version looks like (525.60.13); anything else an nvidia-smi prints is not taken for one."""

OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
"""OpenVINO's inference precision per SPARSeg precision. It must be set: OpenVINO's CPU default is bf16 on
processors with native bf16, which would change the masks. For int8, the layers left unquantized run in f32."""


@dataclass(frozen=True)
class Runtime:
    """A resolved place to run the network: nothing in it is "auto"."""

    device: torch.device
    engine: str
    """"torch" or "openvino"."""
    precision: str
    """What the network computes in: "fp32", "bf16", "fp16" or "int8"."""
    gpu: str = ""
    """On CUDA: the GPU's name, its driver and torch's CUDA version, for the log."""

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """torch's autocast type, or None for fp32 (and for OpenVINO, which takes `openvino_hint` instead)."""
        if self.engine != "torch" or self.precision == "fp32":
            return None
        return {"bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision as resolved; no autocast for fp32."""
        dtype = self.autocast_dtype
        return contextlib.nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    @property
    def openvino_hint(self) -> str:
        return OPENVINO_HINTS[self.precision]

    def key(self) -> str:
        """The settings part of a mask's resume key: what decides voxels besides the inputs and the weights."""
        return f"device={self.device.type} engine={self.engine} precision={self.precision}"

    def describe(self) -> str:
        """One line for a job's log: the device by name, the engine and the precision it computes in."""
        where = f"GPU {self.gpu}" if self.device.type == "cuda" else f"CPU {cpu_model()}"
        if self.engine == "openvino":
            return f"{where}, OpenVINO {self.precision}"
        return f"{where}, torch {self.precision}{'' if self.precision == 'fp32' else ' autocast'}"


def resolve_runtime(device: str = "auto", engine: str = "auto", precision: str = "auto",
                    probe: NvidiaProbe | None = None) -> Runtime:
    """The one interpretation of the requested settings on this machine (`probe`: what the NVIDIA side shows,
    read when needed). "auto" device: the GPU when torch can use one, else the CPU (with `gpu_problem`'s warning
    when a GPU is there but unusable). "auto" engine: OpenVINO on the CPU where it is installed (always for int8),
    torch elsewhere. "auto" precision: bf16 autocast on CUDA GPUs that have it (fp16 on others), fp32 on the CPU.
    A combination the machine cannot run is an InputError."""
    for value, name, choices in ((device, "device", DEVICES), (engine, "engine", ENGINES),
                                 (precision, "precision", PRECISIONS)):
        if value not in choices:
            raise InputError(f"{name} {value!r}: expected one of {', '.join(choices)}")
    place = _device(device, probe)
    if place.type != "cpu":
        if engine == "openvino" or precision == "int8":
            raise InputError(f"{'--precision int8' if precision == 'int8' else '--engine openvino'}: the OpenVINO "
                             f"engine runs on the CPU, not on {place.type.upper()} (use --device cpu)")
        gpu_dtype = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return Runtime(place, "torch", gpu_dtype if precision == "auto" else precision, describe_gpu(place))
    if engine == "torch" and precision == "int8":
        raise InputError("--precision int8 runs on the OpenVINO engine, not on torch")
    installed = importlib.util.find_spec("openvino") is not None
    if not installed and (engine == "openvino" or precision == "int8"):
        raise InputError("the OpenVINO engine is not installed (pip install -r requirements.txt)")
    chosen = "openvino" if engine == "openvino" or (engine == "auto" and installed) else "torch"
    precision = "fp32" if precision == "auto" else precision
    if precision == "bf16" and not cpu_has_native_bf16():
        precision = _bf16_without_native(chosen)
    return Runtime(place, chosen, precision)


def _bf16_without_native(engine: str) -> str:
    """What bf16 on a CPU without native bf16 (AVX512_BF16 or AMX) runs as, warned: OpenVINO compiles fp32 without
    a word, so the run is recorded as fp32; torch emulates bf16, slower than fp32, with masks a few voxels apart."""
    if engine == "openvino":
        log.warning("--precision bf16: this CPU (%s) has no native bf16 (AVX512_BF16 or AMX), so OpenVINO runs fp32; "
                    "the masks and their record say fp32", cpu_model())
        return "fp32"
    log.warning("--precision bf16: this CPU (%s) has no native bf16 (AVX512_BF16 or AMX): torch emulates it, "
                "slower than fp32 and with masks a few voxels from fp32's (docs/engines.md)", cpu_model())
    return "bf16"


def _device(name: str, probe: NvidiaProbe | None) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    problem = gpu_problem(probe or probe_nvidia())
    if name == "cuda":
        raise InputError(f"--device cuda: {problem or 'no NVIDIA GPU is visible to this process'}")
    if problem:
        log.warning("%s; the job runs on the CPU, not the GPU", problem)
    return torch.device("cpu")


def training_runtime(device: str = "auto") -> Runtime:
    """Training's runtime: torch, bf16/fp16 autocast on CUDA, fp32 on the CPU (where training is for tests and
    demos)."""
    return resolve_runtime(device, "torch", "auto")


def gradient_scaler(runtime: Runtime) -> torch.amp.GradScaler:
    """Loss scaling for fp16 autocast (CUDA GPUs without bf16); a pass-through everywhere else."""
    return torch.amp.GradScaler(runtime.device.type, enabled=runtime.precision == "fp16")


def describe_gpu(device: torch.device) -> str:
    """The GPU's name, its driver and torch's CUDA version."""
    driver = probe_nvidia().driver or "unknown"
    return f"{torch.cuda.get_device_name(device)} (driver {driver}, torch CUDA {torch.version.cuda})"


ISA_CAP = "ONEDNN_MAX_CPU_ISA"
"""oneDNN's cap on the instruction set its kernels use (torch's and OpenVINO's CPU kernels alike); set, the flags
above the cap do not count (a CPU with AVX-512 runs as an AVX2 one under ONEDNN_MAX_CPU_ISA=AVX2)."""
ISA_FLAGS_DROPPED = {
    "AVX2": ("avx512", "avx_vnni", "amx"),
    "AVX2_VNNI": ("avx512", "amx"),
    "AVX2_VNNI_2": ("avx512", "amx"),
    "AVX512_CORE": ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx"),
    "AVX512_CORE_VNNI": ("avx512_bf16", "amx"),
    "AVX512_CORE_BF16": ("amx",),
}
"""The /proc/cpuinfo flag prefixes each oneDNN cap leaves out (caps not listed leave every flag)."""


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of this CPU (/proc/cpuinfo) that its kernels may use: those above `ISA_CAP`'s cap
    left out. Empty where /proc/cpuinfo cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return capped_flags(set(line.partition(":")[2].split()), os.environ.get(ISA_CAP, ""))


def capped_flags(flags: set[str], cap: str) -> frozenset[str]:
    """`flags` without those above oneDNN's instruction-set `cap` ("" or an unknown cap: all of them)."""
    dropped = ISA_FLAGS_DROPPED.get(cap.strip().upper(), ())
    return frozenset(f for f in flags if not dropped or not f.startswith(dropped))


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), where bf16 pays."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


@dataclass(frozen=True)
class NvidiaProbe:
    """What this machine shows of NVIDIA's side, without torch."""

    device_nodes: tuple[str, ...] = ()
    """/dev/nvidia0, /dev/nvidiactl, ...: the driver is loaded and the container was given GPUs."""
    visible_devices: str | None = None
    """NVIDIA_VISIBLE_DEVICES (the image sets it to "all", so alone it shows only that GPUs were allowed)."""
    driver: str | None = None
    """The driver's version, from nvidia-smi or /proc/driver/nvidia/version."""
    smi_answered: bool = False

    @property
    def gpu_expected(self) -> bool:
        """Whether a GPU is evidently there: device nodes exist or nvidia-smi answered."""
        return bool(self.device_nodes) or self.smi_answered


def probe_nvidia(dev: Path = Path("/dev"), smi: str | None = None,
                 proc_version: Path = Path("/proc/driver/nvidia/version")) -> NvidiaProbe:
    """Device nodes under `dev`, NVIDIA_VISIBLE_DEVICES, and the driver version from `nvidia-smi` (found on PATH
    unless given) or from `proc_version`."""
    try:
        nodes = tuple(sorted(str(p) for p in dev.glob("nvidia*") if p.name != "nvidia-caps"))
    except OSError:
        nodes = ()
    driver, answered = None, False
    smi = smi or shutil.which("nvidia-smi")
    if smi:
        try:
            done = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                                  capture_output=True, timeout=SMI_TIMEOUT_S)
            lines = done.stdout.decode("utf-8", errors="replace").strip().splitlines()
            answered = done.returncode == 0 and bool(lines)
            driver = lines[0].strip() if answered and DRIVER_VERSION.fullmatch(lines[0].strip()) else None
        except subprocess.TimeoutExpired:
            log.warning("%s did not answer within %d s: the GPU's driver is not known", smi, SMI_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError):
            pass
    if driver is None:
        with contextlib.suppress(OSError, ValueError):
            words = proc_version.read_text(errors="replace").split()
            driver = next((w for w in words if DRIVER_VERSION.fullmatch(w)), None)
    return NvidiaProbe(nodes, os.environ.get("NVIDIA_VISIBLE_DEVICES"), driver, answered)


def cuda_driver_needed(cuda: str | None = None) -> str:
    """The oldest driver that torch's CUDA build (`torch.version.cuda` by default) runs on."""
    cuda = cuda if cuda is not None else torch.version.cuda
    if not cuda:
        return "none: this torch is a CPU-only build"
    return CUDA_DRIVER_NEEDED.get(cuda.split(".")[0], "unknown")


def gpu_problem(probe: NvidiaProbe, cuda: str | None = None) -> str | None:
    """What is wrong when a GPU is there but torch cannot use it (None when none is evidently there)."""
    cuda = cuda if cuda is not None else torch.version.cuda
    if not probe.gpu_expected:
        if probe.visible_devices not in (None, "", "void", "none"):
            log.info("NVIDIA_VISIBLE_DEVICES=%s but no NVIDIA device node or nvidia-smi here: no GPU was given to "
                     "this container (docker run --gpus all)", probe.visible_devices)
        return None
    evidence = (f"NVIDIA device nodes ({', '.join(probe.device_nodes[:3])})" if probe.device_nodes
                else "nvidia-smi answers")
    if not cuda:
        return f"{evidence} but this torch ({torch.__version__}) is a CPU-only build"
    return (f"{evidence} but torch cannot use the GPU: NVIDIA driver {probe.driver or 'unknown'}, this torch "
            f"({torch.__version__}) is built for CUDA {cuda}, which needs driver {cuda_driver_needed(cuda)} or "
            "later")
