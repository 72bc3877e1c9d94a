"""Train several run configs on the same fold and tabulate their best validation scores (Tables 1-2)."""

from __future__ import annotations

from pathlib import Path

from sparseg.config import load_run_config
from sparseg.evaluation import markdown_table
from sparseg.io import write_csv
from sparseg.model import read_metadata
from sparseg.train import BEST, train


def run_ablation(data: Path | str, configs: list[Path], out: Path | str, fold: int = 0,
                 device_name: str = "auto") -> str:
    """One run per config under `out/<config name>`; writes ablation.csv and ablation.md; returns the table."""
    out = Path(out)
    rows = []
    for path in configs:
        name = Path(path).stem
        run = out / name
        train(data, load_run_config(path), run, fold=fold, resume=(run / "last_state.pt").exists(),
              device_name=device_name)
        summary = read_metadata(run / BEST)["validation"]
        rows.append((name, summary))
    text = markdown_table({name: summary["all"] for name, summary in rows}, first="config")
    (out / "ablation.md").write_text(text)
    write_csv(out / "ablation.csv", [
        {"config": name, **{k: summary["all"][k] for k in ("n", "dsc", "masd", "nsd")}} for name, summary in rows
    ])
    return text
