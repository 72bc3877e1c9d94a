"""What the benchmarks share: the machine line, matmul peaks, FLOP counts, synthetic cases, the paper model."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from sparseg.config import InferenceConfig, RunConfig, load_run_config
from sparseg.environment import machine_summary
from sparseg.model import build_model, save_checkpoint
from sparseg.runtime import ISA_CAP, capped_flags
from sparseg.synth import SynthConfig, write_input_case

ROOT = Path(__file__).resolve().parent.parent
DEMO_WEIGHTS = ROOT / "model_weights" / "sparseg-demo.safetensors"


def cpu_info() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_generation(info: dict[str, str] | None = None) -> str:
    """The CPU's vendor, family and model, with AMD's Zen generation where the family tells it: figures from
    different CPUs of one name ("AMD EPYC" in a virtual machine) differ by up to 2x."""
    info = cpu_info() if info is None else info
    vendor, family, model = info.get("vendor_id", "?"), info.get("cpu family", "?"), info.get("model", "?")
    flags = set(info.get("flags", "").split())
    zen = {"23": "Zen 1/2", "25": "Zen 4" if "avx512f" in flags else "Zen 3", "26": "Zen 5"}
    generation = f" ({zen[family]})" if vendor == "AuthenticAMD" and family in zen else ""
    cap = os.environ.get(ISA_CAP, "")
    capped = f", kernels capped at {cap} ({ISA_CAP})" if cap else ""
    return f"{vendor} family {family} model {model}{generation}{capped}"


def theoretical_peaks(info: dict[str, str] | None = None) -> tuple[dict[str, float], str]:
    """Per precision, cores x clock x operations per cycle (GFLOP/s or GOP/s; an operation is a multiply or an
    add), from the instruction set, and the assumptions: two FMA pipes per core; 16 fp32 lanes with AVX-512
    (8 on Zen 4, which runs it on 256-bit pipes), 8 with AVX2; bf16 dot products (AVX512_BF16) twice fp32;
    int8 dot products (VNNI) four times fp32. AMX is not modelled. The clock is the nominal one /proc/cpuinfo
    gives (no boost)."""
    info = cpu_info() if info is None else info
    flags = capped_flags(set(info.get("flags", "").split()), os.environ.get(ISA_CAP, ""))
    try:
        ghz = float(info.get("cpu MHz", "nan")) / 1000
    except ValueError:
        ghz = float("nan")
    zen4 = info.get("vendor_id") == "AuthenticAMD" and info.get("cpu family") == "25"
    lanes = 8 if zen4 or "avx512f" not in flags else 16
    if "avx512f" not in flags and "avx2" not in flags:
        lanes = 4
    fp32 = len(os.sched_getaffinity(0)) * ghz * 2 * 2 * lanes
    peaks = {"fp32": fp32,
             "bf16": 2 * fp32 if "avx512_bf16" in flags else float("nan"),
             "int8": 4 * fp32 if flags & {"avx512_vnni", "avx_vnni"} else float("nan")}
    how = (f"{len(os.sched_getaffinity(0))} cores x {ghz:.2f} GHz (nominal) x 2 FMA pipes x {lanes} fp32 lanes x 2"
           + (", bf16 x2 (AVX512_BF16)" if "avx512_bf16" in flags else "")
           + (", int8 x4 (VNNI)" if flags & {"avx512_vnni", "avx_vnni"} else ""))
    return peaks, how


def openvino_matmul_peaks(threads: int, sizes: tuple[int, ...] = (256, 512, 1024), seconds: float = 1.0
                          ) -> dict[str, tuple[float, int, str]]:
    """Per precision (fp32, bf16, int8), the best achieved G(FL)OP/s of one matrix product compiled by OpenVINO for
    the CPU, the size that gave it, and the op and kernel that ran it: the best GEMM this machine has (OpenVINO's
    oneDNN kernels beat torch's own matrix product on some CPUs by 2x). Two products of the same size are tried, C
    in `sizes`: a 1x1 convolution of a (1, C, 64, 64) input with a (C, C, 1, 1) weight, as the network's own layers
    compile, and a (4096 x C) x (C x C) MatMul. int8 is each between FakeQuantize nodes, as NNCF writes them: the
    convolution runs in u8 x s8 on every instruction set (AVX2 by vpmaddubsw, VNNI by vpdpbusd; the kernel's name
    says which), where the MatMul did not reach the int8 kernels on an AVX2 CPU. bf16 is the fp32 model under the
    bf16 inference hint (CPUs without native bf16 emulate it, and the figure says so by being low)."""
    import openvino as ov
    from openvino import opset13 as ops

    core = ov.Core()
    pixels = 64

    def model_of(channels: int, int8: bool, op: str) -> ov.Model:
        rng = np.random.default_rng(0)
        shape = [1, channels, pixels, pixels] if op == "convolution" else [pixels * pixels, channels]
        x = ops.parameter(shape, np.float32)
        weight = (channels, channels, 1, 1) if op == "convolution" else (channels, channels)
        w = ops.constant(rng.standard_normal(weight).astype(np.float32))
        left, right = x, w
        if int8:
            def fake_quantize(node, low: float, high: float, levels: int):
                lo, hi = ops.constant(np.float32(low)), ops.constant(np.float32(high))
                return ops.fake_quantize(node, lo, hi, lo, hi, levels)
            left = fake_quantize(x, 0.0, 2.55, 256)
            right = fake_quantize(w, -1.27, 1.27, 255)
        if op == "convolution":
            return ov.Model([ops.convolution(left, right, [1, 1], [0, 0], [0, 0], [1, 1])], [x])
        return ov.Model([ops.matmul(left, right, False, False)], [x])

    def kernel(compiled) -> str:
        for op in compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if "layerType" in info and info["layerType"].astype(str) in ("Convolution", "FullyConnected", "MatMul"):
                return f"{info['primitiveType'].astype(str)}, {info['runtimePrecision'].astype(str)}"
        return "?"

    peaks: dict[str, tuple[float, int, str]] = {}
    for precision, hint, int8 in (("fp32", "f32", False), ("bf16", "bf16", False), ("int8", "f32", True)):
        best = (0.0, 0, "")
        for op, channels in ((op, c) for op in ("convolution", "matmul") for c in sizes):
            try:
                compiled = core.compile_model(model_of(channels, int8, op), "CPU", {
                    "INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads})
            except RuntimeError:  # bf16 under an instruction-set cap below it (ONEDNN_MAX_CPU_ISA=AVX2)
                best = (float("nan"), channels, "refused by the CPU plugin")
                break
            request = compiled.create_infer_request()
            shape = (1, channels, pixels, pixels) if op == "convolution" else (pixels * pixels, channels)
            data = np.abs(np.random.default_rng(1).standard_normal(shape)).astype(np.float32)
            request.infer([data])
            runs, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                request.infer([data])
                runs += 1
            rate = 2 * pixels * pixels * channels**2 * runs / (time.perf_counter() - started) / 1e9
            if rate > best[0]:
                best = (rate, channels, f"{op}, {kernel(compiled)}")
        peaks[precision] = best
    return peaks


def machine_line(device: torch.device) -> str:
    gpu = f"; GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (f"machine: {machine_summary()}{gpu}; torch threads {torch.get_num_threads()}\n"
            f"CPU: {cpu_generation()}")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, seconds: float = 2.0) -> float:
    """Achieved GFLOP/s of large square matrix products: the machine's practical peak for `dtype`."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        runs += 1
        if device.type == "cuda" and runs % 10:
            continue
        synchronize(device)
    synchronize(device)
    return 2 * n**3 * runs / (time.perf_counter() - started) / 1e9


def int8_matmul_peak_gops(seconds: float = 2.0) -> float:
    """Achieved GOP/s of large int8 matrix products on the CPU (int32 accumulation, VNNI where there is)."""
    n = 2048
    a = torch.randint(-100, 100, (n, n), dtype=torch.int8)
    b = torch.randint(-100, 100, (n, n), dtype=torch.int8)
    torch._int_mm(a, b)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        torch._int_mm(a, b)
        runs += 1
    return 2 * n**3 * runs / (time.perf_counter() - started) / 1e9


def forward_flops(model: torch.nn.Module, shape: tuple[int, ...], device: torch.device) -> float:
    """FLOPs (2 per multiply-add) of one forward pass on an input of `shape`."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(shape, device=device))
    return float(counter.get_total_flops())


def median_seconds(run, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def paper_checkpoint(folder: Path) -> Path:
    """The paper's network (UNet++, Inception-v4, scSE) with random Xavier weights, as a checkpoint."""
    config: RunConfig = load_run_config(ROOT / "resources" / "configs" / "paper.json")
    torch.manual_seed(0)
    model = build_model(config.model, config.in_channels)
    return save_checkpoint(folder / "paper-random.safetensors", model.eval(), config)


def checkpoint_for(name: str, folder: Path) -> Path:
    """"paper" (random weights: timing only) or "demo" (the trained demo weights)."""
    return paper_checkpoint(folder) if name == "paper" else DEMO_WEIGHTS


def input_case(folder: Path, size: int, depth: int, seed: int = 5, full_brain: bool = False) -> Path:
    """A synthetic case of `size` x `size` x `depth` voxels in the /input layout (brain on every slice if
    `full_brain`)."""
    write_input_case(folder, seed=seed, config=SynthConfig().with_shape(size, depth, full_brain=full_brain))
    return folder


def quantize_for_bench(checkpoint: Path, size: int, depth: int, full_brain: bool, slices: int = 300) -> Path:
    """The int8 model of `checkpoint` for timing, calibrated on slices with brain of four synthetic cases of
    another seed than the benchmark's (never the benchmark case), as `sparseg quantize` would on training cases."""
    from sparseg.inference import Predictor
    from sparseg.quantization import calibration_slices, write_int8
    from sparseg.synth import generate_case

    fp32 = Predictor.load([checkpoint], torch.device("cpu"), inference=InferenceConfig(engine="openvino",
                                                                                         precision="fp32"))
    config = SynthConfig().with_shape(size, depth, full_brain=full_brain)
    cases = (generate_case(99, index, config) for index in range(4))
    calibration = calibration_slices(fp32, ((c.adc, c.z) for c in cases), slices)
    made = write_int8(checkpoint, calibration, {"calibration": {"split": "bench: synthetic cases of seed 99"}})
    return made.files[".xml"]


def parse_shape(text: str) -> tuple[int, int]:
    """"256x64" -> (in-plane size 256, 64 slices)."""
    size, depth = text.lower().split("x")
    return int(size), int(depth)

