"""The subcommands that segment: the grand-challenge job, predict (a folder, a manifest or one case), the QA page,
comparing runs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sparseg.cli.common import (
    ONE_FILE_MASKS,
    add_inference_options,
    atlas_file_list,
    atlas_zmaker,
    check_inference_options,
    predictor,
    require_outputs_apart,
)
from sparseg.errors import SparsegError
from sparseg.outputs import BATCH_REPORT, BATCH_SUMMARY, MASK_FORMATS, overlay_name, prediction_name, probabilities_name
from sparseg.paths import file_problem


def add_process(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("process", help="the grand-challenge job: /input -> /output (what process.py runs)")
    p.add_argument("--input", type=Path, default=Path("/input"))
    p.add_argument("--output", type=Path, default=Path("/output"))
    add_inference_options(p)
    p.set_defaults(handler=_process)


def _process(args: argparse.Namespace) -> int:
    from sparseg.cases import OUTPUT_MASK, case_inputs, find_input_case
    from sparseg.container_job import run_container_job
    from sparseg.paths import remove_stale

    check_inference_options(args)
    case = find_input_case(args.input)  # the input is checked before the network is loaded
    require_outputs_apart([args.output / OUTPUT_MASK], case_inputs(case), args.weights)
    remove_stale([args.output / OUTPUT_MASK])  # an earlier job's mask is not left to look like this one's
    path = run_container_job(case, args.output, predictor(args))
    print(f"wrote {path}")
    return 0




def _one_case(args: argparse.Namespace) -> int:
    """`sparseg predict --adc A --zadc Z --out mask.nii.gz`: one case, no layout."""
    from sparseg.cases import Case, case_inputs
    from sparseg.paths import remove_stale
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
    require_outputs_apart([args.out], case_inputs(case) + atlas_file_list(args.atlas), args.weights)
    remove_stale([args.out])  # an earlier run's mask is not left to look like this one's
    summary = predict_case(case, predictor(args), args.out, zmaker=atlas_zmaker(args.atlas))
    print(f"wrote {args.out}: {summary.lesion_ml:.2f} mL of lesion ({summary.burden_group} burden)")
    return 0


def add_predict(sub: argparse._SubParsersAction) -> None:
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
    add_inference_options(p)
    p.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    from sparseg.batch import batch_outputs, predict_batch
    from sparseg.cases import batch_part, data_inputs, find_any_cases, pattern_would_read, resolve_part
    from sparseg.outputs import part_name

    check_inference_options(args)
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
    outputs = batch_outputs(mine, args.out, args.part - 1, args.parts, args.report)
    require_outputs_apart(outputs, data_inputs(args.data, cases) + atlas_file_list(args.atlas), args.weights)
    for option, pattern in (("--adc", args.adc), ("--zadc", args.zadc)):
        read_again = pattern_would_read(args.data, pattern, outputs) if pattern and args.data.is_dir() else []
        if read_again:
            raise SparsegError(f"--out {args.out}: its outputs ({', '.join(p.name for p in read_again[:3])}) would "
                               f"match {option} {pattern!r} in {args.data}: a rerun would read them as cases; "
                               "choose another --out or a narrower pattern")
    zmaker = atlas_zmaker(args.atlas)
    if args.parts > 1:
        print(f"part {args.part} of {args.parts} ({where}): {len(mine)} of the {len(cases)} cases")
    summaries = predict_batch(cases, args.out, predictor(args), save_probabilities=args.save_probabilities,
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


def add_report(sub: argparse._SubParsersAction) -> None:
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


def add_compare(sub: argparse._SubParsersAction) -> None:
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
