"""Train several run configs on the same fold and tabulate their best validation scores (Tables 1-2)."""

from __future__ import annotations

from pathlib import Path

from sparseg.config import EvaluationConfig, load_run_config
from sparseg.evaluation import METRICS, markdown_table
from sparseg.io import write_csv
from sparseg.model import read_metadata
from sparseg.train import BEST, STATE, train


def run_ablation(data: Path | str, configs: list[Path], out: Path | str, fold: int = 0,
                 device_name: str = "auto") -> str:
    """One run per config under `out/<config name>`; writes ablation.csv and ablation.md; returns the table."""
    out = Path(out)
    runs = {Path(path).stem: (load_run_config(path), out / Path(path).stem) for path in configs}  # all checked first
    summaries = {}
    for name, (config, run) in runs.items():
        train(data, config, run, fold=fold, resume=(run / STATE).exists(), device_name=device_name)
        summaries[name] = read_metadata(run / BEST)["validation"]["all"]
    text = markdown_table(summaries, EvaluationConfig().nsd_tolerance_mm, first="config")
    (out / "ablation.md").write_text(text)
    write_csv(out / "ablation.csv", [
        {"config": name, **{k: summary[k] for k in ("n", *METRICS)}} for name, summary in summaries.items()
    ])
    return text
