"""Z_ADC computed from ADC and an atlas, against the Z_ADC it should be: synthetic cases drawn from one population
(`sparseg synth --population`), whose given Z_ADC was made with the generating atlas through each case's true warp.

For each atlas (the generating one imported; built from the first 20 or 40 cases; and the 40-case atlas with its SD
not calibrated to the given Z_ADC, without a group-wise template, with robust statistics, or without intensity
normalisation), on the held-out cases (not in any atlas): Pearson r and mean absolute difference of computed against
given Z_ADC inside the brain, per case and pooled; the DSC of the Z_ADC < -2 baseline against the labels with each;
seconds per case and to build the atlas.
It also writes the CSV manifests to train and evaluate a network on given or computed Z_ADC (docs/zmap.md).

    python bench/zmap.py --data data/pop60 --out runs/zmap-bench [--cases 60] [--held-out 20] [--training-zmaps]

Atlases and Z_ADC maps already in --out are reused (delete them to measure again). Synthetic data: these are not
BONBID-HIE results.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from sparseg.atlas import import_atlas, read_atlas
from sparseg.cases import Case, find_cases
from sparseg.config import AtlasConfig, PreprocessingConfig, ZmapConfig
from sparseg.environment import machine_summary, peak_rss_mib
from sparseg.io import read_image, read_mask, write_image
from sparseg.metrics import dice
from sparseg.synth import GENERATING_ATLAS, write_dataset
from sparseg.template import build_atlas
from sparseg.zmap import compute_zmap

from common import cpu_generation

PRIOR = PreprocessingConfig().z_threshold


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    cases: int | None
    """How many of the first cases build it (None: the generating atlas, imported)."""
    atlas: AtlasConfig = AtlasConfig()
    zmap: ZmapConfig = ZmapConfig()


VARIANTS = (
    Variant("generating atlas (imported)", None),
    Variant("built, 20 cases", 20),
    Variant("built, 40 cases", 40),
    Variant("built, 40 cases, SD not calibrated to the given Z_ADC", 40, AtlasConfig(calibrate=False)),
    Variant("built, 40 cases, no group-wise template", 40, AtlasConfig(iterations=0)),
    Variant("built, 40 cases, robust statistics", 40, AtlasConfig(statistics="robust")),
    Variant("built, 40 cases, no intensity normalisation", 40, AtlasConfig(normalisation="none"),
            ZmapConfig(normalisation="none")),
)


def _folder(variant: Variant) -> str:
    return "".join(c if c.isalnum() else "-" for c in variant.name).strip("-")


def _atlas(variant: Variant, data: Path, pool: list[Case], out: Path) -> tuple[Path, float]:
    folder = out / "atlases" / _folder(variant)
    if (folder / "atlas.json").is_file():
        return folder, float(read_atlas(folder).description.get("made", {}).get("seconds", float("nan")))
    started = time.perf_counter()
    if variant.cases is None:
        truth = data / GENERATING_ATLAS
        import_atlas(truth / "mean.mha", truth / "sd.mha", truth / "mask.mha", folder, "the generating atlas")
    else:
        build_atlas(pool[: variant.cases], folder, variant.atlas, variant.zmap, source=str(data))
    return folder, time.perf_counter() - started


def _measure(variant: Variant, folder: Path, cases: list[Case], out: Path) -> list[dict]:
    atlas = read_atlas(folder)
    rows = []
    for case in cases:
        adc, given = read_image(case.adc), read_image(case.z).array
        label, _ = read_mask(case.label)
        path = out / "zmaps" / _folder(variant) / f"{case.case_id}_zadc.mha"
        started = time.perf_counter()
        if path.is_file():
            z, seconds = read_image(path).array, float("nan")
        else:
            result = compute_zmap(adc, atlas, variant.zmap)
            seconds = time.perf_counter() - started
            z = result.z
            write_image(z, adc.geometry, path)
        brain = adc.array > 0
        rows.append({"case_id": case.case_id, "r": float(np.corrcoef(z[brain], given[brain])[0, 1]),
                     "mad": float(np.mean(np.abs(z[brain] - given[brain]))),
                     "dsc_computed": dice(label, z < PRIOR), "dsc_given": dice(label, given < PRIOR),
                     "seconds": seconds, "z": z[brain], "given": given[brain]})
    return rows


def _manifest(path: Path, cases: list[Case], zadc: dict[str, Path] | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "adc", "zadc", "label"])
        for case in cases:
            writer.writerow([case.case_id, case.adc.resolve(), (zadc or {}).get(case.case_id, case.z).resolve(),
                             case.label.resolve()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a population dataset (made if missing)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cases", type=int, default=60, help="cases to make when --data is missing")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--held-out", type=int, default=20, help="the last cases, in no atlas")
    parser.add_argument("--training-zmaps", action="store_true",
                        help="also compute the atlas cases' Z_ADC with the 40-case atlas, for a network trained on "
                             "computed Z_ADC (manifests/train_computed.csv)")
    parser.add_argument("--only", nargs="+", type=int, metavar="K",
                        help="measure only these variants (0-based, in the table's order): two processes can share "
                             "the 2 cores, each registration being single-threaded")
    args = parser.parse_args(argv)
    if not (args.data / GENERATING_ATLAS).is_dir():
        started = time.perf_counter()
        write_dataset(args.data, args.cases, args.seed, drawn_from_population=True)
        print(f"made {args.cases} population cases (seed {args.seed}) in {time.perf_counter() - started:.0f} s")
    cases = find_cases(args.data)
    pool, held_out = cases[: -args.held_out], cases[-args.held_out :]
    print(f"{machine_summary()}; {cpu_generation()}; {len(pool)} atlas cases, {len(held_out)} held out; synthetic "
          "data, not BONBID-HIE")
    print("| atlas | build s | r median (min) | r pooled | mean abs diff | DSC Z<-2 computed | DSC Z<-2 given | "
          "s/case |")
    print("|---|---|---|---|---|---|---|---|")
    for index, variant in enumerate(VARIANTS):
        if args.only and index not in args.only:
            continue
        folder, build_seconds = _atlas(variant, args.data, pool, args.out)
        rows = _measure(variant, folder, held_out, args.out)
        r = [row["r"] for row in rows]
        pooled = float(np.corrcoef(np.concatenate([row["z"] for row in rows]),
                                   np.concatenate([row["given"] for row in rows]))[0, 1])
        timed = [row["seconds"] for row in rows if not np.isnan(row["seconds"])]
        print(f"| {variant.name} | {build_seconds:.0f} | {statistics.median(r):.3f} ({min(r):.3f}) | {pooled:.3f} | "
              f"{statistics.mean(row['mad'] for row in rows):.3f} | "
              f"{statistics.mean(row['dsc_computed'] for row in rows):.4f} | "
              f"{statistics.mean(row['dsc_given'] for row in rows):.4f} | "
              f"{statistics.median(timed) if timed else float('nan'):.1f} |", flush=True)
        with open(args.out / f"{_folder(variant)}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, ["case_id", "r", "mad", "dsc_computed", "dsc_given", "seconds"],
                                    extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    best = args.out / "zmaps" / _folder(VARIANTS[2])
    _manifest(args.out / "manifests" / "train_given.csv", pool, None)
    _manifest(args.out / "manifests" / "heldout_given.csv", held_out, None)
    if best.is_dir():
        _manifest(args.out / "manifests" / "heldout_computed.csv", held_out,
                  {c.case_id: best / f"{c.case_id}_zadc.mha" for c in held_out})
    if args.training_zmaps:
        started = time.perf_counter()
        _measure(VARIANTS[2], args.out / "atlases" / _folder(VARIANTS[2]), pool, args.out)
        _manifest(args.out / "manifests" / "train_computed.csv", pool,
                  {c.case_id: best / f"{c.case_id}_zadc.mha" for c in pool})
        print(f"Z_ADC of the {len(pool)} atlas cases with the 40-case atlas: {time.perf_counter() - started:.0f} s")
    print(f"peak memory {peak_rss_mib():.0f} MiB; per-case rows and manifests in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
