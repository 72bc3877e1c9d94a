"""Run a `sparseg` command and kill it (SIGKILL, as a crash or `kill -9`) at a chosen point, without polling.

    python tests/interrupt.py MODULE:FUNCTION N before|after SPARSEG-ARGUMENTS...

kills the process just before, or just after, the N-th call of MODULE.FUNCTION (as the module calls it: a name
it imported is patched in that module). Tests use it to stop a job between two writes deterministically:
`sparseg.batch:write_csv 2 after` stops a batch right after it recorded its second case.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

from sparseg.cli import main


def kill_at(target: str, calls: int, when: str) -> None:
    """Patch `target` ("module:function") to SIGKILL this process before or after its `calls`-th call."""
    module_name, name = target.split(":")
    module = importlib.import_module(module_name)
    original = getattr(module, name)
    count = 0

    def wrapper(*args, **kwargs):
        nonlocal count
        count += 1
        if when == "before" and count == calls:
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if when == "after" and count == calls:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(module, name, wrapper)


if __name__ == "__main__":
    target, calls, when, *arguments = sys.argv[1:]
    if when not in ("before", "after"):
        raise SystemExit(f"interrupt.py: expected before or after, not {when!r}")
    kill_at(target, int(calls), when)
    sys.exit(main(arguments))
