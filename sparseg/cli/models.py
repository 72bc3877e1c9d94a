"""The subcommands of networks: training, cross-validation, ablation, checkpoint information, export, int8
quantization, the grand-challenge model tarball."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from sparseg.cli.common import (
    LABELLED_DATA,
)
from sparseg.config import (
    DEVICES,
    PRESETS,
    RECALIBRATIONS,
    QuantizationConfig,
)
from sparseg.errors import ConfigError


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a network on labelled cases (one fold); several GPUs: "
                       "torchrun --nproc_per_node N -m sparseg train ...")
    p.add_argument("--data", type=Path, required=True, help=LABELLED_DATA)
    p.add_argument("--config", type=Path, required=True, help="run config JSON (resources/configs/)")
    p.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, split, history, plots")
    p.add_argument("--fold", type=int, default=0, help="held-out fold for validation (default 0)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch, with the "
                   "config it was made with")
    p.add_argument("--allow-config-change", action="store_true",
                   help="with --resume: continue with a config that differs from the run's (e.g. more epochs); "
                        "the differences are logged and config.json is rewritten")
    p.add_argument("--skip-bad", action="store_true",
                   help="train without cases that cannot be read (listed in skipped_cases.csv) instead of stopping")
    p.add_argument("--seed", type=int,
                   help="train with this seed (initial weights, slices drawn, augmentation) instead of the config's, "
                        "on the config's split of the folds: runs that differ in their seed alone (docs/training.md)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from sparseg.config import load_run_config
    from sparseg.train import train

    config = load_run_config(args.config)
    if args.seed is not None:
        if args.seed < 0:
            raise ConfigError("--seed", f"must be 0 or more, not {args.seed}")
        config = dataclasses.replace(config, train=dataclasses.replace(
            config.train, seed=args.seed, split_seed=config.train.fold_seed))
    try:
        result = train(args.data, config, args.out, fold=args.fold, resume=args.resume, device_name=args.device,
                       skip_bad=args.skip_bad, allow_config_change=args.allow_config_change, config_file=args.config)
    except ConfigError as exc:  # what only building the network finds (the encoder's name)
        raise ConfigError(f"{args.config}: {exc.field}", exc.problem) from None
    if result["rank"] == 0:
        print(f"best validation DSC {result['best_dsc']:.4f} at epoch {result['best_epoch']} "
              f"of {result['epochs']}; checkpoint {result['checkpoint']}")
    return 0


def add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print what a checkpoint is: config, data, metrics, versions")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--verify", action="store_true", help="also load the weights and check their sha256")
    p.set_defaults(handler=_info)


def _info(args: argparse.Namespace) -> int:
    import json

    from sparseg.model import read_metadata

    metadata = read_metadata(args.checkpoint)
    uncovered: list[str] = []
    if args.verify:
        from sparseg.model import load_checkpoint, uncovered_fields

        load_checkpoint(args.checkpoint)
        uncovered = uncovered_fields(metadata)
        verified = ("the weights and every field of the header match their sha256" if not uncovered else
                    f"NOT verified whole: the weights {'and the run config ' if 'config' not in uncovered else ''}"
                    f"match their sha256, but no hash covers {', '.join(uncovered)} (format {metadata['format']}, "
                    "saved by an earlier SPARSeg, or relabelled as one)")
        metadata = {**metadata, "verified": verified}
    print(json.dumps(metadata, indent=2))
    if uncovered:
        print(f"sparseg: error: {args.checkpoint}: {metadata['verified']}", file=sys.stderr)
        return 1
    return 0


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write each checkpoint's network in OpenVINO's format beside it "
                       "(<name>.openvino.xml/.bin/.json): the CPU engine (made at start-up when missing)")
    p.add_argument("checkpoints", type=Path, nargs="+")
    p.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from sparseg.derived import OPENVINO, Derived, make
    from sparseg.model import load_checkpoint

    for checkpoint in args.checkpoints:  # every one checked whole before any is exported: all or nothing
        Derived.of(checkpoint, OPENVINO)
        load_checkpoint(checkpoint)
    for checkpoint in args.checkpoints:
        print(f"wrote {', '.join(str(p) for p in make(checkpoint).all_paths)}")
    return 0


def add_quantize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="write a checkpoint's int8 model beside it (<name>.int8.*), calibrated on "
                       "its training cases, and measure on held-out cases how far its masks are from fp32's")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", type=Path, help=LABELLED_DATA + "; the cases the checkpoint was trained on calibrate, "
                   "the others (its validation fold when the data is its own) are held out")
    defaults = QuantizationConfig()
    p.add_argument("--calibration-slices", type=int, default=defaults.slices,
                   help=f"slices with brain to calibrate on (default {defaults.slices})")
    p.add_argument("--lesion-share", type=float, default=defaults.lesion_share,
                   help="share of the calibration slices drawn from slices whose label holds lesion "
                        f"(default {defaults.lesion_share:g}: at random among those with brain)")
    p.add_argument("--preset", choices=PRESETS, default=defaults.preset,
                   help=f"NNCF's preset: symmetric or asymmetric activations (default {defaults.preset})")
    p.add_argument("--full-bias-correction", action="store_true", help="NNCF's full bias correction (slower)")
    p.add_argument("--smooth-quant-alpha", type=float, help="SmoothQuant on the convolutions with this alpha")
    p.add_argument("--accuracy-control", action="store_true",
                   help="NNCF's accuracy-aware quantization: layers that cost the most Dice against the fp32 masks "
                        "of the calibration slices stay in fp32")
    p.add_argument("--recalibrate", choices=RECALIBRATIONS, default=defaults.recalibrate,
                   help="shift int8's logits after calibration: volume (as many lesion voxels on the calibration "
                        "slices as fp32), dice (the best pooled Dice with fp32 there), off (as NNCF leaves them); "
                        f"default {defaults.recalibrate} (docs/engines.md measures the three); the shift is "
                        "recorded in the int8 model's stamp")
    p.set_defaults(handler=_quantize)


def _quantize(args: argparse.Namespace) -> int:
    from sparseg.quantization import describe, quantize

    try:
        settings = QuantizationConfig(slices=args.calibration_slices, lesion_share=args.lesion_share,
                                      preset=args.preset, fast_bias_correction=not args.full_bias_correction,
                                      smooth_quant_alpha=args.smooth_quant_alpha,
                                      recalibrate=args.recalibrate, accuracy_control=args.accuracy_control)
    except ConfigError as exc:  # named as the user typed it
        option = {"slices": "--calibration-slices"}.get(exc.field, "--" + exc.field.replace("_", "-"))
        raise ConfigError(option, exc.problem) from None
    result = quantize(args.checkpoint, args.data, settings=settings)
    print(describe(result), end="")
    return 0


def add_ablate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ablate", help="cross-validate several configs on the same folds; compare their "
                       "out-of-fold scores in one table")
    p.add_argument("--data", type=Path, required=True, help=LABELLED_DATA)
    p.add_argument("--configs", type=Path, nargs="+", required=True, help="run config JSON files")
    p.add_argument("--out", type=Path, required=True, help="folder for one cross-validation per config and "
                   "ablation.md")
    p.add_argument("--folds", type=int, nargs="+", metavar="K",
                   help="train and score only these folds (default: every fold of each config)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.set_defaults(handler=_ablate)


def _ablate(args: argparse.Namespace) -> int:
    from sparseg.ablation import run_ablation

    table = run_ablation(args.data, args.configs, args.out, folds=args.folds, device_name=args.device)
    print(table, end="")
    print("scored on the out-of-fold masks of " + (f"fold(s) {' '.join(map(str, args.folds))}" if args.folds
                                                    else "every fold"))
    return 0


def add_cv(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cv", help="cross-validate: train every fold, segment each fold's held-out cases with its "
                       "network, score all of those out-of-fold masks once (resumable; folds shareable)")
    p.add_argument("--data", type=Path, required=True, help=LABELLED_DATA)
    p.add_argument("--config", type=Path, required=True, help="run config JSON (resources/configs/)")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for fold<k>/ runs, out_of_fold/ masks, out_of_fold_scores/ and threshold_sweep.csv")
    p.add_argument("--folds", type=int, help="number of folds (default: the config's train.folds)")
    p.add_argument("--only", type=int, nargs="+", metavar="K",
                   help="train only these folds (several machines or GPUs, one shared --out); the out-of-fold "
                        "scores come once every fold is finished")
    p.add_argument("--checkpoint", choices=("final", "best"), default="final",
                   help="which network of each fold segments its held-out cases: the last epoch's (default, as "
                        "nnU-Net) or the best epoch's, which was picked on those very cases (optimistic)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.set_defaults(handler=_cv)


def _cv(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from sparseg.config import load_run_config
    from sparseg.crossval import outputs, run_cv
    from sparseg.evaluation import lesion_table, markdown_table

    config = load_run_config(args.config)
    if args.folds is not None:
        config = replace(config, train=replace(config.train, folds=args.folds))
    try:
        result = run_cv(args.data, config, args.out, only=args.only, device_name=args.device,
                        checkpoint=args.checkpoint, config_file=args.config)
    except ConfigError as exc:  # what only building the network finds (the encoder's name)
        raise ConfigError(f"{args.config}: {exc.field}", exc.problem) from None
    if result.report is None:
        print("run the same command again once they are (or on the machine that trains them) to score the "
              "out-of-fold masks")
        return 0
    masks, scores, sweep = outputs(args.out, args.checkpoint)
    print(f"out-of-fold masks of {len(result.report.rows)} cases ({len(result.folds)} folds, each fold's "
          f"{result.checkpoint}) in {masks}; scores in {scores}")
    print(markdown_table(result.report.summary, result.report.config.nsd_tolerance_mm))
    print(lesion_table(result.report.summary, result.report.config.lesion_band_edges_ml), end="")
    print(f"\nout-of-fold DSC by sigmoid threshold (the checkpoints use {config.threshold:g}; {sweep}):")
    print("| threshold | DSC |\n|---|---|")
    for row in result.sweep or []:
        best = " (best)" if row["threshold"] == result.best_threshold else ""
        print(f"| {row['threshold']:.2f}{best} | {row['dsc']:.4f} |")
    return 0


def add_package(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("package", help="the grand-challenge model tarball of trained checkpoints (the image reads "
                       "it from /opt/ml/model/)")
    p.add_argument("--weights", type=Path, nargs="+", required=True,
                   help="checkpoints to average, e.g. runs/cv/fold*/final.safetensors")
    p.add_argument("--out", type=Path, required=True, help="the tarball to write, e.g. model.tar.gz")
    p.add_argument("--no-export", action="store_true",
                   help="leave out the OpenVINO exports (the image then makes them at start-up on a CPU)")
    p.add_argument("--quantize-data", type=Path, metavar="DATA",
                   help="first quantize each checkpoint to int8 with these labelled training cases (as `sparseg "
                        "quantize`) and pack the int8 models; current int8 models beside the checkpoints are packed "
                        "anyway")
    p.set_defaults(handler=_package)


def _package(args: argparse.Namespace) -> int:
    from sparseg.submission import describe, package_model

    manifest = package_model(args.weights, args.out, export=not args.no_export,
                             quantize_data=args.quantize_data)
    print(describe(manifest, args.out), end="")
    return 0
