"""Train several run configs on the same fold and tabulate their best validation scores (Tables 1-2)."""

from __future__ import annotations

from pathlib import Path

from sparseg.config import EvaluationConfig, load_run_config
from sparseg.errors import ConfigError
from sparseg.evaluation import METRICS, markdown_table
from sparseg.io import write_csv
from sparseg.model import read_metadata
from sparseg.train import BEST, STATE, train


def run_ablation(data: Path | str, configs: list[Path], out: Path | str, fold: int = 0,
                 device_name: str = "auto") -> str:
    """One run per config under `out/<config name>`; writes ablation.csv and ablation.md; returns the table."""
    out = Path(out)
    runs = {Path(path).stem: (Path(path), load_run_config(path)) for path in configs}  # all checked first
    summaries = {}
    for name, (path, config) in runs.items():
        run = out / name
        try:
            train(data, config, run, fold=fold, resume=(run / STATE).exists(), device_name=device_name)
        except ConfigError as exc:  # what only building the network finds (the encoder's name)
            raise ConfigError(f"{path}: {exc.field}", exc.problem) from None
        summaries[name] = read_metadata(run / BEST)["validation"]["all"]
    text = markdown_table(summaries, EvaluationConfig().nsd_tolerance_mm, first="config")
    (out / "ablation.md").write_text(text)
    write_csv(out / "ablation.csv", [
        {"config": name, **{k: summary[k] for k in ("n", *METRICS)}} for name, summary in summaries.items()
    ])
    return text
