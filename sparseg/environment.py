"""What code and machine produced a result: recorded in checkpoints and printed by benchmarks."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from sparseg import __version__

LIBRARIES = ("torch", "torchvision", "segmentation-models-pytorch", "timm", "SimpleITK", "numpy", "scipy")


def library_versions() -> dict[str, str]:
    versions = {"sparseg": __version__, "python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def code_version() -> str:
    """The package version plus the git commit when run from a checkout (with '+dirty' for local changes)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return __version__
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return f"{__version__}+g{commit.stdout.strip()}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB: Linux's VmHWM, which starts afresh with the program
    (getrusage's ru_maxrss keeps the peak of the process that forked it across exec, so a benchmark's workers
    would all report at least their parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_summary() -> str:
    """One line: CPU, cores, OS, and the library versions."""
    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items() if v != "not installed")
    return f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; {versions}"
