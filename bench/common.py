"""What the benchmarks share: the machine line, matmul peaks, FLOP counts, synthetic cases, the paper model."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from sparseg.config import InferenceConfig, RunConfig, load_run_config
from sparseg.environment import machine_summary
from sparseg.model import build_model, save_checkpoint
from sparseg.synth import SynthConfig, write_input_case

ROOT = Path(__file__).resolve().parent.parent
DEMO_WEIGHTS = ROOT / "model_weights" / "sparseg-demo.safetensors"


def machine_line(device: torch.device) -> str:
    gpu = f"; GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return f"machine: {machine_summary()}{gpu}; torch threads {torch.get_num_threads()}"


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
    return write_int8(checkpoint, calibration, {"calibration": {"split": "bench: synthetic cases of seed 99"}}).xml


def parse_shape(text: str) -> tuple[int, int]:
    """"256x64" -> (in-plane size 256, 64 slices)."""
    size, depth = text.lower().split("x")
    return int(size), int(depth)

