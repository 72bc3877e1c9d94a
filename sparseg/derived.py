"""Files derived from a checkpoint: made, stamped, checked and remade by one mechanism.

Two kinds of file are made from a checkpoint and kept beside it:

    best.safetensors  ->  best.openvino.xml/.bin + .json the network in OpenVINO's format (the CPU engine)
                          best.int8.xml/.bin + .json     OpenVINO int8, calibrated by `sparseg quantize`

Each is a `Kind`: a name, its files and how to make them. Everything else is
shared. The stamp (`<stem><suffix>.json`, written last) names the checkpoint's
weights (`weights_sha256`), the versions of the libraries that made it and the
sha256 of each file, so an export of other weights, an interrupted write, an
edited file or one made by another OpenVINO is never run. Before it is saved,
a network made from the checkpoint must give the checkpoint's torch logits
within `PARITY_TOLERANCE` (`require_parity`); the int8 model cannot, by design,
and is checked on its own measured agreement instead (`sparseg.quantization`).
Every file is written into a staging folder, read back, then proved on disk
and renamed into place (`io.place`).

What a stale file means depends on its kind: the OpenVINO export is made again
(at start-up when needed, in a temporary folder when the checkpoint's folder
is read-only); an int8 model cannot be remade without calibration data, so a
stale one is refused.

No torch file is derived. The TorchScript trace that once sped up the start on
a GPU is deprecated in the pinned torch, and its successor, a `torch.export`
program of the configured frame with a dynamic batch, was measured: loading it
took longer than rebuilding the network from the checkpoint (docs/performance.md,
start-up), so torch always rebuilds the network.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparseg.config import RunConfig
from sparseg.errors import InputError, OutputError, SparsegError
from sparseg.io import PARTIAL_PREFIX, place, write_text
from sparseg.model import Checkpoint, load_checkpoint
from sparseg.paths import file_sha256, require_apart, writer_gone

log = logging.getLogger(__name__)

STAMP_FORMAT = "sparseg-derived/1"

PARITY_TOLERANCE = 1e-4
"""A network derived from a checkpoint (the OpenVINO export) must give the checkpoint's torch logits to within
this, relative to their largest magnitude (at least 1), on `parity_frames`; else it is not made. A wrong
conversion, or one that specialised on one shape, is off by far more; measured on the demo, test and paper
networks: at most 2e-6 for OpenVINO fp32."""


def library_version(name: str) -> str:
    if name == "torch":
        return torch.__version__
    import openvino

    return openvino.__version__.split("-")[0]


@dataclass(frozen=True)
class Kind:
    """One kind of derived file: how it is named, what must match for it to be current, how it is made."""

    name: str
    suffix: str
    """The name part of its files: `<checkpoint stem><suffix><extension>`."""
    extensions: tuple[str, ...]
    libraries: tuple[str, ...]
    """Libraries whose version must be the maker's for the file to be current."""
    on_stale: str
    """"remake" (made again when needed) or "refuse"."""
    write: Callable[[Any, dict[str, Path]], None] | None = None
    """Writes a made network into the given files (one per extension)."""


def _write_openvino(model: Any, files: dict[str, Path]) -> None:
    import openvino as ov

    ov.save_model(model, str(files[".xml"]), compress_to_fp16=False)
    ov.Core().read_model(str(files[".xml"]))  # reads back whole, or raises


OPENVINO = Kind("openvino", ".openvino", (".xml", ".bin"), ("openvino",), "remake", _write_openvino)
INT8 = Kind("int8", ".int8", (".xml", ".bin"), (), "refuse", _write_openvino)
KINDS = (OPENVINO, INT8)


@dataclass(frozen=True)
class Derived:
    """Where one kind of file derived from a checkpoint lies."""

    kind: Kind
    checkpoint: Path
    folder: Path

    @classmethod
    def of(cls, checkpoint: Path | str, kind: Kind, folder: Path | None = None) -> Derived:
        """The `kind` files of `checkpoint`; an InputError when another checkpoint beside it would share their
        names (`name_clash`)."""
        checkpoint = Path(checkpoint)
        clash = name_clash(checkpoint)
        if clash is not None:
            raise InputError(f"{checkpoint}: {clash.name} beside it differs from its name in letter case only, so "
                             f"both would name their derived files {checkpoint.stem}.openvino.* and "
                             f"{checkpoint.stem}.int8.* (one file on macOS and Windows): rename one")
        return cls(kind, checkpoint, folder or checkpoint.parent)

    @property
    def files(self) -> dict[str, Path]:
        base = self.checkpoint.stem + self.kind.suffix
        return {extension: self.folder / f"{base}{extension}" for extension in self.kind.extensions}

    @property
    def stamp_path(self) -> Path:
        return self.folder / f"{self.checkpoint.stem}{self.kind.suffix}.json"

    @property
    def all_paths(self) -> list[Path]:
        return [*self.files.values(), self.stamp_path]

    def stamp(self) -> dict[str, Any] | None:
        """Its stamp, or None when there is none or it is unreadable."""
        try:
            stamp = json.loads(self.stamp_path.read_text())
        except (OSError, ValueError, RecursionError):
            return None
        ok = isinstance(stamp, dict) and stamp.get("format") == STAMP_FORMAT and stamp.get("kind") == self.kind.name
        return stamp if ok else None

    def stale_because(self, weights_sha256: str) -> str | None:
        """Why these files cannot run for these weights (None: they are current)."""
        stamp = self.stamp()
        if stamp is None:
            return "there is none" if not self.stamp_path.exists() else f"{self.stamp_path.name} is unreadable"
        if stamp.get("weights_sha256") != weights_sha256:
            return "it was made from other weights"
        made_with = stamp.get("libraries") if isinstance(stamp.get("libraries"), dict) else {}
        for library in self.kind.libraries:
            if made_with.get(library) != library_version(library):
                return f"it was made by {library} {made_with.get(library)}, this is {library_version(library)}"
        hashes = stamp.get("files_sha256") if isinstance(stamp.get("files_sha256"), dict) else {}
        for extension, path in self.files.items():
            if not path.is_file():
                return f"{path.name} is missing"
            if file_sha256(path) != hashes.get(extension):
                return f"{path.name} is not the file its stamp names (interrupted or edited)"
        return None

    def foreign_files(self, stamp: dict[str, Any] | None) -> list[Path]:
        """Those of its file names where a file lies that its stamp (`stamp`, as read) does not name: neither a
        file of the set it records nor one of a set a killed run was putting in place."""
        named = set()
        for key in ("files_sha256", "replacing"):
            hashes = (stamp or {}).get(key)
            named |= set(hashes.values()) if isinstance(hashes, dict) else set()
        return [path for path in self.files.values()
                if path.exists() and (not path.is_file() or file_sha256(path) not in named)]

    def identity(self) -> str:
        """A short hash of its files as stamped (what a resume key records of a network that is not the
        weights alone)."""
        hashes = (self.stamp() or {}).get("files_sha256") or {}
        return hashlib.sha256("".join(str(hashes.get(e)) for e in self.kind.extensions).encode()).hexdigest()[:16]

    def save(self, network: Any, fields: dict[str, Any]) -> Derived:
        """Write `network` and its stamp: the files into a staging folder beside, read back, then each proved on
        disk and renamed into place (`io.place`), then the stamp, last, naming every file's sha256, so a
        half-replaced set is never taken as current."""
        remove_dead_staging(self.folder)
        earlier = self.stamp()
        foreign = self.foreign_files(earlier)
        if foreign:
            raise OutputError(f"{foreign[0]}: is there, and no {self.kind.name} of {self.checkpoint.name} made it (its "
                              f"stamp {self.stamp_path.name} does not name it): move it; this command would replace it")
        staging = self.folder / f"{PARTIAL_PREFIX}{uuid.uuid4().hex[:8]}-{socket.gethostname()}-{os.getpid()}-" \
                                f"{self.kind.name}"
        try:
            try:
                staging.mkdir(parents=True)
                staged = Derived(self.kind, self.checkpoint, staging)
                self.kind.write(network, staged.files)
                hashes = {extension: file_sha256(path) for extension, path in staged.files.items()}
                # the stamp names the files being placed while they are (a killed run's are still known as ours)
                replacing = {"format": STAMP_FORMAT, "kind": self.kind.name, **(earlier or {}), "replacing": hashes}
                write_text(self.stamp_path, json.dumps(replacing, indent=2, allow_nan=True) + "\n")
            except OSError as exc:
                raise OutputError(f"{self.stamp_path}: cannot write ({exc.strerror or exc})") from None
            except RuntimeError as exc:  # OpenVINO's errors, a full disk among them
                raise OutputError(f"{self.stamp_path}: cannot write ({str(exc).splitlines()[0]})") from None
            placed = 0
            try:
                for extension in reversed(self.kind.extensions):
                    place(staged.files[extension], self.files[extension])
                    placed += 1
            except BaseException:
                if placed == 0:  # nothing replaced: the stamp says what it said before (or is gone, as it was)
                    if earlier is None:
                        self.stamp_path.unlink(missing_ok=True)
                    else:
                        write_text(self.stamp_path, json.dumps(earlier, indent=2, allow_nan=True) + "\n")
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        stamp = {"format": STAMP_FORMAT, "kind": self.kind.name, "checkpoint": self.checkpoint.name,
                 "libraries": {name: library_version(name) for name in ("torch", "openvino")},
                 **fields, "files_sha256": hashes}
        write_text(self.stamp_path, json.dumps(stamp, indent=2, allow_nan=True) + "\n")
        return self

    def update_stamp(self, fields: dict[str, Any]) -> None:
        """Add `fields` to a current stamp (the agreement measured after the int8 model was written)."""
        stamp = self.stamp()
        if stamp is None:
            raise OutputError(f"{self.stamp_path}: no stamp to add to")
        write_text(self.stamp_path, json.dumps({**stamp, **fields}, indent=2, allow_nan=True) + "\n")


def name_clash(checkpoint: Path) -> Path | None:
    """Another checkpoint beside `checkpoint` whose name differs in letter case only (`a.SAFETENSORS` beside
    `a.safetensors`): their derived files would be one file on a case-insensitive file system."""
    try:
        siblings = list(checkpoint.parent.iterdir())
    except OSError:
        return None
    stem = checkpoint.stem.casefold()
    return next((other for other in sorted(siblings) if other.name != checkpoint.name
                 and other.suffix.casefold() == checkpoint.suffix.casefold() and other.stem.casefold() == stem), None)


STAGING = re.compile(re.escape(PARTIAL_PREFIX) + r"[0-9a-f]{8}-(?P<host>.+)-(?P<pid>[0-9]+)-(?:" +
                     "|".join(kind.name for kind in KINDS) + r")")
"""The staging folder of a derived set being written (`Derived.save`), named by its machine and process."""


def remove_dead_staging(folder: Path) -> None:
    """Remove the staging folders in `folder` of writes killed on this machine (their process is gone): what a
    killed export left would otherwise stay beside the checkpoint for good. Other machines' are left alone (a
    folder shared over a network file system may hold a write under way)."""
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            found = STAGING.fullmatch(entry.name)
            if found is not None and entry.is_dir() and writer_gone(found["host"], found["pid"]):
                shutil.rmtree(entry, ignore_errors=True)


def recorded_agreement(stamp: dict[str, Any] | None) -> tuple[float | None, Any]:
    """An int8 stamp's smallest Dice against fp32 on held-out cases, and the number of those cases. The Dice is
    None when it is not recorded as a finite number between 0 and 1 (missing, text, a boolean, NaN, out of range):
    such a value is never taken for a measurement."""
    agreement = stamp.get("agreement") if isinstance(stamp, dict) and isinstance(stamp.get("agreement"), dict) else {}
    dice = agreement.get("dice_int8_vs_fp32")
    smallest = dice.get("smallest") if isinstance(dice, dict) else None
    number = isinstance(smallest, (int, float)) and not isinstance(smallest, bool)
    if not number or not (isinstance(smallest, float) or abs(smallest) < 10) or not 0.0 <= float(smallest) <= 1.0:
        return None, agreement.get("held_out_cases")
    return float(smallest), agreement.get("held_out_cases")


def derived_files(checkpoint: Path | str) -> list[Path]:
    """A checkpoint and every file derived from it beside it (what a command must never write over)."""
    checkpoint = Path(checkpoint)
    return [checkpoint, checkpoint.with_suffix(".json"),
            *(path for kind in KINDS for path in Derived.of(checkpoint, kind).all_paths)]


def parity_frames(config: RunConfig) -> list[torch.Tensor]:
    """Two seeded random batches of different sizes: a derived network must hold for any batch and any frame (the
    brain crop feeds frames of any multiple of 32). Small, because an uploaded model is exported at start-up within
    the container's memory limit. Shape: [(1, C, H, W), (2, C, H/2, about 3W/4)]."""
    height, width = config.preprocessing.slice_size
    channels = config.in_channels
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(1, channels, height, width, generator=generator),
            torch.randn(2, channels, max(32, height // 2), max(32, width * 3 // 4 // 32 * 32), generator=generator)]


def require_parity(checkpoint: Checkpoint, what: str, derived: Callable[[torch.Tensor], Any]) -> None:
    """Raise SparsegError, naming the checkpoint, when `derived` (frames -> logits) differs from the checkpoint's
    torch network by more than `PARITY_TOLERANCE` on `parity_frames`; `what` names the derived network."""
    with torch.no_grad():
        for frame in parity_frames(checkpoint.config):
            expected = checkpoint.module(frame).numpy()
            got = derived(frame)
            got = got.numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
            difference = float(np.abs(got - expected).max())
            if difference > PARITY_TOLERANCE * max(1.0, float(np.abs(expected).max())):
                raise SparsegError(f"{checkpoint.path}: {what} differs from torch's by {difference:.2g} on "
                                   f"{tuple(frame.shape)} slices; it cannot be made")


def make(path: Path | str, kind: Kind | None = None, folder: Path | None = None) -> Derived:
    """Make checkpoint `path`'s OpenVINO export beside it (or into `folder`), once `require_parity` holds for it.
    (The int8 model is made by `sparseg.quantization`, from calibration data.)"""
    import openvino as ov

    kind = kind or OPENVINO
    if kind is not OPENVINO:
        raise ValueError(f"{kind.name} files are not made from the checkpoint alone")
    path = Path(path)
    target = Derived.of(path, kind, folder)
    require_apart(target.all_paths, [path])
    checkpoint = load_checkpoint(path)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the converter's tracing notes
        network = ov.convert_model(checkpoint.module, example_input=parity_frames(checkpoint.config)[0],
                                   input=[(-1, checkpoint.config.in_channels, -1, -1)])
        compiled = ov.Core().compile_model(network, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        require_parity(checkpoint, "OpenVINO's network", lambda frame: compiled(frame.numpy())[0])
    return target.save(network, {"weights_sha256": checkpoint.metadata["weights_sha256"]})


def current(path: Path, kind: Kind, weights_sha256: str) -> Derived:
    """The `kind` files of checkpoint `path` when current. Otherwise, as the kind says: made now (beside it, or
    in a temporary folder when its folder cannot be written), or an InputError."""
    target = Derived.of(path, kind)
    reason = target.stale_because(weights_sha256)
    if reason is None:
        return target
    if kind.on_stale == "refuse":
        raise InputError(f"{path}: no {kind.name} model to run ({target.files[kind.extensions[0]].name}: {reason}); "
                         f"make one with: sparseg quantize {path} --data TRAINING_DATA")
    log.info("%s: making its %s files (%s)", path, kind.name, "none yet" if reason == "there is none" else reason)
    try:
        return make(path, kind)
    except OutputError as exc:
        folder = temporary_folder(f"sparseg-{kind.name}-")
        log.info("%s; making them in %s for this run only", exc, folder)
        return make(path, kind, folder)
    finally:
        gc.collect()  # the torch network and the converted model, before the job's own peak


def temporary_folder(prefix: str) -> Path:
    """A new temporary folder, removed when the process exits (a run on a checkpoint in a read-only folder makes
    its export there; each left 6.6 MB behind before)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder
