"""The `sparseg` command: one subcommand per thing a user does.

Errors a user can cause are printed as one line, `sparseg: error: ...`, with
exit code 2 (`--debug` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from pathlib import Path

from sparseg import __version__
from sparseg.cases import (
    BATCH_REPORT,
    BATCH_SUMMARY,
    MASK_FORMATS,
    SYNTH_MANIFEST,
    overlay_name,
    prediction_name,
    probabilities_name,
)
from sparseg.config import (
    ATLAS_STATISTICS,
    AUTO_BATCH_SIZE,
    DEVICES,
    ENGINES,
    INTENSITY_NORMALISATIONS,
    PRECISIONS,
    PRESETS,
    AtlasConfig,
    EvaluationConfig,
    PreprocessingConfig,
    QuantizationConfig,
)
from sparseg.errors import ConfigError, SparsegError
from sparseg.io import file_problem

THRESHOLD_RULE = f"Z_ADC < {PreprocessingConfig().z_threshold:g}"
LABELLED_DATA = "labelled cases: the release layout or a CSV manifest (case_id,adc,zadc,label)"
"""The threshold baseline's rule, in words."""


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write synthetic cases in the BONBID-HIE release layout")
    p.add_argument("--out", type=Path, required=True, help="folder to write (1ADC_ss/, 2Z_ADC/, 3LABEL/)")
    p.add_argument("--cases", type=int, default=10, help="number of cases (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same cases (default 0)")
    p.add_argument("--layout", choices=("release", "input"), default="release",
                   help="'release' (default) or 'input': one case in the container's /input layout")
    p.add_argument("--index", type=int, default=0, help="with --layout input: which case of the seed")
    p.add_argument("--size", type=int, help="fixed in-plane size in voxels (default: random, 128-256)")
    p.add_argument("--depth", type=int, help="fixed number of slices (default: random, 16-64)")
    p.add_argument("--full-brain", action="store_true",
                   help="thin slices over the middle of the brain: brain on every slice, as on most slices of a "
                        "real volume (benchmarks); default: the whole head, brain on a quarter to all slices")
    p.add_argument("--population", action="store_true",
                   help="draw every case from one template anatomy (its own affine map, smooth warp and ADC level), "
                        "its Z_ADC against that population's atlas, written to OUT/generating_atlas/ (to measure a "
                        "computed Z_ADC against the truth)")
    p.set_defaults(handler=_synth)


def _synth(args: argparse.Namespace) -> int:
    from sparseg import synth

    start = time.perf_counter()
    if args.cases < 1:
        raise SparsegError(f"--cases must be 1 or more, not {args.cases}")
    for name in ("size", "depth"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise SparsegError(f"--{name} must be a positive number of voxels, not {getattr(args, name)}")
    config = synth.SynthConfig().with_shape(args.size, args.depth, full_brain=args.full_brain)
    if args.layout == "input":
        if args.population:
            raise SparsegError("--population writes the release layout with its atlas; leave out --layout input")
        if args.cases != 1:
            raise SparsegError("--layout input writes exactly one case; use --cases 1 and --index to choose it")
        case = synth.write_input_case(args.out, seed=args.seed, index=args.index, config=config)
        print(f"wrote {case.case_id} in the container /input layout under {args.out}")
    else:
        synth.write_dataset(args.out, n_cases=args.cases, seed=args.seed, config=config,
                            drawn_from_population=args.population)
        atlas = f"; generating atlas: {Path(args.out) / synth.GENERATING_ATLAS}" if args.population else ""
        print(f"wrote {args.cases} synthetic cases (seed {args.seed}) under {args.out} "
              f"in {time.perf_counter() - start:.1f} s; manifest: {Path(args.out) / SYNTH_MANIFEST}{atlas}")
    return 0


def _add_atlas(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("atlas", help="make a normative ADC atlas (what Z_ADC is measured against): build one from a "
                       "cohort, or import published maps")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    build = verbs.add_parser("build", help="build an atlas from a cohort's ADC maps (ANTs group-wise template; "
                             "lesions left out by their labels, or Z_ADC < -2 where Z_ADC is given)")
    build.add_argument("--data", type=Path, required=True,
                       help="the cohort: a release-layout folder, /input folders, a CSV manifest (case_id,adc"
                            "[,zadc][,label]), or a folder with --adc")
    build.add_argument("--adc", help="with a plain folder: a glob pattern of the ADC files, the case id where the * is")
    build.add_argument("--out", type=Path, required=True, help="the atlas folder to write")
    defaults = AtlasConfig()
    build.add_argument("--iterations", type=int, default=defaults.iterations,
                       help=f"rounds of group-wise template building (default {defaults.iterations}; 0: the case "
                            "of median brain volume is the template)")
    build.add_argument("--spacing-mm", type=float, default=defaults.spacing_mm,
                       help=f"the atlas's isotropic voxel spacing (default {defaults.spacing_mm:g})")
    build.add_argument("--statistics", choices=ATLAS_STATISTICS, default=defaults.statistics,
                       help="mean and SD, or robust (median and MAD); auto (default): the mean where every case's "
                            "lesion is known, else robust")
    build.add_argument("--normalisation", choices=INTENSITY_NORMALISATIONS, default=defaults.normalisation,
                       help="scale each ADC to the cohort's median brain ADC first (default median)")
    build.add_argument("--no-calibration", action="store_true",
                       help="keep the SD as measured (default: where every case gives its Z_ADC, the SD is scaled so "
                            "that healthy tissue's Z_ADC spreads as the given one does)")
    build.set_defaults(handler=_atlas_build)
    imported = verbs.add_parser("import", help="make an atlas folder from published mean and SD maps")
    imported.add_argument("--mean", type=Path, required=True, help="the mean ADC map (1e-6 mm^2/s)")
    imported.add_argument("--sd", type=Path, required=True, help="its standard deviation map, on the same grid")
    imported.add_argument("--mask", type=Path, help="a brain mask on the same grid (default: where the mean is > 0)")
    imported.add_argument("--out", type=Path, required=True, help="the atlas folder to write")
    imported.add_argument("--description", default="", help="what the atlas is, in words (kept in atlas.json)")
    imported.set_defaults(handler=_atlas_import)


def _atlas_build(args: argparse.Namespace) -> int:
    from sparseg.cases import find_any_cases
    from sparseg.template import build_atlas

    config = AtlasConfig(iterations=args.iterations, spacing_mm=args.spacing_mm, statistics=args.statistics,
                         normalisation=args.normalisation, calibrate=not args.no_calibration)
    cases = find_any_cases(args.data, args.adc, None, with_zadc=args.adc is None and _has_zadc(args.data))
    atlas = build_atlas(cases, args.out, config, source=str(args.data))
    print(f"wrote the atlas {atlas.describe()}: {int(atlas.mask.sum())} voxels of brain, "
          f"{atlas.description['made']['seconds']:.0f} s")
    return 0


def _has_zadc(data: Path) -> bool:
    """Whether a cohort gives Z_ADC maps (a release with 2Z_ADC/, /input folders with z-score-adc/, a manifest with
    a zadc column), which `atlas build` then reads to leave Z_ADC < -2 out where a case has no label."""
    from sparseg.cases import find_any_cases

    try:
        find_any_cases(data)
    except SparsegError:
        return False
    return True


def _atlas_import(args: argparse.Namespace) -> int:
    from sparseg.atlas import import_atlas

    atlas = import_atlas(args.mean, args.sd, args.mask, args.out, args.description)
    print(f"wrote the atlas {atlas.describe()}: {int(atlas.mask.sum())} voxels of brain")
    return 0


def _add_zmap(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zmap", help="compute Z_ADC from ADC maps and a normative atlas (registration with ANTs), "
                       "on each ADC's own grid")
    p.add_argument("--atlas", type=Path, required=True, help="an atlas folder (sparseg atlas build / import)")
    p.add_argument("--data", type=Path,
                   help="the cases: a release-layout folder, /input folders, a CSV manifest (case_id,adc), or a "
                        "folder with --adc")
    p.add_argument("--adc", help="with --data: a glob pattern of the ADC files, the case id where the * is; without "
                                 "--data: one ADC file")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for <case_id>_zadc.<format> and zmap_summary.csv; for one ADC file, the Z_ADC file")
    p.add_argument("--format", choices=("auto", *(f.lstrip(".") for f in MASK_FORMATS)), default="auto",
                   help="file type (default auto: the ADC file's)")
    p.set_defaults(handler=_zmap)


def _zmap(args: argparse.Namespace) -> int:
    from sparseg.atlas import read_atlas
    from sparseg.cases import find_any_cases
    from sparseg.zmap import ZMAP_SUMMARY, ZmapMaker, write_zmaps

    if args.data is None:
        return _zmap_one(args)
    if args.out.exists() and not args.out.is_dir():
        raise SparsegError(f"--out {args.out}: not a folder (a folder of cases gets a folder of Z_ADC maps)")
    cases = find_any_cases(args.data, args.adc, None, with_zadc=False)
    zmaker = ZmapMaker(read_atlas(args.atlas))
    rows = write_zmaps(cases, zmaker, args.out, args.format)
    failed = [row["case_id"] for row in rows if row["status"] != "ok"]
    print(f"wrote the Z_ADC of {len(rows) - len(failed)} of {len(rows)} cases into {args.out}; summary: "
          f"{args.out / ZMAP_SUMMARY}")
    if failed:
        print(f"sparseg: error: {len(failed)} case(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _zmap_one(args: argparse.Namespace) -> int:
    """`sparseg zmap --atlas A --adc baby_adc.nii.gz --out baby_zadc.nii.gz`: one case, no layout."""
    from sparseg.atlas import atlas_files, read_atlas
    from sparseg.io import image_files, read_image, remove_stale, require_apart, write_image
    from sparseg.zmap import ZmapMaker

    if not args.adc:
        raise SparsegError("give --data (a folder or a CSV manifest), or --adc with one ADC file")
    adc_path = Path(args.adc)
    problem = file_problem(adc_path)
    if problem is not None:
        raise SparsegError(f"{adc_path}: {'no such file' if problem == 'does not exist' else problem} (--adc)")
    if not next((s for s in ONE_FILE_MASKS if args.out.name.lower().endswith(s)), None):
        raise SparsegError(f"--out {args.out}: with one --adc file, name the Z_ADC file ({', '.join(ONE_FILE_MASKS)})")
    require_apart([args.out], [*image_files(adc_path), *atlas_files(args.atlas)])
    remove_stale([args.out])  # an earlier run's Z_ADC is not left to look like this one's
    zmaker = ZmapMaker(read_atlas(args.atlas))
    adc = read_image(adc_path)
    result = zmaker(adc)
    write_image(result.z, adc.geometry, args.out)
    print(f"wrote {args.out}: atlas overlap {result.overlap:.3f}, ADC scaled by {result.scale:.3f}, Z_ADC on "
          f"{result.covered:.0%} of the brain" + (f"; look: {'; '.join(result.flags)}" if result.flags else ""))
    return 0


def _add_baseline(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("baseline", help=f"write the {THRESHOLD_RULE} threshold masks, to score like a model")
    p.add_argument("--data", type=Path, required=True, help="cases in the release or /input layout")
    p.add_argument("--out", type=Path, required=True, help=f"folder for {prediction_name('<case_id>')}")
    p.set_defaults(handler=_baseline)


def _baseline(args: argparse.Namespace) -> int:
    from sparseg.baseline import run_baseline

    written = run_baseline(args.data, args.out)
    print(f"wrote {len(written)} {THRESHOLD_RULE} masks to {args.out}")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score predicted masks like the challenge (DSC, MASD, NSD)")
    p.add_argument("--gt", type=Path, required=True, help="labelled data in the release layout (3LABEL/, 1ADC_ss/)")
    p.add_argument("--pred", type=Path, required=True, help="folder of predicted masks named by case id")
    p.add_argument("--out", type=Path, required=True, help="folder for scores.csv, summary.json, summary.md")
    p.add_argument("--tolerance-mm", type=float, default=EvaluationConfig.nsd_tolerance_mm,
                   help="NSD tolerance in mm (default: the challenge's, %(default)s)")
    p.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from sparseg.evaluation import evaluate, lesion_table, markdown_table, write_report

    report = evaluate(args.gt, args.pred, EvaluationConfig(nsd_tolerance_mm=args.tolerance_mm), out=args.out)
    paths = write_report(report, args.out)
    print(markdown_table(report.summary, report.config.nsd_tolerance_mm))
    print(lesion_table(report.summary, report.config.lesion_band_edges_ml), end="")
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from sparseg.config import load_run_config
    from sparseg.train import train

    config = load_run_config(args.config)
    try:
        result = train(args.data, config, args.out, fold=args.fold, resume=args.resume, device_name=args.device,
                       skip_bad=args.skip_bad, allow_config_change=args.allow_config_change, config_file=args.config)
    except ConfigError as exc:  # what only building the network finds (the encoder's name)
        raise ConfigError(f"{args.config}: {exc.field}", exc.problem) from None
    if result["rank"] == 0:
        print(f"best validation DSC {result['best_dsc']:.4f} at epoch {result['best_epoch']} "
              f"of {result['epochs']}; checkpoint {result['checkpoint']}")
    return 0


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print what a checkpoint is: config, data, metrics, versions")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--verify", action="store_true", help="also load the weights and check their sha256")
    p.set_defaults(handler=_info)


def _info(args: argparse.Namespace) -> int:
    import json

    from sparseg.model import read_metadata

    metadata = read_metadata(args.checkpoint)
    if args.verify:
        from sparseg.model import load_checkpoint, uncovered_fields

        load_checkpoint(args.checkpoint)
        uncovered = uncovered_fields(metadata)
        verified = ("the weights and every field of the header match their sha256" if not uncovered else
                    f"the weights and {'the run config' if 'config' not in uncovered else 'nothing else'} match "
                    f"their sha256; NOT covered by any hash (format {metadata['format']}, saved by an earlier "
                    f"SPARSeg): {', '.join(uncovered)}")
        metadata = {**metadata, "verified": verified}
    print(json.dumps(metadata, indent=2))
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
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


def _add_quantize(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--no-recalibrate", action="store_true",
                   help="keep int8's logits as NNCF leaves them (default: shifted so its masks agree best with fp32's "
                        "on the calibration slices; the shift is recorded in its stamp)")
    p.set_defaults(handler=_quantize)


def _quantize(args: argparse.Namespace) -> int:
    from sparseg.quantization import describe, quantize

    try:
        settings = QuantizationConfig(slices=args.calibration_slices, lesion_share=args.lesion_share,
                                      preset=args.preset, fast_bias_correction=not args.full_bias_correction,
                                      smooth_quant_alpha=args.smooth_quant_alpha,
                                      recalibrate=not args.no_recalibrate, accuracy_control=args.accuracy_control)
    except ConfigError as exc:  # named as the user typed it
        option = {"slices": "--calibration-slices"}.get(exc.field, "--" + exc.field.replace("_", "-"))
        raise ConfigError(option, exc.problem) from None
    result = quantize(args.checkpoint, args.data, settings=settings)
    print(describe(result), end="")
    return 0


def _add_ablate(sub: argparse._SubParsersAction) -> None:
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


def _add_cv(sub: argparse._SubParsersAction) -> None:
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


def _add_inference_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", type=Path, nargs="+",
                   help="checkpoint file(s) or folder(s) holding them; several are averaged (default: those under "
                        "/opt/ml/model/, else model_weights/)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto: the GPU if there is one")
    p.add_argument("--tta", action="store_true", help="average with flipped slices (test-time augmentation)")
    p.add_argument("--min-lesion-mm3", type=float, default=0.0,
                   help="remove lesion components smaller than this (default 0: off, as in the paper)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto (default): bf16/fp16 autocast on GPUs, fp32 on the CPU; fp32: none anywhere; "
                        "bf16: on the CPU too (faster on CPUs with native bf16; masks may differ slightly); "
                        "int8: the checkpoint's int8 model (CPU; make it with `sparseg quantize`, which measures "
                        "how far its masks are from fp32's)")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="what runs the network: auto (default): OpenVINO on the CPU (same masks as torch, faster), "
                        "torch on a GPU")
    p.add_argument("--batch-size", type=int, default=0,
                   help=f"slices per forward pass (default 0: {AUTO_BATCH_SIZE['cuda']} on a GPU, "
                        f"{AUTO_BATCH_SIZE['cpu']} on the CPU); lower it if memory runs out")
    p.add_argument("--crop-to-brain", action="store_true",
                   help="crop the slices to the brain's box: about 2x faster, but check it keeps your network's "
                        "masks first (bench/agreement.py); default: whole slices (those with brain only)")


def _check_inference_options(args: argparse.Namespace) -> None:
    """The numbers of the inference options, checked before anything is read."""
    if args.batch_size < 0:
        raise SparsegError(f"--batch-size must be 0 (automatic) or more, not {args.batch_size}")
    if not (args.min_lesion_mm3 >= 0 and math.isfinite(args.min_lesion_mm3)):
        raise SparsegError(f"--min-lesion-mm3 must be a finite number of 0 or more, not {args.min_lesion_mm3}")
    args.min_lesion_mm3 += 0.0  # -0 is 0: recorded as 0.0, so a rerun keeps what a run with 0 made


def _predictor(args: argparse.Namespace):
    from sparseg.config import InferenceConfig
    from sparseg.weights import load_predictor

    _check_inference_options(args)
    inference = InferenceConfig(precision=args.precision, engine=args.engine, crop_to_brain=args.crop_to_brain,
                                batch_size=args.batch_size)
    return load_predictor(args.weights, args.device, tta=args.tta, min_lesion_mm3=args.min_lesion_mm3,
                          inference=inference)


def _require_apart(outputs: list[Path], data: list[Path], weights: list[Path] | None) -> None:
    """Rule 1 for a segmenting command: no output may be, or replace, an input (the data's files, the checkpoints
    `--weights` resolves to and the files derived from them), and the files a run may derive beside the
    checkpoints (an OpenVINO export made at start-up) may not replace the data's."""
    from sparseg.derived import derived_files
    from sparseg.io import require_apart
    from sparseg.weights import resolve_weights

    derived = [derived_files(checkpoint) for checkpoint in resolve_weights(weights)]
    require_apart(outputs, [*data, *(path for files in derived for path in files)])
    require_apart([path for files in derived for path in files[1:]], data)


def _add_process(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("process", help="the grand-challenge job: /input -> /output (what process.py runs)")
    p.add_argument("--input", type=Path, default=Path("/input"))
    p.add_argument("--output", type=Path, default=Path("/output"))
    _add_inference_options(p)
    p.set_defaults(handler=_process)


def _process(args: argparse.Namespace) -> int:
    from sparseg.cases import OUTPUT_MASK, case_inputs, find_input_case
    from sparseg.container_job import run_container_job
    from sparseg.io import remove_stale

    _check_inference_options(args)
    case = find_input_case(args.input)  # the input is checked before the network is loaded
    _require_apart([args.output / OUTPUT_MASK], case_inputs(case), args.weights)
    remove_stale([args.output / OUTPUT_MASK])  # an earlier job's mask is not left to look like this one's
    path = run_container_job(case, args.output, _predictor(args))
    print(f"wrote {path}")
    return 0


ONE_FILE_MASKS = (".mha", ".nii.gz", ".nii", ".nrrd")
"""What `--out` of one case may be: image types written as one file (not a .mhd header with its .raw)."""


def _one_case(args: argparse.Namespace) -> int:
    """`sparseg predict --adc A --zadc Z --out mask.nii.gz`: one case, no layout."""
    from sparseg.cases import Case, case_inputs
    from sparseg.io import remove_stale
    from sparseg.segment import predict_case

    batch_only = [name for name in ("report", "overlays", "save_probabilities", "save_zadc") if getattr(args, name)]
    if batch_only or args.parts not in (None, 1):
        options = ", ".join("--" + name.replace("_", "-") for name in batch_only) or "--parts"
        raise SparsegError(f"{options}: for a batch into an output folder, not one case into {args.out}")
    suffix = next((s for s in ONE_FILE_MASKS if args.out.name.lower().endswith(s)), None)
    if suffix is None:
        raise SparsegError(f"--out {args.out}: with --adc and --zadc files, name the mask file "
                           f"({', '.join(ONE_FILE_MASKS)})")
    if args.mask_format != "auto" and f".{args.mask_format}" != suffix:
        raise SparsegError(f"--out {args.out} is a {suffix} file but --mask-format says {args.mask_format}: "
                           "give one of them")
    given = [("--adc", Path(args.adc))] + ([("--zadc", Path(args.zadc))] if args.zadc else [])
    for flag, path in given:
        problem = file_problem(path)
        if problem is not None:
            raise SparsegError(f"{path}: {'no such file' if problem == 'does not exist' else problem} ({flag})")
    adc = Path(args.adc)
    case = Case(case_id=adc.name.split(".")[0], adc=adc, z=Path(args.zadc) if args.zadc else None)
    _require_apart([args.out], case_inputs(case) + _atlas_files(args.atlas), args.weights)
    remove_stale([args.out])  # an earlier run's mask is not left to look like this one's
    summary = predict_case(case, _predictor(args), args.out, zmaker=_zmaker(args.atlas))
    print(f"wrote {args.out}: {summary.lesion_ml:.2f} mL of lesion ({summary.burden_group} burden)")
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment every case of a folder or manifest (any layout), or one case")
    p.add_argument("--data", type=Path,
                   help="the cases: a release-layout folder, an /input folder or a folder of them, a folder with "
                        "--adc/--zadc patterns, or a CSV manifest (case_id,adc,zadc[,label])")
    p.add_argument("--adc", help="with --data: a glob pattern of the ADC files, the case id where the * is "
                                 "(e.g. '*_adc.nii.gz'); without --data: one case's ADC file")
    p.add_argument("--zadc", help="the Z_ADC files' pattern (with --data), or one case's Z_ADC file (or --atlas)")
    p.add_argument("--out", type=Path, required=True,
                   help=f"folder for {prediction_name('<case_id>')} and {BATCH_SUMMARY}; for one case, the mask file")
    p.add_argument("--mask-format", choices=("auto", *(f.lstrip(".") for f in MASK_FORMATS)), default="auto",
                   help="file type of the masks (default auto: the ADC file's, .nii.gz for NIfTI, else .mha)")
    p.add_argument("--save-probabilities", action="store_true",
                   help=f"also write {probabilities_name('<case_id>')}")
    p.add_argument("--overwrite", action="store_true",
                   help="segment every case again (default: a case is kept when its outputs exist and were made "
                        "from the same inputs, weights and settings, so a rerun resumes)")
    p.add_argument("--overlays", action="store_true",
                   help=f"also write {overlay_name('<case_id>')}: the slices with the most lesion, predicted "
                        "(and true) contours")
    p.add_argument("--report", action="store_true",
                   help=f"also write {BATCH_REPORT}: one page with the sortable summary, every case's overlay, "
                        "scores where labels exist, and flags for what deserves a look (implies --overlays)")
    p.add_argument("--part", type=int, help="with --parts N: which share of the cases (1 to N); default: from a "
                   "job array's SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX (Kubernetes) when set, else 1")
    p.add_argument("--parts", type=int,
                   help="split the cases by id into N shares, for N machines or GPUs writing into one --out; "
                        "default: SLURM_ARRAY_TASK_COUNT in a SLURM job array, else 1 (docs/cluster.md)")
    p.add_argument("--atlas", type=Path,
                   help="ADC alone: compute each case's Z_ADC from this atlas folder (sparseg atlas build / import) "
                        "instead of reading it (no --zadc; given Z_ADC files are not read)")
    p.add_argument("--save-zadc", action="store_true",
                   help="with --atlas: also write each case's computed Z_ADC, <case_id>_zadc.<format>")
    _add_inference_options(p)
    p.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    from sparseg.batch import batch_outputs, predict_batch
    from sparseg.cases import batch_part, data_inputs, find_any_cases, part_name, resolve_part

    _check_inference_options(args)
    if args.save_zadc and args.atlas is None:
        raise SparsegError("--save-zadc keeps the Z_ADC computed from an atlas: give --atlas too")
    if args.atlas is not None and args.zadc:
        raise SparsegError(f"--atlas and --zadc {args.zadc}: the Z_ADC is either given or computed, not both")
    if args.data is None:
        if not (args.adc and (args.zadc or args.atlas)):
            raise SparsegError("give --data (a folder or a CSV manifest), or --adc and --zadc files (or --adc and "
                               "--atlas) for one case")
        return _one_case(args)
    args.part, args.parts, where = resolve_part(args.part, args.parts, os.environ)
    if args.out.exists() and not args.out.is_dir():
        raise SparsegError(f"--out {args.out}: not a folder (a batch writes a folder of masks)")
    # checked before the network is loaded
    cases = find_any_cases(args.data, args.adc, args.zadc, with_zadc=args.atlas is None)
    mine = batch_part(cases, args.part - 1, args.parts)
    _require_apart(batch_outputs(mine, args.out, args.part - 1, args.parts, args.report),
                   data_inputs(args.data, cases) + _atlas_files(args.atlas), args.weights)
    zmaker = _zmaker(args.atlas)
    if args.parts > 1:
        print(f"part {args.part} of {args.parts} ({where}): {len(mine)} of the {len(cases)} cases")
    summaries = predict_batch(cases, args.out, _predictor(args), save_probabilities=args.save_probabilities,
                              overlays=args.overlays or args.report, overwrite=args.overwrite,
                              mask_format=args.mask_format, report=args.report, part=args.part - 1,
                              parts=args.parts, zmaker=zmaker, save_zadc=args.save_zadc)
    failed = [s.case_id for s in summaries if s.status == "failed"]
    earlier = sum(1 for s in summaries if s.status == "done earlier")
    print(f"segmented {len(summaries) - len(failed) - earlier} of {len(summaries)} cases into {args.out}"
          + (f" ({earlier} kept from an earlier run)" if earlier else "") + "; "
          f"summary: {args.out / part_name(BATCH_SUMMARY, args.part - 1, args.parts)}"
          + (f"; report: {args.out / part_name(BATCH_REPORT, args.part - 1, args.parts)}" if args.report else ""))
    if failed:
        print(f"sparseg: error: {len(failed)} case(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _atlas_files(atlas: Path | None) -> list[Path]:
    from sparseg.atlas import atlas_files

    return atlas_files(atlas) if atlas is not None else []


def _zmaker(atlas: Path | None):
    """The Z_ADC maker of `--atlas`, its folder checked whole before any case is read (None without one)."""
    if atlas is None:
        return None
    from sparseg.atlas import read_atlas
    from sparseg.zmap import ZmapMaker

    return ZmapMaker(read_atlas(atlas))


def _add_package(sub: argparse._SubParsersAction) -> None:
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


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write report.html for an output folder of sparseg predict as it is: every "
                       "summary in it merged (a cohort run in parts on several machines gets one page)")
    p.add_argument("folder", type=Path, help="the --out folder of one or more sparseg predict runs")
    p.add_argument("--data", type=Path,
                   help="the labelled cases (folder or CSV manifest): adds each case's scores against its label")
    p.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from sparseg.batch import folder_report

    page, count = folder_report(args.folder, args.data)
    print(f"wrote {page}: {count} cases")
    return 0


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="check a mask file against a reference mask (grid and voxels); exit 1 if not")
    p.add_argument("mask", type=Path)
    p.add_argument("reference", type=Path)
    p.add_argument("--min-dice", type=float, default=1.0,
                   help="smallest Dice that passes (default 1: voxel for voxel); the grids must always match")
    p.set_defaults(handler=_compare)


def _compare(args: argparse.Namespace) -> int:
    from sparseg.evaluation import compare_masks

    comparison = compare_masks(args.mask, args.reference)
    ok = comparison.within(args.min_dice)
    print(f"{'ok' if ok else 'DIFFERENT'}: {args.mask}: {comparison.describe()}")
    return 0 if ok else 1


SUBCOMMANDS = (
    _add_synth,
    _add_atlas,
    _add_zmap,
    _add_baseline,
    _add_evaluate,
    _add_train,
    _add_predict,
    _add_report,
    _add_process,
    _add_package,
    _add_compare,
    _add_info,
    _add_export,
    _add_quantize,
    _add_cv,
    _add_ablate,
)
"""The subcommands, in the order `sparseg --help` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparseg",
        description="Neonatal HIE lesion segmentation from ADC and Z_ADC (BONBID-HIE).",
    )
    parser.add_argument("--version", action="version", version=f"sparseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_subcommand in SUBCOMMANDS:
        add_subcommand(sub)
    return parser


BROKEN_PIPE = 128 + 13
"""The exit status of a command whose output's reader went away (SIGPIPE's), as coreutils' own."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="sparseg: %(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("sparseg").setLevel(logging.INFO)
    try:
        return args.handler(args)
    except SparsegError as exc:
        if args.debug:
            raise
        print(f"sparseg: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `sparseg ... | head -1`: the reader has what it wanted; end quietly, as coreutils do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    except OSError as exc:  # a file system refusal not met by a more specific check
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"sparseg: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("sparseg: error: out of memory (try a smaller --batch-size)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
