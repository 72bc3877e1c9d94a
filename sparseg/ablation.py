"""Several run configs cross-validated on the same folds and tabulated on their out-of-fold masks (Tables 1-2)."""

from __future__ import annotations

from pathlib import Path

from sparseg.cases import data_inputs, find_cases
from sparseg.config import EvaluationConfig, load_run_config
from sparseg.crossval import run_cv
from sparseg.errors import ConfigError, InputError
from sparseg.evaluation import METRICS, markdown_table
from sparseg.io import write_csv, write_text
from sparseg.paths import require_apart


def run_ablation(data: Path | str, configs: list[Path], out: Path | str, folds: list[int] | None = None,
                 device_name: str = "auto") -> str:
    """One cross-validation per config under `out/<config name>` (all folds, or `folds`), each scored on its
    out-of-fold masks, not on the epoch picked on them; writes ablation.csv and ablation.md; returns the table."""
    out = Path(out)
    names = [Path(path).stem for path in configs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"--configs: several files are named {', '.join(repeated)}; each config names its folder "
                         "and its row, so give them distinct names")
    runs = {Path(path).stem: (Path(path), load_run_config(path)) for path in configs}  # all checked first
    require_apart([out / "ablation.md", out / "ablation.csv"],
                  [*data_inputs(data, find_cases(data, require_labels=True)), *map(Path, configs)])
    summaries = {}
    for name, (path, config) in runs.items():
        try:
            result = run_cv(data, config, out / name, only=folds, device_name=device_name, partial=True,
                            config_file=path)
        except ConfigError as exc:  # what only building the network finds (the encoder's name)
            raise ConfigError(f"{path}: {exc.field}", exc.problem) from None
        assert result.report is not None  # partial: the folds just trained are scored
        summaries[name] = result.report.summary["all"]
    text = markdown_table(summaries, EvaluationConfig().nsd_tolerance_mm, first="config")
    write_text(out / "ablation.md", text)
    write_csv(out / "ablation.csv", [
        {"config": name, **{k: summary[k] for k in ("n", *METRICS)}} for name, summary in summaries.items()
    ])
    return text
