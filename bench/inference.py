"""Inference per case, end to end (read, preprocess, forward, resample, write), for each speed setting.

    python bench/inference.py [--device cpu|cuda] [--model paper|demo] [--cases 256x64 128x24] [--repeats 3]

`paper` is the paper's network with random weights (timing only); `demo` the
trained demo weights. Settings are added one at a time, from plain (fp32,
every whole slice, NCHW) to the defaults of `InferenceConfig` (fp32 on the
CPU, bf16 autocast on a GPU), then the opt-in crop to the brain's box. The
bf16 row runs on GPUs and on CPUs with native bf16 only. Each (case,
setting) runs in a fresh process after one warm-up case, so its peak memory
is its own. Prints one table: median seconds end to end and in the forward
pass, peak memory, achieved GFLOP/s of the forward pass and its share of the
fp32 and bf16 matrix-product peaks measured in the same run, the speed-up
over plain, and the Dice of each mask against the plain one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from sparseg import inference
from sparseg.cases import find_input_case
from sparseg.config import InferenceConfig
from sparseg.environment import peak_rss_mib
from sparseg.hardware import cpu_has_native_bf16
from sparseg.inference import Predictor
from sparseg.io import read_image, read_mask
from sparseg.jobs import predict_case
from sparseg.metrics import dice

from common import checkpoint_for, forward_flops, input_case, machine_line, matmul_peak_gflops, parse_shape, synchronize

BF16 = "+ bf16 autocast (the defaults on a GPU)"
SETTINGS = {
    "plain fp32": InferenceConfig(skip_empty_slices=False, precision="fp32", channels_last=False),
    "+ channels_last": InferenceConfig(skip_empty_slices=False, precision="fp32", channels_last=True),
    "+ only slices with brain (the defaults on the CPU)": InferenceConfig(precision="fp32", channels_last=True),
    BF16: InferenceConfig(precision="bf16"),
    "the defaults + crop to the brain's box (opt-in)": InferenceConfig(crop_to_brain=True),
}


def worker(spec: dict) -> dict:
    """Time one setting on one case in this process; return the numbers as a dict."""
    device = torch.device(spec["device"])
    settings = InferenceConfig(**spec["settings"])
    predictor = Predictor.load([Path(spec["checkpoint"])], device, inference=settings)
    case = find_input_case(Path(spec["case"]))
    forward_seconds = []
    plain_predict = inference.predict_slices

    def timed_predict(*args, **kwargs):
        synchronize(device)
        started = time.perf_counter()
        result = plain_predict(*args, **kwargs)
        synchronize(device)
        forward_seconds.append(time.perf_counter() - started)
        return result

    inference.predict_slices = timed_predict
    out = Path(spec["out"])
    predict_case(case, predictor, out / "warmup.mha")
    totals, forwards = [], []
    for repeat in range(spec["repeats"]):
        forward_seconds.clear()
        summary = predict_case(case, predictor, out / "mask.mha")
        totals.append(summary.seconds)
        forwards.append(sum(forward_seconds))
    window = predictor.window(read_image(case.adc).array)
    n_slices = len(window.slices)
    height, width = window.rows.stop - window.rows.start, window.cols.stop - window.cols.start
    flops = n_slices * forward_flops(predictor.models[0], (1, predictor.config.in_channels, height, width), device)
    gpu_peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return {"seconds": float(np.median(totals)), "forward": float(np.median(forwards)), "flops": flops,
            "peak_rss_mib": peak_rss_mib(), "peak_gpu_mib": gpu_peak, "slices": n_slices, "frame": f"{height}x{width}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", choices=("paper", "demo"), default="paper")
    parser.add_argument("--cases", nargs="+", default=["256x64", "128x24"], help="SIZExDEPTH of each synthetic case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    device = torch.device(args.device)
    print(machine_line(device))
    fp32_peak = matmul_peak_gflops(device, torch.float32)
    native = device.type == "cuda" or cpu_has_native_bf16()
    bf16_peak = matmul_peak_gflops(device, torch.bfloat16) if native else float("nan")
    print(f"matrix-product peak: fp32 {fp32_peak:.0f} GFLOP/s, "
          + (f"bf16 {bf16_peak:.0f} GFLOP/s" if native else "no native bf16 on this CPU: the bf16 row is skipped"))
    settings = {k: v for k, v in SETTINGS.items() if native or k != BF16}
    print(f"model: {args.model}; {args.repeats} repeats after one warm-up case; medians\n")
    print("| case | setting | slices run | frame | seconds/case | forward s | peak RSS MiB | peak GPU MiB "
          "| forward GFLOP/s | % fp32 peak | % bf16 peak | speed-up vs plain | Dice vs plain |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = checkpoint_for(args.model, tmp)
        for shape in args.cases:
            size, depth = parse_shape(shape)
            case = input_case(tmp / f"case-{shape}", size, depth)
            plain_seconds, plain_mask = None, None
            for number, (name, setting) in enumerate(settings.items()):
                out = tmp / f"out-{shape}-{number}"
                out.mkdir()
                spec = {"device": args.device, "settings": asdict(setting), "checkpoint": str(checkpoint),
                        "case": str(case), "out": str(out), "repeats": args.repeats}
                result = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                                        capture_output=True, text=True)
                if result.returncode != 0:
                    print(result.stderr[-2000:], file=sys.stderr)
                    return 1
                row = json.loads(result.stdout.strip().splitlines()[-1])
                mask = read_mask(out / "mask.mha")[0]
                if plain_seconds is None:
                    plain_seconds, plain_mask = row["seconds"], mask
                gflops = row["flops"] / row["forward"] / 1e9
                print(f"| {size}x{size}x{depth} | {name} | {row['slices']} | {row['frame']} | {row['seconds']:.2f} "
                      f"| {row['forward']:.2f} | {row['peak_rss_mib']:.0f} | {row['peak_gpu_mib']:.0f} | {gflops:.0f} "
                      f"| {100 * gflops / fp32_peak:.0f}% | {100 * gflops / bf16_peak:.0f}% "
                      f"| {plain_seconds / row['seconds']:.2f}x | {dice(plain_mask, mask):.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
