"""The trainer: labelled cases in the release layout -> a self-describing checkpoint.

Single process, or PyTorch DDP under torchrun (NCCL on GPUs, gloo on CPUs):

    sparseg train --data BONBID2023_Train --config resources/configs/paper.json --out runs/paper-fold0
    torchrun --nproc_per_node 4 -m sparseg.train --data ... --config ... --out ...

Each epoch: the focal weight of TLHF follows its ramp, every training slice is
seen once (sharded over processes), then rank 0 scores the held-out fold on
whole volumes with the challenge's metrics. The checkpoint with the best
validation DSC is kept (`best.safetensors`); `last_state.pt` holds what
`--resume` needs; `history.csv` and the PNG plots log every epoch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from sparseg.augment import SliceAugmenter
from sparseg.cases import Case, find_cases
from sparseg.config import RunConfig, to_dict
from sparseg.data import EpochSampler, PreparedCase, SliceDataset, fingerprint, prepare_case, stratified_folds
from sparseg.environment import code_version
from sparseg.errors import InputError
from sparseg.evaluation import score_row, summarise
from sparseg.inference import autocast, predict_slices, resolve_device, training_precision
from sparseg.io import atomic_path, write_csv
from sparseg.losses import SegmentationLoss
from sparseg.model import build_model, make_optimizer, save_checkpoint
from sparseg.plots import plot_history
from sparseg.preprocessing import from_slices

log = logging.getLogger(__name__)

BEST = "best.safetensors"
STATE = "last_state.pt"
HISTORY = "history.csv"
SKIPPED = "skipped_cases.csv"
SPLIT = "split.json"


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


def validate(model: torch.nn.Module, cases: list[PreparedCase], config: RunConfig, device: torch.device) -> dict:
    """Whole-volume scores of the held-out cases, and the mean predicted lesion fraction."""
    rows, fractions = [], []
    for case in cases:
        probabilities = predict_slices(model, case.slices, device, config.train.batch_size, training_precision(device))
        mask = from_slices(probabilities, case.label.shape[1:]) > config.threshold
        fractions.append(float(mask.mean()))
        rows.append(score_row(case.case_id, case.label, mask, case.spacing_mm, case.burden))
    summary = summarise(rows)
    return {"summary": summary, "predicted_fraction": float(np.mean(fractions)),
            "true_fraction": float(np.mean([c.label.mean() for c in cases]))}


def _save_state(path: Path, model, optimizer, scheduler, state: TrainingState) -> None:
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": state.epoch,
        "best_dsc": state.best_dsc,
        "best_epoch": state.best_epoch,
        "stale_epochs": state.stale_epochs,
        "history": json.dumps(state.history),
    }
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)


def _load_state(path: Path, model, optimizer, scheduler) -> TrainingState:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise InputError(f"{path}: training state cannot be read ({type(exc).__name__})") from None
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    return TrainingState(
        epoch=int(payload["epoch"]),
        best_dsc=float(payload["best_dsc"]),
        best_epoch=int(payload["best_epoch"]),
        stale_epochs=int(payload["stale_epochs"]),
        history=json.loads(payload["history"]),
    )


def train(
    data: Path | str,
    config: RunConfig,
    out: Path | str,
    fold: int = 0,
    resume: bool = False,
    device_name: str = "auto",
    progress: bool = True,
    skip_bad: bool = False,
) -> dict:
    """Train one fold; returns the best validation summary. See the module docstring.

    Every case is read before training starts; unreadable ones are all named in
    one error, or with `skip_bad` left out and listed in the run's skipped_cases.csv.
    """
    dist_info = Distributed.start()
    try:
        return _train(Path(data), config, Path(out), fold, resume, device_name, progress, dist_info, skip_bad)
    finally:
        dist_info.stop()


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


def _train(data: Path, config: RunConfig, out: Path, fold: int, resume: bool, device_name: str,
           progress: bool, dist_info: Distributed, skip_bad: bool = False) -> dict:
    tc = config.train
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    out.mkdir(parents=True, exist_ok=True)
    if not resume and (out / STATE).exists():
        raise InputError(f"{out}: holds a training run already; pass --resume to continue it or choose another --out")

    cases, prepared = _prepare_all(find_cases(data, require_labels=True), config, out, skip_bad, dist_info.main)
    folds = stratified_folds(prepared, tc.folds, tc.seed)
    if not 0 <= fold < tc.folds:
        raise InputError(f"--fold {fold}: expected 0 to {tc.folds - 1}")
    val_ids = set(folds[fold])
    train_cases = [c for c in prepared if c.case_id not in val_ids]
    val_cases = [c for c in prepared if c.case_id in val_ids]
    if dist_info.main:
        (out / SPLIT).write_text(json.dumps({"fold": fold, "folds": folds, "seed": tc.seed}, indent=2) + "\n")
        (out / "config.json").write_text(json.dumps(to_dict(config), indent=2) + "\n")
    data_fingerprint = fingerprint(cases)
    code = code_version()  # the code that trains, not whatever is checked out when a checkpoint is saved

    torch.manual_seed(tc.seed)
    model = build_model(config.model, config.in_channels).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    optimizer = make_optimizer(model, tc.learning_rate, device)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=tc.plateau_factor, patience=tc.plateau_patience
    )
    state = TrainingState()
    if resume and (out / STATE).exists():
        state = _load_state(out / STATE, model, optimizer, scheduler)
        if dist_info.main:
            log.info("resuming %s after epoch %d", out, state.epoch)
    # static_graph: the graph is the same every step, and some encoders hold parameters the
    # segmentation head never uses (classifier remnants); DDP then skips them efficiently.
    wrapped = DistributedDataParallel(model, static_graph=True) if dist_info.world > 1 else model

    augmenter = SliceAugmenter(config.preprocessing.channels) if tc.augment else None
    dataset = SliceDataset(train_cases, augmenter)
    sampler = EpochSampler(len(dataset), tc.seed, dist_info.rank, dist_info.world, tc.slices_per_epoch)
    loader = DataLoader(dataset, batch_size=tc.batch_size, sampler=sampler, num_workers=tc.workers,
                        drop_last=len(sampler) > tc.batch_size, pin_memory=device.type == "cuda",
                        persistent_workers=False)
    loss_fn = SegmentationLoss(config.loss)
    use_scaler = device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    for epoch in range(state.epoch, tc.epochs):
        started = time.perf_counter()
        torch.manual_seed(tc.seed * 1_000_003 + epoch)  # augmentation draws depend on the epoch alone
        sampler.set_epoch(epoch)
        loss_fn.set_epoch(epoch, tc.epochs)
        if tc.record_samples:
            (out / f"samples_rank{dist_info.rank}_epoch{epoch}.json").write_text(json.dumps(sampler.indices()))
        wrapped.train()
        sums: dict[str, float] = {}
        steps = 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{tc.epochs}", leave=False,
                   disable=not (progress and dist_info.main and sys.stderr.isatty()))
        for images, targets in bar:
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            if device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast(device, training_precision(device)):
                logits = wrapped(images)
            terms = loss_fn.terms(logits.float(), targets)
            loss = loss_fn.combine(terms)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            steps += 1
            for name, value in {"loss": loss, **terms}.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        means = dist_info.mean({k: v / max(steps, 1) for k, v in sums.items()})

        val_dsc = math.nan
        if dist_info.main:
            result = validate(model, val_cases, config, device)
            overall = result["summary"]["all"]
            val_dsc = overall["dsc"]
            row = {
                "epoch": epoch + 1,
                "lr": optimizer.param_groups[0]["lr"],
                "focal_weight": loss_fn.focal_weight,
                **{f"train_{k}": v for k, v in means.items()},
                "val_dsc": overall["dsc"],
                "val_masd": overall["masd"],
                "val_nsd": overall["nsd"],
                "val_predicted_fraction": result["predicted_fraction"],
                "val_true_fraction": result["true_fraction"],
                "seconds": time.perf_counter() - started,
            }
            state.history.append(row)
            write_csv(out / HISTORY, state.history)
            log.info("epoch %d: loss %.4f, val DSC %.4f MASD %.3f NSD %.4f (%.0f s)", epoch + 1, means.get("loss", 0),
                     overall["dsc"], overall["masd"], overall["nsd"], row["seconds"])
        val_dsc = dist_info.broadcast(val_dsc)
        scheduler.step(val_dsc)
        state.epoch = epoch + 1
        if val_dsc > state.best_dsc:
            state.best_dsc, state.best_epoch, state.stale_epochs = val_dsc, epoch + 1, 0
            if dist_info.main:
                save_checkpoint(out / BEST, model, config, {
                    "code_version": code,
                    **({"notice": data_fingerprint["notice"]} if data_fingerprint["synthetic"] else {}),
                    "data": data_fingerprint,
                    "fold": fold,
                    "epoch": epoch + 1,
                    "validation": result["summary"],
                })
        else:
            state.stale_epochs += 1
        if dist_info.main:
            _save_state(out / STATE, model, optimizer, scheduler, state)
            plot_history(state.history, out)
        dist_info.barrier()
        if state.stale_epochs >= tc.early_stopping_patience:
            if dist_info.main:
                log.info("early stop: no better validation DSC for %d epochs", state.stale_epochs)
            break
    return {"best_dsc": state.best_dsc, "best_epoch": state.best_epoch, "epochs": state.epoch,
            "checkpoint": str(out / BEST), "rank": dist_info.rank}


def main() -> int:
    """`python -m sparseg.train ...` (for torchrun): the same arguments as `sparseg train`."""
    from sparseg.cli import main as cli_main

    return cli_main(["train", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
