"""The `sparseg` command: one subcommand per thing a user does (`data`: synthetic cases, atlases, Z_ADC, the
baseline, scoring; `models`: training and what is made of a checkpoint; `segmenting`: the job, predict, the QA
page; `common`: the options they share).

Errors a user can cause are printed as one line, `sparseg: error: ...`, with
exit code 2 (`--debug` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from sparseg import __version__
from sparseg.cli.data import add_atlas, add_baseline, add_evaluate, add_synth, add_zmap
from sparseg.cli.models import add_ablate, add_cv, add_export, add_info, add_package, add_quantize, add_train
from sparseg.cli.segmenting import add_compare, add_predict, add_process, add_report
from sparseg.errors import SparsegError

SUBCOMMANDS = (
    add_synth,
    add_atlas,
    add_zmap,
    add_baseline,
    add_evaluate,
    add_train,
    add_predict,
    add_report,
    add_process,
    add_package,
    add_compare,
    add_info,
    add_export,
    add_quantize,
    add_cv,
    add_ablate,
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
