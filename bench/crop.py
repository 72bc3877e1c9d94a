"""The brain crop against whole-frame inference, for trained weights on labelled cases.

    python bench/crop.py --weights CKPT [CKPT ...] --data DIR [--device auto|cpu|cuda]

The crop (`--crop-to-brain`, `InferenceConfig.crop_to_brain`: the slices
cropped to the brain's box plus a margin) is an opt-in speed setting, to be
used only where the masks stay as whole-frame inference makes them. Both runs
skip the slices without brain (the default). This segments every case of DIR (release
layout, or the /input layout) both ways with the same weights and prints one
table: per case the Dice of the cropped mask against the whole-frame mask,
each mask's Dice against the label where there is one, and the seconds of
each; then the smallest agreement. Run it on your own trained weights and
data before trusting the crop with them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from sparseg.cases import find_any_cases
from sparseg.config import InferenceConfig
from sparseg.hardware import resolve_device
from sparseg.inference import Predictor
from sparseg.io import read_image, read_mask
from sparseg.metrics import dice

from common import machine_line, synchronize

SETTINGS = {"whole frame": InferenceConfig(crop_to_brain=False), "brain crop": InferenceConfig(crop_to_brain=True)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, nargs="+", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(machine_line(device))
    predictors = {name: Predictor.load(args.weights, device, inference=s) for name, s in SETTINGS.items()}
    print(f"weights: {', '.join(str(w) for w in args.weights)}; data: {args.data}\n")
    print("| case | slices | Dice crop vs whole frame | Dice whole frame vs label | Dice crop vs label "
          "| whole-frame s | crop s |")
    print("|---|---|---|---|---|---|---|")
    agreements, seconds = [], {name: [] for name in SETTINGS}
    for case in find_any_cases(args.data):
        adc, z = read_image(case.adc), read_image(case.z)
        masks = {}
        for name, predictor in predictors.items():
            synchronize(device)
            started = time.perf_counter()
            masks[name] = predictor.predict(adc, z).mask
            synchronize(device)
            seconds[name].append(time.perf_counter() - started)
        agreements.append(dice(masks["whole frame"], masks["brain crop"]))
        label = read_mask(case.label)[0] if case.label is not None else None
        versus = [f"{dice(label, masks[name]):.4f}" if label is not None else "" for name in SETTINGS]
        print(f"| {case.case_id} | {adc.array.shape[0]} | {agreements[-1]:.4f} | {versus[0]} | {versus[1]} "
              f"| {seconds['whole frame'][-1]:.2f} | {seconds['brain crop'][-1]:.2f} |")
    print(f"\n{len(agreements)} cases: smallest Dice crop vs whole frame {min(agreements):.4f}, "
          f"{sum(a == 1.0 for a in agreements)} identical; median seconds whole frame "
          f"{statistics.median(seconds['whole frame']):.2f}, crop {statistics.median(seconds['brain crop']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
