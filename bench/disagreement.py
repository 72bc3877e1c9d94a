"""Does the fold ensemble's disagreement say where its masks are poor? A measurement on synthetic data.

    python bench/disagreement.py [--cases 48] [--unseen 16] [--folds 3] [--epochs 6] [--out runs/disagreement]

Makes a synthetic release (`sparseg synth`), cross-validates the demo configuration on it with fewer epochs
(`sparseg cv`), segments labelled synthetic cases that no fold saw with the fold ensemble (`sparseg predict`),
scores them (`sparseg evaluate`), and prints Spearman's rank correlation between each case's member agreement
(summary.csv) and its DSC against the label (scores.csv), with the cases flagged "the models disagree: look".
Every case is synthetic: the result says how the score behaves, not how it does on BONBID-HIE.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parent.parent


def _sparseg(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "sparseg", *args], check=True, cwd=ROOT)


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as handle:
        return {row["case_id"]: row for row in csv.DictReader(handle)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=48, help="synthetic cases to cross-validate on")
    parser.add_argument("--unseen", type=int, default=16, help="labelled synthetic cases no fold sees")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "disagreement")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((ROOT / "resources" / "configs" / "demo.json").read_text())
    config["description"] = f"demo configuration, {args.epochs} epochs (bench/disagreement.py)"
    config["train"].update(epochs=args.epochs, folds=args.folds)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    if not (out / "release").exists():
        _sparseg("synth", "--out", str(out / "release"), "--cases", str(args.cases), "--seed", "21")
        _sparseg("synth", "--out", str(out / "unseen"), "--cases", str(args.unseen), "--seed", "22")
    _sparseg("cv", "--data", str(out / "release"), "--config", str(out / "config.json"), "--out", str(out / "cv"),
             "--device", "cpu")
    folds = sorted(str(p) for p in (out / "cv").glob("fold*/final.safetensors"))
    _sparseg("predict", "--data", str(out / "unseen"), "--weights", *folds, "--out", str(out / "masks"),
             "--device", "cpu")
    _sparseg("evaluate", "--gt", str(out / "unseen"), "--pred", str(out / "masks"), "--out", str(out / "scores"))
    summary, scores = _rows(out / "masks" / "summary.csv"), _rows(out / "scores" / "scores.csv")
    pairs = [(float(summary[c]["member_agreement"]), float(scores[c]["dsc"]), "disagree" in summary[c]["flags"])
             for c in sorted(scores)]
    agreement, dsc, flagged = zip(*pairs, strict=True)
    rho, p = spearmanr(agreement, dsc)
    print(f"SYNTHETIC data: {args.cases} cases, {args.folds}-fold cv of the demo configuration for {args.epochs} "
          f"epochs; {len(pairs)} unseen labelled cases segmented by the {len(folds)}-fold ensemble\n")
    print("| case | member agreement | DSC against the label | flagged |\n|---|---|---|---|")
    for case, (a, d, f) in zip(sorted(scores), pairs, strict=True):
        print(f"| {case} | {a:.3f} | {d:.3f} | {'yes' if f else ''} |")
    mean = {flag: [d for _, d, f in pairs if f == flag] for flag in (True, False)}
    print(f"\nSpearman rank correlation, member agreement vs DSC: {rho:.3f} (p = {p:.3g}, n = {len(pairs)})")
    for flag, name in ((True, "flagged"), (False, "not flagged")):
        values = mean[flag]
        shown = f"{sum(values) / len(values):.3f}" if values else "n/a"
        print(f"mean DSC of the {len(values)} {name} cases: {shown}")
    return 0 if not math.isnan(rho) else 1


if __name__ == "__main__":
    sys.exit(main())
