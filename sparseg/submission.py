"""From trained checkpoints to what grand-challenge runs: the model tarball uploaded with the algorithm.

grand-challenge unpacks a model tarball into /opt/ml/model/ of the algorithm's
container; the image averages every checkpoint it finds there, in subfolders
too, and ignores its baked-in weights (`sparseg.weights.default_weights`). The
tarball holds each checkpoint under a name of its own (fold folders all call
theirs `best.safetensors`), its JSON copy, optionally its OpenVINO export
(the CPU engine, made by `sparseg.derived`; without it the image exports at
start-up), its int8 model when there is a
current one beside it (`sparseg quantize`, or `quantize_data` here: run with
`--precision int8`), and `sparseg-model.json`, which says what is inside.
Checkpoints that cannot be averaged (other preprocessing or threshold), or
that mix synthetic-data training with real, are refused.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from pathlib import Path

import torch

from sparseg import __version__
from sparseg.cases import data_inputs, find_any_cases
from sparseg.config import INT8_MIN_AGREEMENT
from sparseg.derived import INT8, KINDS, Derived, derived_files, library_version, make, recorded_agreement
from sparseg.errors import InputError
from sparseg.inference import require_ensemble
from sparseg.io import atomic_path, verify_gzip
from sparseg.model import Checkpoint, load_checkpoint
from sparseg.paths import require_apart
from sparseg.quantization import quantize

MANIFEST = "sparseg-model.json"
FORMAT = "sparseg-model/1"


def member_names(paths: list[Path]) -> list[str]:
    """A distinct file name per checkpoint: `<folder>-<name>` (fold0-final.safetensors), numbered if still equal,
    or equal in letter case only (one file when the tarball is unpacked on macOS or Windows)."""
    names = [f"{path.resolve().parent.name}-{path.name}" for path in paths]
    if len({name.casefold() for name in names}) < len(names):
        names = [f"{index}-{name}" for index, name in enumerate(names)]
    return names


def _require_one_kind_of_data(checkpoints: list[Checkpoint]) -> None:
    synthetic = {c.path: c.synthetic for c in checkpoints}
    if len(set(synthetic.values())) > 1:
        made_up = ", ".join(str(path) for path, flag in synthetic.items() if flag)
        raise InputError(f"{made_up}: trained on synthetic data, unlike the other checkpoints; "
                         "a model mixes one kind of data only")


def _readable_by_anyone(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """Members unpack readable by the container's unprivileged user, owned by nobody in particular."""
    member.mode, member.uid, member.gid, member.uname, member.gname = 0o644, 0, 0, "", ""
    return member


def _int8_summary(path: Path, weights_sha256: str) -> dict | None:
    """What the int8 model beside checkpoint `path` agreed with fp32, when it is current for the checkpoint's
    weights `weights_sha256` (None without one, or with one made for other weights)."""
    int8 = Derived.of(path, INT8)
    stamp = int8.stamp()
    if stamp is None or int8.stale_because(weights_sha256):
        return None
    smallest, cases = recorded_agreement(stamp)
    return {"held_out_cases": cases if isinstance(cases, int) and not isinstance(cases, bool) else None,
            "holds": smallest is not None and smallest >= INT8_MIN_AGREEMENT, "smallest_dice_vs_fp32": smallest}


def _int8_note(int8: list[dict]) -> str:
    """What the packed int8 models' recorded agreement allows: to be run, or to be looked at first."""
    recorded = [i["smallest_dice_vs_fp32"] for i in int8 if i["smallest_dice_vs_fp32"] is not None]
    if len(recorded) < len(int8):
        return "WARNING: the agreement with fp32 of some is not recorded; quantize them again before using them"
    if min(recorded) < INT8_MIN_AGREEMENT:
        return (f"WARNING: smallest Dice vs fp32 on held-out cases {min(recorded):.4f}, below the "
                f"{INT8_MIN_AGREEMENT} that keeps the masks; --precision int8 changes them")
    return f"smallest Dice vs fp32 on held-out cases {min(recorded):.4f}; run with --precision int8"


def package_model(weights: list[Path], out: Path, export: bool = True,
                  quantize_data: Path | None = None) -> dict:
    """Write the model tarball `out` (.tar.gz) of the checkpoints `weights`; return its manifest.

    `quantize_data`: first quantize each checkpoint with these labelled cases (`sparseg.quantization`, each
    with its own split) and pack the int8 models."""
    if not weights:
        raise InputError("no checkpoint given (--weights)")
    for path in weights:
        if path.is_dir():
            raise InputError(f"{path}: a folder; name its checkpoints, e.g. {path}/fold*/final.safetensors")
    if not out.name.lower().endswith((".tar.gz", ".tgz")):
        raise InputError(f"{out}: a model tarball is a .tar.gz file; name it so")
    cases = None if quantize_data is None else find_any_cases(quantize_data)  # listed once, split per checkpoint
    data = [] if cases is None else data_inputs(quantize_data, cases)
    require_apart([out], [*(p for path in weights for p in derived_files(path)), *data])
    checkpoints = [load_checkpoint(path) for path in weights]  # each verified against its sha256
    seen: dict[str, Path] = {}
    for path, checkpoint in zip(weights, checkpoints):
        earlier = seen.setdefault(checkpoint.metadata["weights_sha256"], path)
        if earlier != path:
            raise InputError(f"{path}: the same weights as {earlier}; an ensemble would count that network twice")
    require_ensemble(checkpoints)
    _require_one_kind_of_data(checkpoints)
    names = member_names(weights)
    if quantize_data is not None:
        for path in weights:
            quantize(path, quantize_data, cases=cases)
    int8 = {path: _int8_summary(path, checkpoint.metadata["weights_sha256"])
            for path, checkpoint in zip(weights, checkpoints)}
    manifest = {
        "format": FORMAT,
        "sparseg": __version__,
        "torch": torch.__version__,
        "synthetic": checkpoints[0].synthetic,
        "threshold": checkpoints[0].config.threshold,
        "checkpoints": [{
            "file": name,
            "source": str(path),
            "weights_sha256": checkpoint.metadata["weights_sha256"],
            "fold": checkpoint.metadata.get("fold"),
            "validation_dsc": checkpoint.metadata.get("validation", {}).get("all", {}).get("dsc"),
            "int8": int8[path],
        } for name, path, checkpoint in zip(names, weights, checkpoints)],
        "openvino": library_version("openvino") if export else None,
    }
    with tempfile.TemporaryDirectory() as staging:
        staging = Path(staging)
        for name, path in zip(names, weights):
            shutil.copyfile(path, staging / name)
            if path.with_suffix(".json").is_file():
                shutil.copyfile(path.with_suffix(".json"), (staging / name).with_suffix(".json"))
            if export:
                make(staging / name)
            if int8[path] is not None:
                source, staged = Derived.of(path, INT8), Derived.of(staging / name, INT8)
                for made, copy in zip(source.all_paths, staged.all_paths, strict=True):
                    shutil.copyfile(made, copy)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out, verify_gzip) as temporary, tarfile.open(temporary, "w:gz") as archive:
            for name in names:
                exports = [made.name for kind in KINDS for made in Derived.of(Path(name), kind).all_paths]
                for member in (name, Path(name).with_suffix(".json").name, *exports):
                    if (staging / member).is_file():
                        archive.add(staging / member, arcname=member, filter=_readable_by_anyone)
            archive.add(staging / MANIFEST, arcname=MANIFEST, filter=_readable_by_anyone)
    return manifest


def describe(manifest: dict, out: Path) -> str:
    """What the model tarball `out` holds, from its `manifest`, as `sparseg package` prints it: the checkpoints,
    whether their OpenVINO exports are packed, their int8 models, and a note when they were trained on synthetic
    data."""
    files = ", ".join(c["file"] for c in manifest["checkpoints"])
    int8 = [c["int8"] for c in manifest["checkpoints"] if c["int8"]]
    text = (f"wrote {out}: {len(manifest['checkpoints'])} checkpoint(s) ({files})"
            + (f", exported to OpenVINO {manifest['openvino']}" if manifest["openvino"] else "")
            + (f", {len(int8)} int8 model(s) ({_int8_note(int8)})" if int8 else "") + "\n")
    if manifest["synthetic"]:
        text += "note: trained on synthetic data: for tests only, not for real scans\n"
    return text
