"""What several subcommands share: the inference options and the checks of their outputs against their inputs."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from sparseg.config import (
    AUTO_BATCH_SIZE,
    DEVICES,
    ENGINES,
    PRECISIONS,
    PreprocessingConfig,
)
from sparseg.errors import SparsegError

THRESHOLD_RULE = f"Z_ADC < {PreprocessingConfig().z_threshold:g}"
"""The threshold baseline's rule, in words."""
LABELLED_DATA = "labelled cases: the release layout or a CSV manifest (case_id,adc,zadc,label)"


def add_inference_options(p: argparse.ArgumentParser) -> None:
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


def check_inference_options(args: argparse.Namespace) -> None:
    """The numbers of the inference options, checked before anything is read."""
    if args.batch_size < 0:
        raise SparsegError(f"--batch-size must be 0 (automatic) or more, not {args.batch_size}")
    if not (args.min_lesion_mm3 >= 0 and math.isfinite(args.min_lesion_mm3)):
        raise SparsegError(f"--min-lesion-mm3 must be a finite number of 0 or more, not {args.min_lesion_mm3}")
    args.min_lesion_mm3 += 0.0  # -0 is 0: recorded as 0.0, so a rerun keeps what a run with 0 made


def predictor(args: argparse.Namespace):
    from sparseg.config import InferenceConfig
    from sparseg.weights import load_predictor

    check_inference_options(args)
    inference = InferenceConfig(precision=args.precision, engine=args.engine, crop_to_brain=args.crop_to_brain,
                                batch_size=args.batch_size)
    return load_predictor(args.weights, args.device, tta=args.tta, min_lesion_mm3=args.min_lesion_mm3,
                          inference=inference)


def require_outputs_apart(outputs: list[Path], data: list[Path], weights: list[Path] | None) -> None:
    """Rule 1 for a segmenting command: no output may be, or replace, an input (the data's files, the checkpoints
    `--weights` resolves to and the files derived from them), and the files a run may derive beside the
    checkpoints (an OpenVINO export made at start-up) may not replace the data's."""
    from sparseg.derived import derived_files
    from sparseg.paths import require_apart
    from sparseg.weights import resolve_weights

    derived = [derived_files(checkpoint) for checkpoint in resolve_weights(weights)]
    require_apart(outputs, [*data, *(path for files in derived for path in files)])
    require_apart([path for files in derived for path in files[1:]], data)


def atlas_file_list(atlas: Path | None) -> list[Path]:
    from sparseg.atlas import atlas_files

    return atlas_files(atlas) if atlas is not None else []


def atlas_zmaker(atlas: Path | None):
    """The Z_ADC maker of `--atlas`, its folder checked whole before any case is read (None without one)."""
    if atlas is None:
        return None
    from sparseg.atlas import read_atlas
    from sparseg.zmap import ZmapMaker

    return ZmapMaker(read_atlas(atlas))


ONE_FILE_MASKS = (".mha", ".nii.gz", ".nii", ".nrrd")
"""What `--out` of one case may be: image types written as one file (not a .mhd header with its .raw)."""
