"""Cross-validation in one command, scored on out-of-fold masks.

Every fold is trained in its own folder (`fold<k>/`, resumable); then each
fold's network segments the cases it was not trained on, through
`sparseg.batch.predict_batch`, the path of `sparseg predict` and the
container, into `out_of_fold/` (with `summary_fold<k>.csv`, the record of what
made each mask); then all of those masks are scored once
(`out_of_fold_scores/`: the three spacing rules, burden strata). That is nnU-Net's way of reporting cross-validation.
By default the network of each fold's last epoch (`final.safetensors`) is
scored, as nnU-Net does: the best epoch (`best.safetensors`) was picked on
the very cases it would be scored on, so its score is optimistic (the
learning-rate schedule and early stopping still look at them, as in the
paper). The out-of-fold probabilities also give the DSC for a range of
sigmoid thresholds (`threshold_sweep.csv`); the checkpoints keep their own.

Several machines or GPUs can share one `--out`: each takes folds with `only`,
and whichever finds every fold finished writes the out-of-fold masks and
scores. A rerun skips finished folds, resumes unfinished ones and keeps the
out-of-fold masks made from the same inputs, weights and resolved settings.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparseg.batch import predict_batch
from sparseg.cases import Case, data_inputs, find_cases
from sparseg.config import RunConfig
from sparseg.data import FINGERPRINT_FORMAT, fingerprint
from sparseg.errors import InputError
from sparseg.evaluation import REPORT_FILES, Report, evaluate, write_report
from sparseg.io import read_image, read_mask, write_csv
from sparseg.metrics import dice
from sparseg.outputs import case_outputs, probabilities_name
from sparseg.paths import require_apart
from sparseg.train import BEST, CONFIG, FINAL, FINISHED, SPLIT, STATE, config_changes, run_files, train
from sparseg.weights import load_predictor

log = logging.getLogger(__name__)

OUT_OF_FOLD = "out_of_fold"
"""Folder of the out-of-fold masks and probabilities, named like `sparseg predict`'s."""
SCORES = "out_of_fold_scores"
"""Folder of `sparseg evaluate`'s report on the out-of-fold masks."""
SWEEP = "threshold_sweep.csv"
SWEEP_THRESHOLDS = tuple(round(0.20 + 0.05 * step, 2) for step in range(9))
"""Sigmoid thresholds whose out-of-fold DSC is reported: 0.20 to 0.60."""
CHECKPOINTS = {"final": FINAL, "best": BEST}
"""Which checkpoint of each fold is scored: the last epoch's (default) or the best epoch's (optimistic)."""


def fold_dir(out: Path, fold: int) -> Path:
    return out / f"fold{fold}"


def outputs(out: Path, checkpoint: str = "final") -> tuple[Path, Path, Path]:
    """The out-of-fold masks folder, scores folder and threshold-sweep file of the checkpoint scored;
    the best epochs' get a "-best" suffix, so neither overwrites the other."""
    suffix = "" if checkpoint == "final" else f"-{checkpoint}"
    return out / f"{OUT_OF_FOLD}{suffix}", out / f"{SCORES}{suffix}", out / SWEEP.replace(".csv", f"{suffix}.csv")


@dataclass
class CrossValidation:
    """What a `run_cv` call did and found."""

    folds: list[int]
    """The folds scored (all of them, or those asked for with `partial`)."""
    checkpoint: str
    """The file name of each fold's scored checkpoint."""
    waiting: list[int]
    """Folds of `folds` not finished yet (another machine may be training them); nothing is scored until none."""
    report: Report | None = None
    sweep: list[dict] | None = None
    """Per threshold, the mean out-of-fold DSC."""

    @property
    def best_threshold(self) -> float | None:
        return max(self.sweep, key=lambda row: row["dsc"])["threshold"] if self.sweep else None


def run_cv(data: Path | str, config: RunConfig, out: Path | str, only: list[int] | None = None,
           device_name: str = "auto", partial: bool = False, checkpoint: str = "final",
           config_file: Path | None = None) -> CrossValidation:
    """Train the folds in `only` (all by default), then score the out-of-fold masks of each fold's
    `checkpoint` ("final" or "best", `CHECKPOINTS`).

    Without `partial`, scoring waits until every fold of the config is finished (a cluster shares the folds);
    with it, only the folds in `only` are scored (an ablation on some folds). No file it writes may be, or
    replace, an input (the cases' files, a manifest, `config_file`, the file `config` was read from).
    """
    if checkpoint not in CHECKPOINTS:
        raise InputError(f"checkpoint {checkpoint!r}: expected one of {', '.join(CHECKPOINTS)}")
    scored_file = CHECKPOINTS[checkpoint]
    data, out = Path(data), Path(out)
    listed = find_cases(data, require_labels=True)  # the data first
    cases = {case.case_id: case for case in listed}
    inputs = [*data_inputs(data, listed), *([config_file] if config_file else [])]
    folds_written = [path for fold in range(config.train.folds) for path in run_files(fold_dir(out, fold))]
    scored_written = [path for name in CHECKPOINTS for path in (
        outputs(out, name)[2], *(outputs(out, name)[1] / report for report in REPORT_FILES),
        *(outputs(out, name)[0] / fold_summary(fold) for fold in range(config.train.folds)),
        *(outputs(out, name)[0] / mask for case in listed for mask in case_outputs(case.case_id)))]
    require_apart(folds_written + scored_written, inputs)  # all of it before any fold trains
    folds = list(range(config.train.folds))
    chosen = sorted(set(only)) if only else folds
    for fold in chosen:
        if fold not in folds:
            raise InputError(f"fold {fold}: expected 0 to {config.train.folds - 1} ({config.train.folds} folds)")
    for fold in folds:
        _require_same_config(fold_dir(out, fold), config)
    _require_same_data(out, folds, listed)
    for fold in chosen:
        run = fold_dir(out, fold)
        if (run / FINISHED).is_file():
            log.info("fold %d: finished earlier (%s)", fold, run)
            continue
        log.info("fold %d: training in %s", fold, run)
        train(data, config, run, fold=fold, resume=(run / STATE).exists(), device_name=device_name,
              config_file=config_file)
    scored = chosen if partial else folds
    waiting = [fold for fold in scored if not (fold_dir(out, fold) / FINISHED).is_file()]
    if waiting:
        log.info("fold(s) %s not finished yet: the out-of-fold masks wait for them", ", ".join(map(str, waiting)))
        return CrossValidation(scored, scored_file, waiting)
    for fold in scored:
        if not (fold_dir(out, fold) / scored_file).is_file():
            raise InputError(f"{fold_dir(out, fold)}: no {scored_file} (a run from before final checkpoints were "
                             "kept?); train the fold again, or score the best epochs")
    held_out = _held_out(out, scored)
    masks, scores, sweep_csv = outputs(out, checkpoint)
    for fold in scored:
        _segment_fold(fold_dir(out, fold) / scored_file, [cases[i] for i in held_out[fold]], masks, device_name, fold)
    ids = {case_id for fold in scored for case_id in held_out[fold]}
    report = evaluate(data, masks, case_ids=ids, out=scores)
    write_report(report, scores)
    sweep = threshold_sweep([cases[i] for i in sorted(ids)], masks)
    write_csv(sweep_csv, sweep)
    return CrossValidation(scored, scored_file, [], report, sweep)


def _require_same_data(out: Path, folds: list[int], cases: list[Case]) -> None:
    """Folds begun earlier must have been split over these very cases and files: a finished fold is not trained
    again, so a case added, removed or changed since would go unscored or be scored by a network that saw it."""
    splits = {}
    for fold in folds:
        try:
            split = json.loads((fold_dir(out, fold) / SPLIT).read_text())
        except (OSError, ValueError, RecursionError):
            continue
        splits[fold] = split if isinstance(split, dict) else {}
    if not splits:
        return
    ids = {case.case_id for case in cases}
    data_sha256 = fingerprint(cases)["sha256"]
    for fold, split in splits.items():
        path = fold_dir(out, fold) / SPLIT
        earlier = {case_id for group in split.get("folds", []) for case_id in group}
        if earlier != ids:
            changes = [f"{what}: {', '.join(sorted(group)[:20])}" for what, group in
                       (("new", ids - earlier), ("gone", earlier - ids)) if group]
            raise InputError(f"{path}: this fold was split over other cases ({'; '.join(changes)}); use another --out "
                             "for this data")
        if split.get("data_fingerprint") == FINGERPRINT_FORMAT and split.get("data_sha256") != data_sha256:
            raise InputError(f"{path}: the cases' files changed since this fold was split (data sha256 "
                             f"{str(split.get('data_sha256'))[:12]} then, {data_sha256[:12]} now); use another --out "
                             "for this data")


def _require_same_config(run: Path, config: RunConfig) -> None:
    """A fold folder made with another config is refused, naming the fields that differ."""
    changes = config_changes(run, config)
    if changes:
        raise InputError(f"{run / CONFIG}: this fold was trained with another config ({'; '.join(changes)}); "
                         "use another --out or the config it was made with")


def _held_out(out: Path, folds: list[int]) -> dict[int, list[str]]:
    """Each fold's held-out case ids, from the folds' split.json, which must all describe one split."""
    splits = {fold: json.loads((fold_dir(out, fold) / SPLIT).read_text()) for fold in folds}
    first = splits[folds[0]]["folds"]
    for fold, split in splits.items():
        if split["folds"] != first:
            raise InputError(f"{fold_dir(out, fold) / SPLIT}: its split differs from fold {folds[0]}'s "
                             "(trained on other data?); the out-of-fold masks need one split")
    return {fold: first[fold] for fold in folds}


def fold_summary(fold: int) -> str:
    """The name of the summary that records what made fold `fold`'s out-of-fold masks (as `sparseg predict`'s)."""
    return f"summary_fold{fold}.csv"


def _segment_fold(checkpoint: Path, cases: list[Case], out: Path, device_name: str, fold: int) -> None:
    """The out-of-fold masks and probabilities of one fold's held-out cases, by `sparseg predict`'s batch: a
    rerun keeps those made from the same inputs, weights and resolved settings (device, engine, precision),
    recorded in the fold's summary, and makes the others again."""
    summaries = predict_batch(cases, out, load_predictor([checkpoint], device_name), save_probabilities=True,
                              mask_format="mha", summary_name=fold_summary(fold))
    failed = [s for s in summaries if s.status == "failed"]
    if failed:
        raise InputError(f"{checkpoint}: could not segment its held-out case(s): "
                         + "; ".join(f"{s.case_id}: {s.error}" for s in failed))


def threshold_sweep(cases: list[Case], folder: Path, thresholds: tuple[float, ...] = SWEEP_THRESHOLDS) -> list[dict]:
    """Mean DSC over `cases` of their probabilities in `folder` thresholded at each value (challenge Dice rules)."""
    scores = np.zeros((len(cases), len(thresholds)))
    for row, case in enumerate(cases):
        probabilities = read_image(folder / probabilities_name(case.case_id)).array
        label = read_mask(case.label)[0]
        scores[row] = [dice(label, probabilities > threshold) for threshold in thresholds]
    return [{"threshold": t, "dsc": float(mean)} for t, mean in zip(thresholds, scores.mean(axis=0))]
