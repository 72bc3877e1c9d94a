"""Inference per case, end to end (read, preprocess, forward, resample, write), for each engine and precision.

    python bench/inference.py [--device cpu|cuda] [--model paper|demo] [--cases 256x64] [--whole-head] [--repeats 3]

`paper` is the paper's network with random weights (timing only: with random
weights the masks mean nothing); `demo` the trained demo weights. By default
each case is a synthetic volume with brain on every slice (`sparseg synth
--full-brain`), like most slices of a real one; `--whole-head` uses the
default synthetic grid instead, where a quarter to all slices hold brain.

Rows on the CPU: torch eager fp32 (NCHW, then channels_last, the former
default), torch bf16 autocast (CPUs with native bf16 only), OpenVINO fp32
(the default), OpenVINO bf16 (native bf16 only), OpenVINO int8, and int8 with
the opt-in crop to the brain's box. The int8 model is calibrated here on
slices of four other synthetic cases (never the benchmark case), as
`sparseg quantize` would on training cases. On a GPU: torch fp32, channels_last,
bf16 (the defaults), and the crop. Each (case, setting) runs in a fresh
process after one warm-up case, so its peak memory is its own.

First the ruler: on the CPU, each precision's peak is the best matrix product
the machine runs (one large MatMul compiled by OpenVINO in f32, bf16 and int8,
best of three sizes, or torch's, whichever is faster), printed beside the
theoretical peak of the instruction set (cores x nominal clock x operations
per cycle) and the CPU's family and model. Then one table: median seconds end
to end and in the forward pass, peak memory, achieved GFLOP/s (or GOP/s) of
the forward pass and its share of each measured peak, the speed-up over torch
eager fp32, and the Dice of each mask against torch fp32's. Compare settings
by their ratios within one run: seconds differ by 2x between CPU generations.
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
from sparseg.inference import Predictor
from sparseg.io import read_image, read_mask
from sparseg.metrics import dice
from sparseg.model import load_checkpoint
from sparseg.runtime import cpu_has_native_bf16
from sparseg.segment import predict_case

from common import (
    checkpoint_for,
    forward_flops,
    input_case,
    int8_matmul_peak_gops,
    machine_line,
    matmul_peak_gflops,
    openvino_matmul_peaks,
    parse_shape,
    quantize_for_bench,
    synchronize,
    theoretical_peaks,
)

PLAIN = "torch fp32 (NCHW)"
CPU_SETTINGS = {
    PLAIN: InferenceConfig(engine="torch", precision="fp32", channels_last=False),
    "torch fp32 channels_last (the former CPU default)": InferenceConfig(engine="torch", precision="fp32"),
    "torch bf16 autocast": InferenceConfig(engine="torch", precision="bf16"),
    "OpenVINO fp32 (the CPU default)": InferenceConfig(engine="openvino", precision="fp32"),
    "OpenVINO bf16": InferenceConfig(engine="openvino", precision="bf16"),
    "OpenVINO int8 (opt-in)": InferenceConfig(engine="openvino", precision="int8"),
    "OpenVINO int8 + crop to the brain's box (opt-in)": InferenceConfig(engine="openvino", precision="int8",
                                                                        crop_to_brain=True),
}
GPU_SETTINGS = {
    PLAIN: InferenceConfig(engine="torch", precision="fp32", channels_last=False),
    "torch fp32 channels_last": InferenceConfig(engine="torch", precision="fp32"),
    "torch bf16 autocast (the GPU default)": InferenceConfig(engine="torch"),
    "torch bf16 + crop to the brain's box (opt-in)": InferenceConfig(engine="torch", crop_to_brain=True),
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
    height, width = window.rows.stop - window.rows.start, window.cols.stop - window.cols.start
    gpu_peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return {"seconds": float(np.median(totals)), "forward": float(np.median(forwards)), "peak_rss_mib": peak_rss_mib(),
            "peak_gpu_mib": gpu_peak, "slices": len(window.slices), "frame": [height, width],
            "engine": predictor.runtime.engine, "precision": predictor.runtime.precision}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", choices=("paper", "demo"), default="paper")
    parser.add_argument("--cases", nargs="+", default=["256x64"], help="SIZExDEPTH of each synthetic case")
    parser.add_argument("--whole-head", action="store_true",
                        help="the default synthetic grid (brain on some slices) instead of brain on every slice")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", metavar="WORD",
                        help="only the settings whose name holds one of these words (e.g. OpenVINO); the first row "
                             "is always the plain torch fp32 reference")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    device = torch.device(args.device)
    print(machine_line(device))
    native = device.type == "cuda" or cpu_has_native_bf16()
    if device.type == "cpu":
        # The ruler: per precision the best GEMM this machine has (OpenVINO's 1x1 convolution or MatMul, or torch's
        # matrix product), beside the theoretical peak of its instruction set; the shares below are of the measured one.
        measured = openvino_matmul_peaks(torch.get_num_threads())
        torch_rates = {"fp32": matmul_peak_gflops(device, torch.float32),
                       "bf16": matmul_peak_gflops(device, torch.bfloat16) if native else float("nan"),
                       "int8": int8_matmul_peak_gops()}
        theoretical, how = theoretical_peaks()
        peaks = {}
        for name in ("fp32", "bf16", "int8"):
            rate, size, kernel = measured[name]
            peaks[name] = max(rate, torch_rates[name]) if native or name != "bf16" else float("nan")
            print(f"{name} peak {peaks[name]:.0f} G(FL)OP/s: OpenVINO {rate:.0f} (best: {kernel}, size {size}), "
                  f"torch {torch_rates[name]:.0f}; theoretical {theoretical[name]:.0f}")
        print(f"theoretical: {how}")
        if not native:
            print("no native bf16 on this CPU: the bf16 rows are skipped")
    else:
        peaks = {"fp32": matmul_peak_gflops(device, torch.float32), "bf16": matmul_peak_gflops(device, torch.bfloat16),
                 "int8": float("nan")}
        print(f"matrix-product peaks (torch): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
    fp32_peak, bf16_peak, int8_peak = peaks["fp32"], peaks["bf16"], peaks["int8"]
    settings = CPU_SETTINGS if device.type == "cpu" else GPU_SETTINGS
    settings = {k: v for k, v in settings.items() if native or v.precision != "bf16"}
    if args.only:
        settings = {k: v for k, v in settings.items() if k == PLAIN or any(word in k for word in args.only)}
    layout = "whole head (default synthetic grid)" if args.whole_head else "brain on every slice"
    print(f"model: {args.model}; cases: {layout}; {args.repeats} repeats after one warm-up case; medians\n")
    print("| case | setting | slices run | frame | s/case | forward s | peak RSS MiB | peak GPU MiB "
          "| forward G(FL)OP/s | % fp32 peak | % bf16 peak | % int8 peak | speed-up vs torch fp32 "
          "| Dice vs torch fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = checkpoint_for(args.model, tmp)
        if checkpoint.parent != tmp:  # the demo weights: a copy, so the exports stay out of the checkout
            copy = tmp / checkpoint.name
            copy.write_bytes(checkpoint.read_bytes())
            checkpoint = copy
        loaded = load_checkpoint(checkpoint)
        flops_of = {}
        for shape in args.cases:
            size, depth = parse_shape(shape)
            case = input_case(tmp / f"case-{shape}", size, depth, full_brain=not args.whole_head)
            if any(s.precision == "int8" for s in settings.values()):
                quantize_for_bench(checkpoint, size, depth, full_brain=not args.whole_head)
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
                frame = tuple(row["frame"])
                if frame not in flops_of:
                    flops_of[frame] = forward_flops(loaded.module, (1, loaded.config.in_channels, *frame),
                                                    torch.device("cpu"))
                rate = row["slices"] * flops_of[frame] / row["forward"] / 1e9
                shares = {name_: f"{100 * rate / peak:.0f}%" if np.isfinite(peak) else ""
                          for name_, peak in (("fp32", fp32_peak), ("bf16", bf16_peak), ("int8", int8_peak))}
                print(f"| {size}x{size}x{depth} | {name} | {row['slices']} | {frame[0]}x{frame[1]} "
                      f"| {row['seconds']:.2f} | {row['forward']:.2f} | {row['peak_rss_mib']:.0f} "
                      f"| {row['peak_gpu_mib']:.0f} | {rate:.0f} | {shares['fp32']} | {shares['bf16']} "
                      f"| {shares['int8']} | {plain_seconds / row['seconds']:.2f}x "
                      f"| {dice(plain_mask, mask):.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
