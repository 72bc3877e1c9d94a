"""The trainer: labelled cases in the release layout -> a self-describing checkpoint.

Single process, or PyTorch DDP under torchrun (NCCL on GPUs, gloo on CPUs):

    sparseg train --data BONBID2023_Train --config resources/configs/paper.json --out runs/paper-fold0
    torchrun --nproc_per_node 4 -m sparseg train --data ... --config ... --out ...

`Trainer.set_up` checks the config, builds the network, reads every case and
splits them into folds; `Trainer.run` then goes epoch by epoch. Each epoch the
focal weight of TLHF follows its ramp, every training slice is seen once
(sharded over processes, one `Optimisation.step` per batch), then rank 0
segments the held-out fold with `sparseg.inference.Predictor`, the path
`sparseg predict` and the container take, and scores the masks with the
challenge's metrics. The checkpoint with the best validation DSC is kept
(`best.safetensors`), and the last epoch's when the run ends
(`final.safetensors`); `last_state.pt` holds what `--resume` needs;
`history.csv` and the PNG plots log every epoch.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from sparseg.augment import SliceAugmenter
from sparseg.cases import Case, data_inputs, find_cases
from sparseg.config import RunConfig, to_dict
from sparseg.data import (
    FINGERPRINT_FORMAT,
    EpochSampler,
    PreparedCase,
    SliceDataset,
    ValidationCase,
    fingerprint,
    prepare_case,
    read_validation_case,
    stratified_folds,
)
from sparseg.environment import code_version
from sparseg.errors import InputError
from sparseg.evaluation import METRICS, RULES, SCORING, CaseRow, score_row, summarise
from sparseg.inference import Predictor
from sparseg.io import IncompleteWrite, atomic_path, verify_zip, write_csv, write_text
from sparseg.losses import CompoundLoss, build_loss
from sparseg.model import Checkpoint, build_model, make_optimizer, save_checkpoint
from sparseg.paths import require_apart
from sparseg.plots import HISTORY_PLOTS, plot_history
from sparseg.runtime import Runtime, gradient_scaler, training_runtime

log = logging.getLogger(__name__)

BEST = "best.safetensors"
"""The weights of the epoch with the best validation DSC: chosen on the held-out fold, so its score is optimistic."""
FINAL = "final.safetensors"
"""The weights of the last epoch run (planned or early-stopped): what `sparseg cv` scores by default."""
STATE = "last_state.pt"
HISTORY = "history.csv"
SKIPPED = "skipped_cases.csv"
SPLIT = "split.json"
CONFIG = "config.json"
FINISHED = "finished.json"


def run_files(out: Path) -> list[Path]:
    """What a training run writes in its folder `out` (besides the per-process samples of `record_samples`)."""
    return [out / name for name in (BEST, FINAL, STATE, HISTORY, SKIPPED, SPLIT, CONFIG, FINISHED, *HISTORY_PLOTS)] + [
        (out / name).with_suffix(".json") for name in (BEST, FINAL)]


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls) -> Distributed:
        """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        return cls(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank)

    def broadcast(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self._device())
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        if self.world == 1:
            return values
        keys = sorted(values)
        tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self._device())
        dist.all_reduce(tensor)
        return {k: float(v) / self.world for k, v in zip(keys, tensor.tolist())}

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def _device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")

    def stop(self) -> None:
        if self.world > 1:
            dist.destroy_process_group()


@dataclass
class TrainingState:
    """What `--resume` restores, besides the model, optimiser and scheduler."""

    epoch: int = 0
    best_dsc: float = -math.inf
    best_epoch: int = -1
    stale_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Optimisation:
    """The network and what updates it, one batch at a time (`step`); also what bench/training.py times."""

    model: nn.Module
    """The bare network: checkpoints and validation use it."""
    network: nn.Module
    """What a step runs: `model`, or its DDP wrapper once `distribute` was called."""
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    scaler: torch.amp.GradScaler
    loss: CompoundLoss
    runtime: Runtime
    """Where it trains, in which precision (`runtime.training_runtime`)."""

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @classmethod
    def build(cls, config: RunConfig, runtime: Runtime) -> Optimisation:
        """The seeded network (channels-last on CUDA), Adam, the plateau scheduler and the run's loss."""
        torch.manual_seed(config.train.seed)
        device = runtime.device
        model = build_model(config.model, config.in_channels).to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        optimizer = make_optimizer(model, config.train.learning_rate, device)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=config.train.plateau_factor, patience=config.train.plateau_patience
        )
        return cls(model, model, optimizer, scheduler, gradient_scaler(runtime), build_loss(config.loss), runtime)

    def distribute(self) -> None:
        """Wrap the network for DDP (after any resumed weights are loaded).

        static_graph: the graph is the same every step, and some encoders hold parameters the
        segmentation head never uses (classifier remnants); DDP then skips them efficiently.
        """
        self.network = DistributedDataParallel(self.model, static_graph=True)

    def step(self, images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimiser step on a batch. Returns the weighted loss ("loss") and each unweighted term, detached.

        Shape: images (B, C, S, S), targets (B, 1, S, S).
        """
        images = images.to(self.device, non_blocking=True)
        targets = targets.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with self.runtime.autocast():
            logits = self.network(images)
        terms = self.loss.terms(logits.float(), targets)
        loss = self.loss.combine(terms)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {name: value.detach() for name, value in {"loss": loss, **terms}.items()}

    def state_dict(self, state: TrainingState) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": state.epoch,
            "best_dsc": state.best_dsc,
            "best_epoch": state.best_epoch,
            "stale_epochs": state.stale_epochs,
            "history": json.dumps(state.history),
        }

    def load_state(self, path: Path) -> TrainingState:
        """Restore the weights, optimiser and scheduler saved in `path`; return the rest of the run's state."""
        try:
            verify_zip(path)  # torch.load does not check the zip members' CRCs: damaged bytes would load
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except IncompleteWrite as exc:
            raise InputError(f"{path}: training state is damaged ({exc})") from None
        except Exception as exc:  # torch raises many types for a damaged file
            raise InputError(f"{path}: training state cannot be read ({type(exc).__name__})") from None
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError):
            raise InputError(f"{path}: the saved network does not fit the config's (a changed model or channels "
                             "cannot be resumed; start a new run)") from None
        try:
            self.scheduler.load_state_dict(payload["scheduler"])
            return TrainingState(
                epoch=int(payload["epoch"]),
                best_dsc=float(payload["best_dsc"]),
                best_epoch=int(payload["best_epoch"]),
                stale_epochs=int(payload["stale_epochs"]),
                history=json.loads(payload["history"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: training state is incomplete ({type(exc).__name__}: {exc})") from None


@dataclass
class Validation:
    """The held-out fold segmented by the inference path, and scored."""

    rows: list[CaseRow]
    summary: dict[str, dict[str, float]]
    masks: dict[str, np.ndarray]
    """Case id -> the (D, H, W) bool mask `sparseg predict` would write for it with these weights."""

    @property
    def predicted_fraction(self) -> float:
        """Mean fraction of voxels marked as lesion (near 0 while the true fraction is not: loss collapse)."""
        return float(np.mean([mask.mean() for mask in self.masks.values()]))


def validate(predictor: Predictor, cases: list[ValidationCase]) -> Validation:
    """Segment each case with `predictor` (what `sparseg predict` does with the files) and score it."""
    rows, masks = [], {}
    for case in cases:
        mask = predictor.predict(case.adc, case.z).mask
        masks[case.case_id] = mask
        rows.append(score_row(case.case_id, case.label, mask, case.adc.geometry, case.burden))
    return Validation(rows=rows, summary=summarise(rows), masks=masks)


def _prepare_all(cases: list[Case], config: RunConfig, out: Path, skip_bad: bool,
                 main_process: bool) -> tuple[list[Case], list[PreparedCase]]:
    """Read every case before training; name all the bad ones at once, or skip them with `skip_bad`."""
    usable, prepared, bad = [], [], []
    for case in cases:
        try:
            prepared.append(prepare_case(case, config.preprocessing))
            usable.append(case)
        except InputError as exc:
            bad.append({"case_id": case.case_id, "error": str(exc)})
    if bad and not skip_bad:
        raise InputError(f"{len(bad)} of {len(cases)} cases cannot be used: "
                         + "; ".join(b["error"] for b in bad) + " (--skip-bad trains without them)")
    if bad:
        log.warning("skipping %d unreadable case(s): %s (listed in %s)", len(bad),
                    ", ".join(b["case_id"] for b in bad), out / SKIPPED)
        if main_process:
            write_csv(out / SKIPPED, bad)
    if len(prepared) < 2:
        raise InputError(f"{len(prepared)} usable case(s): training needs at least 2")
    return usable, prepared


def config_changes(run: Path, config: RunConfig) -> list[str]:
    """How `config` differs from the one the run folder `run` was made with (its config.json), field by field:
    "train.epochs 50 there, 100 now"; [] when they agree or the folder has none."""
    path = run / CONFIG
    if not path.is_file():
        return []
    try:
        theirs = _flatten(json.loads(path.read_text()))
    except (OSError, ValueError, AttributeError, RecursionError):
        raise InputError(f"{path}: cannot be read as the run's config (JSON)") from None
    ours = _flatten(json.loads(json.dumps(to_dict(config))))
    differing = sorted(key for key in set(theirs) | set(ours) if theirs.get(key) != ours.get(key))
    return [f"{key} {theirs.get(key)!r} there, {ours.get(key)!r} now" for key in differing]


def _flatten(document: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in document.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _require_resumable(out: Path, config: RunConfig, allow_config_change: bool) -> None:
    """--resume needs a run in `out`, made with `config` (unless told that a change is meant)."""
    if not (out / STATE).is_file():
        raise InputError(f"{out}: nothing to resume (no {STATE}); leave out --resume to start a run there")
    changes = config_changes(out, config)
    if changes and not allow_config_change:
        raise InputError(f"{out / CONFIG}: the run was made with another config ({'; '.join(changes)}); resume "
                         "with the config it was made with, or pass --allow-config-change")
    if changes:
        log.warning("%s: resuming with a changed config: %s", out, "; ".join(changes))


def _require_same_split(out: Path, folds: list[list[str]], fold: int, data_sha256: str) -> None:
    """A resumed run must hold out the same cases (another split would validate on cases it trained on) and
    train on the same files (its checkpoints' data fingerprint would name data the first epochs never saw)."""
    path = out / SPLIT
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        raise InputError(f"{path}: missing or unreadable, so the split and the data this run began with cannot be "
                         "checked; start a new run") from None
    if not isinstance(earlier, dict) or earlier.get("folds") != folds or earlier.get("fold") != fold:
        raise InputError(f"{path}: the cases or the fold differ from those the run began with (another split); "
                         "resume on the same data and --fold, or start a new run")
    if earlier.get("data_sha256") is not None and earlier.get("data_fingerprint") != FINGERPRINT_FORMAT:
        log.warning("%s: its data hash was made by an earlier SPARSeg, which hashed the files by name alone; it "
                    "cannot be compared with this data's, so the run resumes unchecked", path)
    elif earlier.get("data_sha256") not in (None, data_sha256):
        raise InputError(f"{path}: the cases' files changed since the run began (data sha256 "
                         f"{str(earlier['data_sha256'])[:12]} then, {data_sha256[:12]} now); resume on the same "
                         "data, or start a new run")


class Trainer:
    """One fold's training run in its folder; see the module docstring."""

    def __init__(self, config: RunConfig, out: Path, fold: int, dist_info: Distributed,
                 optimisation: Optimisation, train_cases: list[PreparedCase], validation_cases: list[ValidationCase],
                 provenance: dict, state: TrainingState, progress: bool = True) -> None:
        self.config, self.out, self.fold, self.dist = config, out, fold, dist_info
        self.optimisation, self.validation_cases, self.provenance = optimisation, validation_cases, provenance
        self.state, self.progress = state, progress
        tc = config.train
        augmenter = SliceAugmenter(config.preprocessing.channels) if tc.augment else None
        dataset = SliceDataset(train_cases, augmenter)
        self.sampler = EpochSampler(len(dataset), tc.seed, dist_info.rank, dist_info.world, tc.slices_per_epoch)
        self.loader = DataLoader(dataset, batch_size=tc.batch_size, sampler=self.sampler, num_workers=tc.workers,
                                 drop_last=len(self.sampler) > tc.batch_size,
                                 pin_memory=optimisation.device.type == "cuda", persistent_workers=False)
        # Validation runs a copy of the network, so inference's memory format and mode never touch training.
        self._inference_network = copy.deepcopy(optimisation.model) if dist_info.main else None

    @classmethod
    def set_up(cls, data: Path, config: RunConfig, out: Path, fold: int = 0, resume: bool = False,
               device_name: str = "auto", progress: bool = True, dist_info: Distributed | None = None,
               skip_bad: bool = False, allow_config_change: bool = False,
               config_file: Path | None = None) -> Trainer:
        """Check the arguments, build the network, read every case, split them and restore the run's state
        with `resume`, before any file is written; then write the split and the config.

        `resume` continues the run in `out` with the config it was made with: another config (its
        fields are named) is refused unless `allow_config_change`, and so is another split of the cases.
        No file the run writes may be, or replace, one of its inputs: the cases' files, a manifest, or
        `config_file`, the file `config` was read from.
        """
        dist_info = dist_info or Distributed()
        if not 0 <= fold < config.train.folds:
            raise InputError(f"--fold {fold}: expected 0 to {config.train.folds - 1}")
        if not resume and (out / STATE).exists():
            raise InputError(f"{out}: holds a training run already; pass --resume to continue it "
                             "or choose another --out")
        if resume:
            _require_resumable(out, config, allow_config_change)
        runtime = training_runtime(device_name)
        if runtime.device.type == "cuda":
            runtime = replace(runtime, device=torch.device("cuda", dist_info.local_rank))
        optimisation = Optimisation.build(config, runtime)
        listed = find_cases(data, require_labels=True)
        require_apart(run_files(out), [*data_inputs(data, listed), *([config_file] if config_file else [])])
        cases, prepared = _prepare_all(listed, config, out, skip_bad, dist_info.main)
        folds = stratified_folds(prepared, config.train.folds, config.train.fold_seed)
        held_out = set(folds[fold])
        data = fingerprint(cases)
        data_sha256 = str(data["sha256"])
        state = TrainingState()
        if resume:
            _require_same_split(out, folds, fold, data_sha256)
            state = optimisation.load_state(out / STATE)
            if dist_info.main:
                log.info("resuming %s after epoch %d", out, state.epoch)
        out.mkdir(parents=True, exist_ok=True)
        if dist_info.main:
            write_text(out / SPLIT, json.dumps({"fold": fold, "folds": folds, "seed": config.train.fold_seed,
                                                "data_sha256": data_sha256, "data_fingerprint": FINGERPRINT_FORMAT},
                                               indent=2) + "\n")
            write_text(out / CONFIG, json.dumps(to_dict(config), indent=2) + "\n")
        validation_cases = [read_validation_case(c) for c in cases if c.case_id in held_out] if dist_info.main else []
        # The code that trains, not whatever is checked out when a checkpoint is saved.
        split = {"training": sorted(c.case_id for c in prepared if c.case_id not in held_out),
                 "held_out": sorted(held_out)}
        provenance = {"code_version": code_version(), "data": data, "split": split}
        if dist_info.world > 1:
            optimisation.distribute()
        trainer = cls(config, out, fold, dist_info, optimisation, [c for c in prepared if c.case_id not in held_out],
                      validation_cases, provenance, state, progress)
        if dist_info.main and not trainer.finished():  # a finished run resumed with more epochs is not finished
            (out / FINISHED).unlink(missing_ok=True)
        return trainer

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over this process's share of the training slices; the mean loss terms over all processes."""
        tc = self.config.train
        torch.manual_seed(tc.seed * 1_000_003 + epoch)  # augmentation draws depend on the epoch alone
        self.sampler.set_epoch(epoch)
        self.optimisation.loss.set_epoch(epoch, tc.epochs)
        if tc.record_samples:
            samples = self.out / f"samples_rank{self.dist.rank}_epoch{epoch}.json"
            write_text(samples, json.dumps(self.sampler.indices()))
        self.optimisation.network.train()
        sums: dict[str, float] = {}
        steps = 0
        bar = tqdm(self.loader, desc=f"epoch {epoch + 1}/{tc.epochs}", leave=False,
                   disable=not (self.progress and self.dist.main and sys.stderr.isatty()))
        for images, targets in bar:
            values = self.optimisation.step(images, targets)
            steps += 1
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + float(value)
            bar.set_postfix(loss=f"{float(values['loss']):.4f}")
        return self.dist.mean({k: v / max(steps, 1) for k, v in sums.items()})

    def predictor(self) -> Predictor:
        """The inference path (`sparseg predict`'s defaults) over the weights as they are now."""
        assert self._inference_network is not None, "validation runs on rank 0 only"
        self._inference_network.load_state_dict(self.optimisation.model.state_dict())
        return Predictor.eager([Checkpoint(self.config, {}, module=self._inference_network)],
                               self.optimisation.runtime)

    def validate(self) -> Validation:
        """Segment and score the held-out fold (rank 0)."""
        return validate(self.predictor(), self.validation_cases)

    def finish_epoch(self, epoch: int, means: dict[str, float], validation: Validation | None,
                     seconds: float) -> None:
        """Log the epoch, step the scheduler, keep the checkpoint if it is the best so far, save the state."""
        val_dsc = math.nan
        if validation is not None:
            val_dsc = validation.summary["all"]["dsc"]
            self._log(epoch, means, validation, seconds)
        val_dsc = self.dist.broadcast(val_dsc)
        self.optimisation.scheduler.step(val_dsc)
        self.state.epoch = epoch + 1
        if val_dsc > self.state.best_dsc:
            self.state.best_dsc, self.state.best_epoch, self.state.stale_epochs = val_dsc, epoch + 1, 0
            if validation is not None:
                self._save_checkpoint(BEST, epoch, validation)
        else:
            self.state.stale_epochs += 1
        if validation is not None and self.finished():
            self._save_checkpoint(FINAL, epoch, validation)
        if self.dist.main:
            with atomic_path(self.out / STATE, verify_zip) as temporary:
                torch.save(self.optimisation.state_dict(self.state), temporary)
            plot_history(self.state.history, self.out, RULES[0].label)
        self.dist.barrier()

    def _log(self, epoch: int, means: dict[str, float], validation: Validation, seconds: float) -> None:
        overall = validation.summary["all"]
        self.state.history.append({
            "epoch": epoch + 1,
            "lr": self.optimisation.optimizer.param_groups[0]["lr"],
            "focal_weight": self.optimisation.loss.weights["focal"],
            **{f"train_{k}": v for k, v in means.items()},
            **{f"val_{metric}": overall[metric] for metric in METRICS},
            "val_predicted_fraction": validation.predicted_fraction,
            "val_true_fraction": float(np.mean([c.label.mean() for c in self.validation_cases])),
            "seconds": seconds,
        })
        write_csv(self.out / HISTORY, self.state.history)
        log.info("epoch %d: loss %.4f, val DSC %.4f MASD %.3f NSD %.4f (%s rule) (%.0f s)", epoch + 1,
                 means.get("loss", 0), overall["dsc"], overall["masd"], overall["nsd"], RULES[0].label, seconds)

    def _save_checkpoint(self, name: str, epoch: int, validation: Validation) -> None:
        data = self.provenance["data"]
        save_checkpoint(self.out / name, self.optimisation.model, self.config, {
            "code_version": self.provenance["code_version"],
            **({"notice": data["notice"]} if data["synthetic"] else {}),
            "data": data,
            "split": self.provenance["split"],
            "fold": self.fold,
            "epoch": epoch + 1,
            "validation": validation.summary,
            "validation_scoring": SCORING,
        })

    def finished(self) -> bool:
        """All planned epochs run, or stopped early: a resumed finished run trains no further."""
        tc = self.config.train
        return self.state.epoch >= tc.epochs or self.state.stale_epochs >= tc.early_stopping_patience

    def run(self) -> dict:
        """Train from the state's epoch to the planned epochs or an early stop; the result of `train`.

        At the end, rank 0 writes `finished.json` (this result), which `sparseg cv` reads to know a fold is done.
        """
        while not self.finished():
            epoch, started = self.state.epoch, time.perf_counter()
            means = self.train_epoch(epoch)
            validation = self.validate() if self.dist.main else None
            self.finish_epoch(epoch, means, validation, time.perf_counter() - started)
            if self.state.stale_epochs >= self.config.train.early_stopping_patience and self.dist.main:
                log.info("early stop: no better validation DSC for %d epochs", self.state.stale_epochs)
        result = {"best_dsc": self.state.best_dsc, "best_epoch": self.state.best_epoch, "epochs": self.state.epoch,
                  "checkpoint": str(self.out / BEST), "rank": self.dist.rank}
        if self.dist.main:
            write_text(self.out / FINISHED, json.dumps(result, indent=2) + "\n")
        return result


def train(
    data: Path | str,
    config: RunConfig,
    out: Path | str,
    fold: int = 0,
    resume: bool = False,
    device_name: str = "auto",
    progress: bool = True,
    skip_bad: bool = False,
    allow_config_change: bool = False,
    config_file: Path | None = None,
) -> dict:
    """Train one fold; returns the best validation DSC, its epoch, the epochs run and the checkpoint path.

    Every case is read before training starts; unreadable ones are all named in
    one error, or with `skip_bad` left out and listed in the run's skipped_cases.csv.
    """
    dist_info = Distributed.start()
    try:
        trainer = Trainer.set_up(Path(data), config, Path(out), fold, resume, device_name, progress, dist_info,
                                 skip_bad, allow_config_change, config_file)
        return trainer.run()
    finally:
        dist_info.stop()
