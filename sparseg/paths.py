"""Path rules: what a path names (a regular file, a folder, nothing), two paths naming one file, an output that
would replace an input, the hashes of files that resume keys and stamps record, and removing an earlier run's
outputs. No image is read here (`sparseg.io` reads and writes; `sparseg.formats` checks each format)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import stat
from collections.abc import Iterable
from pathlib import Path

from sparseg.errors import InputError, OutputError


def file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as a file, in words ("does not exist", "is a folder", "is not a regular file (a
    FIFO, a device, a socket)"), or None when it is a regular file (or a link to one)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "does not exist" if not path.is_symlink() else "is a link to nothing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(mode):
        return "is not a regular file (a FIFO, a device or a socket)"
    return None


def same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file: the same path once symbolic links are followed, or one file under two
    names (a hard link)."""
    try:
        if first.resolve() == second.resolve():
            return True
        return first.exists() and second.exists() and os.path.samefile(first, second)
    except (OSError, RuntimeError):  # a link loop
        return False


def require_apart(outputs: Iterable[Path], inputs: Iterable[Path]) -> None:
    """Refuse, before anything is read or written, any output path that is, or would replace, one of the inputs
    (symbolic links followed, hard links seen, paths that differ in letter case alone, in any of their folders'
    names too): an InputError naming both."""
    inputs = [Path(p) for p in dict.fromkeys(inputs)]
    by_path, by_folded_path, by_inode = {}, {}, {}
    for path in inputs:
        with contextlib.suppress(OSError, RuntimeError):
            resolved = path.resolve()
            by_path.setdefault(resolved, path)
            by_folded_path.setdefault(str(resolved).casefold(), path)
            status = path.stat()
            by_inode.setdefault((status.st_dev, status.st_ino), path)
    for output in outputs:
        output = Path(output)
        hit = None
        with contextlib.suppress(OSError, RuntimeError):
            resolved = output.resolve()
            # paths that differ in letter case only are one file on macOS and Windows file systems
            hit = by_path.get(resolved) or by_folded_path.get(str(resolved).casefold())
            if hit is None and output.exists():
                status = output.stat()
                hit = by_inode.get((status.st_dev, status.st_ino))
        if hit is not None:
            raise InputError(f"{output}: this command would write there, but it is an input ({hit}); choose another "
                             "output")


def remove_stale(paths: Iterable[Path]) -> None:
    """Remove an earlier run's outputs before a run that will write them again, so that a run that fails leaves
    none that look finished (the caller has checked that none is an input: `require_apart`)."""
    for path in paths:
        try:
            Path(path).unlink(missing_ok=True)
        except NotADirectoryError:  # a folder on the way is a file: there is no earlier output (writing will say)
            continue
        except IsADirectoryError:
            raise OutputError(f"{path}: a folder where this command writes a file") from None
        except OSError as exc:
            raise OutputError(f"{path}: cannot remove the earlier output ({exc.strerror or exc})") from None


def files_sha256(paths: Iterable[Path]) -> str:
    """The sha256 (16 hex digits) of files' bytes, in order, each ended by a NUL; OSError where one cannot be
    read. What resume keys and summaries record."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    """The sha256 (64 hex digits) of one file's bytes: what a stamp or an atlas.json records of each file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def writer_gone(host: str, pid: str) -> bool:
    """Whether the process that named a staging folder by its `host` and `pid` is gone: it ran on this machine and
    no process has that id now. Another machine's, a live process's (another user's too) or an impossible id: not
    gone, so its folder is left alone (a folder shared over a network file system may hold a write under way)."""
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError, ValueError):
        return False
    return False
