"""Batch throughput: cases per second of `sparseg predict` with the next cases read in the background
(`read_depth` 2, the default) against reading each case in turn (`read_depth` 0), on the same machine and
cases, from one run.

Synthetic cases of 256x256 voxels in-plane (the release's largest) in the release layout, the demo
weights (or --weights), default inference settings. Each setting runs once after one warm-up case;
the order alternates over --repeats to share out drift.

    python bench/batch.py [--cases 8] [--depth 32] [--repeats 2] [--device auto]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from sparseg.batch import predict_batch
from sparseg.cases import find_any_cases
from sparseg.synth import SynthConfig, write_dataset
from sparseg.weights import load_predictor

from common import DEMO_WEIGHTS, machine_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--depth", type=int, default=32, help="slices per case")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--weights", type=Path, default=DEMO_WEIGHTS)
    args = parser.parse_args()
    predictor = load_predictor([args.weights], args.device)
    print(machine_line(predictor.runtime.device))
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        write_dataset(folder / "data", n_cases=args.cases, seed=5, config=SynthConfig().with_shape(256, args.depth))
        cases = find_any_cases(folder / "data")
        predict_batch(cases[:1], folder / "warm-up", predictor)
        seconds: dict[int, list[float]] = {0: [], 2: []}
        for repeat in range(args.repeats):
            for depth in ((0, 2) if repeat % 2 == 0 else (2, 0)):
                out = folder / f"out-{depth}-{repeat}"
                started = time.perf_counter()
                predict_batch(cases, out, predictor, read_depth=depth)
                seconds[depth].append(time.perf_counter() - started)
                shutil.rmtree(out)
    serial, overlapped = (min(seconds[depth]) for depth in (0, 2))
    print(f"{args.cases} cases of 256x256x{args.depth} voxels on {predictor.runtime.describe()}; "
          f"best of {args.repeats}\n")
    print("| reading | seconds | cases/s |\n|---|---|---|")
    print(f"| in turn (read_depth 0) | {serial:.2f} | {args.cases / serial:.2f} |")
    print(f"| in the background (read_depth 2, default) | {overlapped:.2f} | {args.cases / overlapped:.2f} |")
    print(f"\nbackground / in turn: {serial / overlapped:.2f}x the cases per second")


if __name__ == "__main__":
    main()
