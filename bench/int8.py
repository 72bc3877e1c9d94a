"""int8 settings side by side: how far each one's masks are from fp32's, and how fast it runs.

    python bench/int8.py --weights CKPT --data DIR [--other DIR2] [--settings NAME ...] [--case 256x64] [--repeats 3]

Each setting quantizes a copy of CKPT as `sparseg quantize` does (calibrated
on the checkpoint's training cases in DIR, measured on the others: its
validation fold), so every row is measured on the same held-out cases
against the same torch fp32 masks. Then each int8 model and OpenVINO fp32
segment one synthetic case with brain on every slice (`--case`, default
256x256x64), in turn, in this process; speed is the ratio of their medians
within this run (seconds differ by 2x between CPU generations).

Prints one table: per setting the smallest and median Dice of the int8
masks against fp32's, the lesion-volume ratio int8/fp32 (median, range; on
cases where fp32 marks lesion), the mean DSC of fp32 and int8 against the
labels, the seconds per case of int8 and its speed-up over OpenVINO fp32,
and the recalibration's shift. With `--other DIR2` (labelled cases of another
anatomy, e.g. `sparseg synth --population`), the same int8 model is also
measured against torch fp32 on the first `--other-cases` of those: a setting
chosen on one anatomy must hold on another. Synthetic data: no figure here is
a BONBID-HIE result.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sparseg.cases import find_any_cases, find_input_case
from sparseg.config import InferenceConfig, QuantizationConfig
from sparseg.data import read_validation_case
from sparseg.inference import Predictor
from sparseg.io import read_image
from sparseg.quantization import measure_agreement, quantize

from common import input_case, machine_line, median_seconds, parse_shape

CPU = torch.device("cpu")

SETTINGS = {
    "off": QuantizationConfig(recalibrate="off"),
    "volume": QuantizationConfig(recalibrate="volume"),
    "dice": QuantizationConfig(recalibrate="dice"),
    "preset mixed": QuantizationConfig(preset="mixed"),
    "full bias correction": QuantizationConfig(fast_bias_correction=False),
    "half the slices with lesion": QuantizationConfig(lesion_share=0.5),
    "600 slices": QuantizationConfig(slices=600),
    "SmoothQuant alpha 0.5": QuantizationConfig(smooth_quant_alpha=0.5),
    "SmoothQuant 0.5, half the slices with lesion": QuantizationConfig(smooth_quant_alpha=0.5, lesion_share=0.5),
    "accuracy control": QuantizationConfig(accuracy_control=True),
}
"""The settings by name: the first three are the logit shift's criteria (`--recalibrate`) with NNCF's defaults;
the rest change one NNCF setting each, with the default shift."""


def seconds_per_case(checkpoint: Path, precision: str, case: Path, repeats: int) -> float:
    predictor = Predictor.load([checkpoint], CPU, inference=InferenceConfig(engine="openvino", precision=precision))
    found = find_input_case(case)
    adc, z = read_image(found.adc), read_image(found.z)
    predictor.predict(adc, z)  # warm-up
    return median_seconds(lambda: predictor.predict(adc, z), repeats, CPU)


def _other_anatomy(checkpoint: Path, cases: list) -> str:
    """The table's cells of the int8 model against torch fp32 on cases of another anatomy."""
    reference = Predictor.load([checkpoint], CPU, inference=InferenceConfig(engine="torch", precision="fp32"))
    int8 = Predictor.load([checkpoint], CPU, inference=InferenceConfig(engine="openvino", precision="int8"))
    measured = measure_agreement(reference, int8, cases).cases
    dice = [c.dice_int8_vs_fp32 for c in measured]
    ratios = [c.int8_voxels / c.fp32_voxels for c in measured if c.fp32_voxels]
    return (f" {min(dice):.4f} | {statistics.median(dice):.4f} | "
            f"{statistics.median(ratios) if ratios else float('nan'):.3f} | "
            f"{np.mean([c.dsc_fp32 for c in measured]):.4f} | {np.mean([c.dsc_int8 for c in measured]):.4f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--case", default="256x64", help="SIZExDEPTH of the synthetic full-brain timing case")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (0: no timing)")
    parser.add_argument("--other", type=Path, help="labelled cases of another anatomy, measured too")
    parser.add_argument("--other-cases", type=int, default=20)
    args = parser.parse_args()
    other = ([read_validation_case(c) for c in find_any_cases(args.other)[: args.other_cases]]
             if args.other else [])
    print(machine_line(CPU))
    print(f"weights: {args.weights}; data: {args.data} (synthetic: no figure here is a BONBID-HIE result)\n")
    size, depth = parse_shape(args.case)
    print(f"timing case {size}x{size}x{depth}, brain on every slice, {args.repeats} repeats after a warm-up, "
          "medians; each row printed as its setting is done\n")
    columns = ["setting", "held-out cases", "smallest Dice vs fp32", "median", "volume int8/fp32 median (range)",
               "DSC fp32", "DSC int8", "int8 s/case", "speed-up vs OpenVINO fp32", "logit shift", "made in s"]
    if other:
        columns += [f"other anatomy ({len(other)}): smallest Dice vs fp32", "median", "volume int8/fp32 median",
                    "DSC fp32", "DSC int8"]
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        case = input_case(tmp / "timing-case", size, depth, full_brain=True)
        for number, name in enumerate(args.settings):
            folder = tmp / f"setting-{number}"
            folder.mkdir()
            checkpoint = Path(shutil.copy(args.weights, folder / args.weights.name))
            started = time.perf_counter()
            result = quantize(checkpoint, args.data, settings=SETTINGS[name])
            made_in = time.perf_counter() - started
            cases = result.agreement.cases
            agreements = [c.dice_int8_vs_fp32 for c in cases]
            ratios = [c.int8_voxels / c.fp32_voxels for c in cases if c.fp32_voxels]
            shift = result.recalibration.get("logit_offset", 0.0)
            timed = args.repeats > 0
            fp32_s = seconds_per_case(checkpoint, "fp32", case, args.repeats) if timed else float("nan")
            int8_s = seconds_per_case(checkpoint, "int8", case, args.repeats) if timed else float("nan")
            ratio = statistics.median(ratios) if ratios else float("nan")
            low, high = min(ratios, default=float("nan")), max(ratios, default=float("nan"))
            dsc_fp32, dsc_int8 = (float(np.mean([getattr(c, f"dsc_{p}") for c in cases])) for p in ("fp32", "int8"))
            row = (f"| {name} | {len(cases)} | {min(agreements):.4f} | {statistics.median(agreements):.4f} "
                   f"| {ratio:.3f} ({low:.3f}-{high:.3f}) | {dsc_fp32:.4f} | {dsc_int8:.4f} | {int8_s:.2f} "
                   f"| {fp32_s / int8_s:.2f}x | {shift:+.2f} | {made_in:.0f} |")
            if other:
                row += _other_anatomy(checkpoint, other)
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
