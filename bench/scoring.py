"""Scoring speed: sparseg.metrics against DeepMind's surface-distance (the challenge's scorer).

Cases of 256x256x64 voxels with small (<1% burden) lesions. The prediction is
the Z_ADC threshold (the prior channel) plus three stray 2x2-voxel detections elsewhere in the
brain, as a model's false positives: they make the bounding box of the two
masks large, the hard case for the distance transforms. Prints one table:
median seconds per case of each, their ratio, and the largest difference
between the two sets of scores.

    python bench/scoring.py [--cases 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
from surface_distance import metrics as oracle

from sparseg.config import EvaluationConfig, PreprocessingConfig
from sparseg.environment import machine_summary
from sparseg.metrics import score_case
from sparseg.synth import SynthConfig, generate_case

TOLERANCE_MM = EvaluationConfig().nsd_tolerance_mm
Z_THRESHOLD = PreprocessingConfig().z_threshold

LARGE_SMALL_LESIONS = SynthConfig(
    in_plane_sizes=(256,),
    slice_spacing_mm=(2.0, 2.0),
    coverage_mm=(128.0, 128.0),
    strata_weights=(1, 0, 0),
    lesion_free_fraction=0.0,
)


def _oracle_scores(gt: np.ndarray, pred: np.ndarray, spacing: tuple[float, float, float]) -> tuple[float, float, float]:
    """surface-distance with the challenge's empty-mask rules (the library fails on empty masks under numpy 2)."""
    if not gt.any() or not pred.any():
        return (1.0, 0.0, 1.0) if not (gt.any() or pred.any()) else (0.0, math.nan, 0.0)
    distances = oracle.compute_surface_distances(gt, pred, spacing)
    return (
        float(oracle.compute_dice_coefficient(gt, pred)),
        float(np.mean(oracle.compute_average_surface_distance(distances))),
        float(oracle.compute_surface_dice_at_tolerance(distances, TOLERANCE_MM)),
    )


def _prediction(case, rng: np.random.Generator) -> np.ndarray:
    pred = case.z < Z_THRESHOLD
    brain = np.argwhere(case.adc > 0)
    for z, y, x in brain[rng.choice(len(brain), 3, replace=False)]:
        pred[z, y : y + 2, x : x + 2] = True
    return pred


def _median_seconds(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(f"machine: {machine_summary()}")
    print("| case | shape (z,y,x) | GT voxels | pred voxels | oracle s | sparseg s | speed-up | max |diff| |")
    print("|---|---|---|---|---|---|---|---|")
    ours_total = oracle_total = 0.0
    worst = 0.0
    for index in range(args.cases):
        case = generate_case(seed=100, index=index, config=LARGE_SMALL_LESIONS)
        gt, pred, spacing = case.label, _prediction(case, np.random.default_rng(index)), case.geometry.spacing_mm
        t_oracle, expected = _median_seconds(lambda: _oracle_scores(gt, pred, spacing), args.repeats)
        t_ours, got = _median_seconds(lambda: score_case(gt, pred, spacing, TOLERANCE_MM), args.repeats)
        pairs = zip(expected, (got.dsc, got.masd, got.nsd))
        diff = max((abs(a - b) for a, b in pairs if not math.isnan(a)), default=0.0)
        worst = max(worst, diff)
        ours_total += t_ours
        oracle_total += t_oracle
        print(f"| {case.case_id} | {'x'.join(map(str, gt.shape))} | {gt.sum()} | {pred.sum()} | "
              f"{t_oracle:.3f} | {t_ours:.3f} | {t_oracle / t_ours:.1f}x | {diff:.1e} |")
    print(f"\ntotal over {args.cases} cases: oracle {oracle_total:.2f} s, sparseg {ours_total:.2f} s, "
          f"speed-up {oracle_total / ours_total:.1f}x, largest score difference {worst:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
