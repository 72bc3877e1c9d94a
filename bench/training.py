"""Training throughput: slices per second of forward + backward + optimiser step with the run's loss.

    python bench/training.py [--device cpu|cuda] [--model paper|demo] [--batch 16] [--steps 10] [--profile]

Random 3-channel slices and masks at the config's slice size; mixed precision
and channels-last on CUDA as in `sparseg train`, fp32 on the CPU. Prints one
table with the achieved GFLOP/s of a training step (forward and backward FLOPs
counted by PyTorch) and its share of the matrix-product peaks measured in the
same run. On CUDA a second row computes the Log-Hausdorff distance fields on
the host with scipy, as training did before they moved to the GPU, so the two
are compared in one run; `--profile` adds the ten costliest operations of one
step (torch.profiler).
"""

from __future__ import annotations

import argparse
import sys
from unittest import mock

import torch
from torch.utils.flop_counter import FlopCounterMode

from sparseg import losses
from sparseg.config import load_run_config
from sparseg.runtime import training_runtime
from sparseg.train import Optimisation

from common import ROOT, machine_line, matmul_peak_gflops, median_seconds, synchronize


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", choices=("paper", "demo"), default="demo")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="print the costliest operations of one step")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(machine_line(device))
    fp32_peak = matmul_peak_gflops(device, torch.float32)
    bf16_peak = matmul_peak_gflops(device, torch.bfloat16) if device.type == "cuda" else float("nan")
    bf16_text = f", bf16 {bf16_peak:.0f} GFLOP/s" if device.type == "cuda" else ""
    print(f"matrix-product peak: fp32 {fp32_peak:.0f} GFLOP/s{bf16_text}")

    config = load_run_config(ROOT / "resources" / "configs" / f"{args.model}.json")
    runtime = training_runtime(device.type)
    optimisation = Optimisation.build(config, runtime)  # the trainer's network, optimiser, loss and step
    optimisation.network.train()
    precision = runtime.precision
    size = config.preprocessing.slice_size
    images = torch.rand(args.batch, config.in_channels, *size, device=device)
    targets = (torch.rand(args.batch, 1, *size, device=device) > 0.97).float()

    def step() -> None:
        optimisation.step(images, targets)

    distance_field = losses.distance_field

    def on_host(masks: torch.Tensor) -> torch.Tensor:  # the earlier way: copy to the host, scipy, copy back
        return distance_field(masks.cpu()).to(masks.device)

    placements = {"GPU (torch)": None, "host (scipy)": on_host} if device.type == "cuda" else {"host (scipy)": None}
    rows = []
    for placement, replacement in placements.items():
        with mock.patch.object(losses, "distance_field", replacement or distance_field):
            for _ in range(3):
                step()
            with FlopCounterMode(display=False) as counter:
                step()
            flops = float(counter.get_total_flops())
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds = median_seconds(step, args.steps, device)
            if args.profile and replacement is None:
                print(profile_table(step, device))
        gflops = flops / seconds / 1e9
        gpu_mib = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
        rows.append(f"| {args.model} | {placement} | {args.batch} | {seconds:.3f} | {args.batch / seconds:.1f} "
                    f"| {flops / 1e9:.0f} | {gflops:.0f} | {100 * gflops / fp32_peak:.0f}% "
                    f"| {100 * gflops / bf16_peak:.0f}% "
                    f"| {gpu_mib:.0f} |")
    print(f"model: {args.model} ({config.model.encoder}, {size[0]}x{size[1]}), batch {args.batch}, "
          f"precision {precision}{'' if precision == 'fp32' else ' autocast'}; median of {args.steps} steps\n")
    print("| model | distance fields on | batch | s/step | slices/s | GFLOP/step | achieved GFLOP/s | % fp32 peak "
          "| % bf16 peak | peak GPU MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


def profile_table(step, device: torch.device, rows: int = 10) -> str:
    """The costliest operations of one step, by device time on CUDA (else CPU time)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        step()
        synchronize(device)
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    return profiler.key_averages().table(sort_by=key, row_limit=rows)


if __name__ == "__main__":
    sys.exit(main())
