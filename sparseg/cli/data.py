"""The subcommands of data: synthetic cases, atlases, Z_ADC maps, the threshold baseline, scoring."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sparseg.cases import SYNTH_MANIFEST
from sparseg.cli.common import (
    ONE_FILE_MASKS,
    THRESHOLD_RULE,
)
from sparseg.config import (
    ATLAS_STATISTICS,
    INTENSITY_NORMALISATIONS,
    AtlasConfig,
    EvaluationConfig,
)
from sparseg.errors import SparsegError
from sparseg.outputs import MASK_FORMATS, prediction_name
from sparseg.paths import file_problem


def add_synth(sub: argparse._SubParsersAction) -> None:
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


def add_atlas(sub: argparse._SubParsersAction) -> None:
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


def add_zmap(sub: argparse._SubParsersAction) -> None:
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
    from sparseg.io import image_files, read_image, write_image
    from sparseg.paths import remove_stale, require_apart
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


def add_baseline(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("baseline", help=f"write the {THRESHOLD_RULE} threshold masks, to score like a model")
    p.add_argument("--data", type=Path, required=True, help="cases in the release or /input layout")
    p.add_argument("--out", type=Path, required=True, help=f"folder for {prediction_name('<case_id>')}")
    p.set_defaults(handler=_baseline)


def _baseline(args: argparse.Namespace) -> int:
    from sparseg.baseline import run_baseline

    written = run_baseline(args.data, args.out)
    print(f"wrote {len(written)} {THRESHOLD_RULE} masks to {args.out}")
    return 0


def add_evaluate(sub: argparse._SubParsersAction) -> None:
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
