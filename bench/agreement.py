"""Does a speed setting keep the masks? Each one against torch fp32 on whole frames, for trained weights.

    python bench/agreement.py --weights CKPT [CKPT ...] --data DIR [--limit N]

A speed setting may only become a default where it leaves the masks as the
fp32 reference makes them; this measures that on labelled cases the weights
were not trained on. When DIR is the checkpoint's own training data, its
held-out fold is used (as `sparseg quantize` does); otherwise every case of
DIR. Settings: OpenVINO fp32 (the CPU default), OpenVINO bf16 (on CPUs with
native bf16), OpenVINO int8 (when `sparseg quantize` has made the int8
model), and the opt-in crop to the brain's box with two margins. Prints one
table: per setting the smallest and median Dice of its masks against the
reference's, how many cases are identical, the mean DSC of both against the
labels, and the median seconds per case.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sparseg.cases import find_any_cases
from sparseg.config import InferenceConfig
from sparseg.data import read_validation_case
from sparseg.derived import INT8, Derived
from sparseg.errors import InputError
from sparseg.evaluation import score_row
from sparseg.inference import Predictor
from sparseg.metrics import dice
from sparseg.model import read_header, read_metadata
from sparseg.quantization import split_cases
from sparseg.runtime import cpu_has_native_bf16

from common import machine_line

REFERENCE = InferenceConfig(engine="torch", precision="fp32")
SETTINGS = {
    "OpenVINO fp32 (the CPU default)": InferenceConfig(engine="openvino", precision="fp32"),
    "OpenVINO bf16": InferenceConfig(engine="openvino", precision="bf16"),
    "OpenVINO int8": InferenceConfig(engine="openvino", precision="int8"),
    "crop to the brain's box, margin 32 (OpenVINO fp32)": InferenceConfig(crop_to_brain=True, crop_margin=32),
    "crop to the brain's box, margin 64 (OpenVINO fp32)": InferenceConfig(crop_to_brain=True, crop_margin=64),
}


def held_out(weights: Path, data: Path, limit: int | None) -> tuple[list, str]:
    cases = [read_validation_case(c) for c in find_any_cases(data)]
    metadata, config = read_header(weights)
    try:
        _, chosen, how = split_cases(metadata, cases, config.train)
    except InputError:
        chosen, how = cases, "every case of the data (not the checkpoint's training data)"
    return chosen[:limit], how


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, nargs="+", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--limit", type=int, help="at most this many held-out cases")
    args = parser.parse_args()
    cpu = torch.device("cpu")
    print(machine_line(cpu))
    cases, how = held_out(args.weights[0], args.data, args.limit)
    print(f"weights: {', '.join(str(w) for w in args.weights)}; data: {args.data}; {len(cases)} cases ({how})\n")
    settings = dict(SETTINGS)
    if not cpu_has_native_bf16():
        settings.pop("OpenVINO bf16")
    weights_sha = read_metadata(args.weights[0])["weights_sha256"]
    if Derived.of(args.weights[0], INT8).stale_because(weights_sha):
        print("no int8 model beside the weights (sparseg quantize): no int8 row\n")
        settings.pop("OpenVINO int8")
    predictors = {"torch fp32 (reference)": Predictor.load(args.weights, cpu, inference=REFERENCE)}
    predictors.update({name: Predictor.load(args.weights, cpu, inference=s) for name, s in settings.items()})
    agreement = {name: [] for name in predictors}
    label_dsc = {name: [] for name in predictors}
    seconds = {name: [] for name in predictors}
    for case in cases:
        reference = None
        for name, predictor in predictors.items():
            started = time.perf_counter()
            mask = predictor.predict(case.adc, case.z).mask
            seconds[name].append(time.perf_counter() - started)
            reference = mask if reference is None else reference
            agreement[name].append(dice(reference, mask))
            label_dsc[name].append(score_row(case.case_id, case.label, mask, case.adc.geometry, case.burden).dsc)
    print("| setting | smallest Dice vs reference | median | identical cases | mean DSC vs labels | median s/case |")
    print("|---|---|---|---|---|---|")
    for name in predictors:
        values = agreement[name]
        print(f"| {name} | {min(values):.4f} | {statistics.median(values):.4f} | {sum(v == 1.0 for v in values)} "
              f"of {len(values)} | {np.mean(label_dsc[name]):.4f} | {statistics.median(seconds[name]):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
