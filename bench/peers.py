"""Seconds per case of SPARSeg against the 3D models of the other top BONBID-HIE entries, same case, same run.

    python bench/peers.py [--size 256] [--depth 64] [--whole-head] [--repeats 1] [--device cpu]

End to end for each (read ADC and Z_ADC, normalise, network, threshold, write
the mask), random weights, one warm-up case first, on a synthetic case with
brain on every slice (`--whole-head`: the default synthetic grid, where the
slices without brain are skipped by SPARSeg and run by the 3D models):
- SPARSeg: the paper's 2D UNet++ (Inception-v4, scSE) with the default
  inference settings (`sparseg.segment.predict_case`; on the CPU, OpenVINO fp32),
  with torch fp32 (the former CPU default), and, on the CPU, with the opt-in
  int8 model (calibrated on other synthetic cases, as in bench/inference.py);
- Swin-UNETR (MONAI), feature size 48, 128^3 sliding window, overlap 0.25, as
  in the Toubal et al. entry;
- a 3D U-Net of nnU-Net's plain-conv kind (MONAI DynUNet: instance norm, leaky
  ReLU, 32-320 filters, in-plane-only first strides for the anisotropic
  spacing), patch 48x192x192, Gaussian-weighted windows at 50% overlap, one
  fold, no test-time mirroring.
Prints one table with the ratio of each time to each SPARSeg setting's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.networks.nets import DynUNet, SwinUNETR

from sparseg.cases import find_input_case
from sparseg.config import InferenceConfig, PreprocessingConfig
from sparseg.inference import Predictor
from sparseg.io import read_image, write_mask
from sparseg.preprocessing import channel_maps
from sparseg.segment import predict_case

from common import checkpoint_for, input_case, machine_line, quantize_for_bench

PEER_INPUT = PreprocessingConfig(channels=("adc", "z"))
"""The 3D peers see ADC and Z_ADC, normalised as SPARSeg normalises them."""


def peer_models() -> dict[str, tuple[torch.nn.Module, tuple[int, int, int], float, str]]:
    """name -> (network, window (z, y, x), overlap, blend mode)."""
    torch.manual_seed(0)
    swin = SwinUNETR(in_channels=2, out_channels=1, feature_size=48, spatial_dims=3)
    kernels = [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
    strides = [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    unet = DynUNet(3, 2, 1, kernels, strides, strides[1:], filters=[32, 64, 128, 256, 320, 320])
    return {
        "Swin-UNETR (fs 48, 128^3, overlap 0.25)": (swin.eval(), (128, 128, 128), 0.25, "constant"),
        "3D U-Net, nnU-Net kind (48x192x192, overlap 0.5)": (unet.eval(), (48, 192, 192), 0.5, "gaussian"),
    }


def run_peer(model: torch.nn.Module, window, overlap: float, mode: str, case, out: Path, device) -> float:
    started = time.perf_counter()
    adc, z = read_image(case.adc), read_image(case.z)
    x = np.stack(list(channel_maps(adc.array, z.array, PEER_INPUT).values()))
    with torch.inference_mode():
        logits = sliding_window_inference(torch.from_numpy(x[None].astype(np.float32)).to(device), window, 1,
                                          model, overlap=overlap, mode=mode)
    write_mask(torch.sigmoid(logits)[0, 0].cpu().numpy() > 0.5, adc.geometry, out)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--depth", type=int, default=64)
    parser.add_argument("--whole-head", action="store_true",
                        help="the default synthetic grid (brain on some slices) instead of brain on every slice")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(machine_line(device))
    layout = "whole head" if args.whole_head else "brain on every slice"
    print(f"case: synthetic {args.size}x{args.size}x{args.depth}, {layout}; random weights; median of "
          f"{args.repeats} after one warm-up\n")
    settings = {"SPARSeg 2D UNet++ (this project, defaults)": InferenceConfig(),
                "SPARSeg with torch fp32 (the former CPU default)": InferenceConfig(engine="torch", precision="fp32")}
    if device.type == "cpu":
        settings["SPARSeg with --precision int8 (opt-in)"] = InferenceConfig(precision="int8")
    print("| method | seconds/case | ratio to SPARSeg (defaults) | " + " | ".join(
        f"ratio to {name}" for name in list(settings)[1:]) + " |")
    print("|---|---|---|" + "---|" * (len(settings) - 1))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        case = find_input_case(input_case(tmp / "case", args.size, args.depth, full_brain=not args.whole_head))
        checkpoint = checkpoint_for("paper", tmp)
        if device.type == "cpu":
            quantize_for_bench(checkpoint, args.size, args.depth, full_brain=not args.whole_head)
        ours = {}
        for name, setting in settings.items():
            predictor = Predictor.load([checkpoint], device, inference=setting)
            times = [predict_case(case, predictor, tmp / "ours.mha").seconds for _ in range(args.repeats + 1)]
            ours[name] = float(np.median(times[1:]))
            del predictor

        def row(name: str, seconds: float) -> str:
            return f"| {name} | {seconds:.1f} | " + " | ".join(f"{seconds / ours[other]:.2f}" for other in ours) + " |"

        for name in ours:
            print(row(name, ours[name]), flush=True)
        for name, (model, window, overlap, mode) in peer_models().items():
            model = model.to(device)
            times = [run_peer(model, window, overlap, mode, case, tmp / "peer.mha", device)
                     for _ in range(args.repeats + 1)]
            print(row(name, float(np.median(times[1:]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
