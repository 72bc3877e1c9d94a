"""The bad-input matrix at the container's entry point (`sparseg process`, what process.py runs).

Rejected inputs: exit code 2, one line on stderr that names the file and the
problem, no traceback, and nothing written under the output folder. Accepted
unusual inputs: a warning where it is unusual, and a valid mask on the ADC grid.
`python tests/test_bad_input.py` prints the matrix as the table of docs/integrity.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from sparseg.cases import INPUT_ADC_DIR, INPUT_Z_DIR, OUTPUT_MASK
from sparseg.cli import main
from sparseg.io import Geometry, read_image, write_image
from sparseg.synth import SynthConfig, write_input_case

from conftest import edit_checkpoint_header, mount_full_tmpfs


def _adc(root: Path) -> Path:
    return next((root / INPUT_ADC_DIR).iterdir())


def _z(root: Path) -> Path:
    return next((root / INPUT_Z_DIR).iterdir())


def _rewrite(path: Path, change: Callable[[np.ndarray, Geometry], tuple[np.ndarray, Geometry]]) -> None:
    volume = read_image(path)
    array, geometry = change(volume.array, volume.geometry)
    write_image(array, geometry, path)


def _edit_header(path: Path, old: str, new: str) -> None:
    data = path.read_bytes()
    end = data.index(b"ElementDataFile")
    header = data[:end].decode()
    assert re.search(old, header), header
    path.write_bytes(re.sub(old, new, header).encode() + data[end:])


def _damage_stream(path: Path, where: float) -> None:
    """Overwrite 16 bytes of a compressed .mha's zlib stream, `where` of the way into it (0: its first bytes)."""
    data = bytearray(path.read_bytes())
    start = data.index(b"\n", data.index(b"ElementDataFile")) + 1
    at = start + int(where * (len(data) - start - 32))
    data[at : at + 16] = bytes(range(7, 23))
    path.write_bytes(bytes(data))


def _uncompressed(path: Path) -> Path:
    volume = read_image(path)
    write_image(volume.array, volume.geometry, path, compress=False)
    return path


def _two_files(root: Path) -> None:
    adc = _adc(root)
    (adc.parent / ("copy-" + adc.name)).write_bytes(adc.read_bytes())


def _mhd_without_data(root: Path) -> None:
    import SimpleITK as sitk

    adc = _adc(root)
    image = sitk.ReadImage(str(adc))
    adc.unlink()
    sitk.WriteImage(image, str(adc.with_suffix(".mhd")))
    for raw in adc.parent.glob("*.raw"):
        raw.unlink()


def _as_file(root: Path, suffix: str, compress: bool = False, pixel: str | None = None) -> Path:
    """Replace the case's ADC .mha by the same image as `suffix` (.nii, .nrrd), optionally of another pixel type."""
    import SimpleITK as sitk

    adc = _adc(root)
    image = sitk.ReadImage(str(adc))
    if pixel is not None:
        image = sitk.Cast(sitk.Round(image), getattr(sitk, pixel))
    adc.unlink()
    path = adc.with_name(adc.name.removesuffix(".mha") + suffix)
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(path))
    writer.SetUseCompression(compress)
    writer.Execute(image)
    return path


def _poke(path: Path, offset: int, fmt: str, value: float) -> None:
    """Overwrite one header field of a file in place (NIfTI-1: little-endian, fields at fixed offsets)."""
    import struct

    data = bytearray(path.read_bytes())
    data[offset : offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(data))


def _nifti_short_dim(root: Path) -> None:
    import struct

    path = _as_file(root, ".nii")
    _poke(path, 46, "<h", struct.unpack("<h", path.read_bytes()[46:48])[0] - 1)  # dim[3]: one slice fewer


def _damaged_nrrd(root: Path) -> None:
    path = _as_file(root, ".nrrd", compress=True)
    data = bytearray(path.read_bytes())
    start = data.index(b"\n\n") + 2
    data[start + 100 : start + 116] = bytes(range(7, 23))
    path.write_bytes(bytes(data))


def _int16_scaled_nifti(root: Path) -> None:
    path = _as_file(root, ".nii", pixel="sitkInt16")
    _poke(path, 112, "<f", 0.5)  # scl_slope: scanners store int16 with a scale
    _poke(path, 116, "<f", 0.0)


def _over_budget(root: Path) -> None:
    adc = _adc(root)
    adc.write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 1024 1024 1024\nElementType = MET_FLOAT\n"
                    b"ElementDataFile = LOCAL\n" + bytes(64))


def _image_of_dimension(root: Path, size: list[int], components: int = 1) -> None:
    import SimpleITK as sitk

    pixel = sitk.sitkFloat32 if components == 1 else sitk.sitkVectorFloat32
    sitk.WriteImage(sitk.Image(size, pixel, components) if components > 1 else sitk.Image(size, pixel), str(_adc(root)))


def _shifted(root: Path, **changes) -> None:
    _rewrite(_z(root), lambda a, g: (a, replace(g, **{k: v(g) for k, v in changes.items()})))


# name -> (what the input is, how to break a valid case, fragment naming the file, fragment naming the problem)
REJECTED: dict[str, tuple[str, Callable[[Path], None], str, str]] = {
    "missing-folder": ("input folder does not exist", lambda r: __import__("shutil").rmtree(r), "input",
                       "no such folder"),
    "empty-folder": ("ADC folder is empty", lambda r: _adc(r).unlink(), str(INPUT_ADC_DIR), "no image"),
    "two-files": ("two .mha in the ADC folder", _two_files, str(INPUT_ADC_DIR), "2 image files"),
    "zero-byte": ("ADC file of 0 bytes", lambda r: _adc(r).write_bytes(b""), "ADC_ss.mha", "empty file"),
    "truncated": ("ADC file cut short", lambda r: _adc(r).write_bytes(_adc(r).read_bytes()[:-200]), "ADC_ss.mha",
                  "compressed pixel data is cut short"),
    "truncated-raw": ("uncompressed ADC file cut short", lambda r: (lambda p: p.write_bytes(p.read_bytes()[:-200]))(
        _uncompressed(_adc(r))), "ADC_ss.mha", "pixel data is cut short"),
    "raw-longer": ("uncompressed .mha whose DimSize is one slice short of its data", lambda r: _edit_header(
        _uncompressed(_adc(r)), r"DimSize = (\d+) (\d+) (\d+)", lambda m: f"DimSize = {m[1]} {m[2]} {int(m[3]) - 1}"),
        "ADC_ss.mha", "pixel data is longer than its header says"),
    "nii-longer": (".nii whose dim is one slice short of its data", _nifti_short_dim, "ADC_ss.nii",
                   "pixel data is longer than its header says"),
    "nii-vox-offset": (".nii whose vox_offset lies inside its header", lambda r: _poke(_as_file(r, ".nii"), 108, "<f",
                       100.0), "ADC_ss.nii", "vox_offset 100 lies inside the header"),
    "nii-negative-dim": (".nii with a negative dim", lambda r: _poke(_as_file(r, ".nii"), 46, "<h", -8),
                         "ADC_ss.nii", "every size positive"),
    "nrrd-gzip-damaged": ("gzip-encoded .nrrd with damaged data", _damaged_nrrd, "ADC_ss.nrrd",
                          "compressed pixel data is damaged"),
    "zlib-start": ("compressed pixel data damaged at its start", lambda r: _damage_stream(_adc(r), 0.0), "ADC_ss.mha",
                   "compressed pixel data is damaged"),
    "zlib-middle": ("compressed pixel data damaged in the middle", lambda r: _damage_stream(_adc(r), 0.5),
                    "ADC_ss.mha", "compressed pixel data is damaged"),
    "compressed-size": ("header CompressedDataSize half the stream", lambda r: _edit_header(
        _adc(r), r"CompressedDataSize = (\d+)", lambda m: f"CompressedDataSize = {int(m[1]) // 2}"), "ADC_ss.mha",
        "CompressedDataSize"),
    "spacing-zero": ("header ElementSpacing 0", lambda r: _edit_header(_adc(r), r"ElementSpacing = \S+",
                     "ElementSpacing = 0"), "ADC_ss.mha", "every spacing must be a positive number"),
    "spacing-nan": ("header ElementSpacing NaN", lambda r: _edit_header(_adc(r), r"ElementSpacing = \S+",
                    "ElementSpacing = nan"), "ADC_ss.mha", "ElementSpacing 'nan"),
    "origin-nan": ("header Offset (origin) NaN", lambda r: _edit_header(_adc(r), r"Offset = \S+", "Offset = nan"),
                   "ADC_ss.mha", "Offset 'nan"),
    "direction-singular": ("header TransformMatrix singular", lambda r: _edit_header(
        _adc(r), r"TransformMatrix = .*", "TransformMatrix = 1 0 0 1 0 0 0 0 1"), "ADC_ss.mha",
        "direction matrix is singular"),
    "non-utf8-name": ("ADC file name not valid UTF-8", lambda r: _adc(r).rename(_adc(r).parent / os.fsdecode(
        b"ADC_\xff.mha")), "ADC_\\udcff.mha", "not valid UTF-8"),
    "text": ("a text file renamed .mha", lambda r: _adc(r).write_text("not an image\n"), "ADC_ss.mha",
             "not a readable image"),
    "wrong-dimsize": ("header DimSize larger than the data", lambda r: _edit_header(_uncompressed(_adc(r)),
                      r"DimSize = (\d+) (\d+) (\d+)", r"DimSize = \1 \2 999"), "ADC_ss.mha",
                      "pixel data is cut short"),
    "wrong-elementtype": ("header ElementType unknown", lambda r: _edit_header(_adc(r), r"ElementType = \w+",
                          "ElementType = MET_BOGUS"), "ADC_ss.mha", "not a readable image"),
    "mhd-no-data": (".mhd whose data file is missing", _mhd_without_data, "ADC_ss.mhd", "data file"),
    "2d": ("a 2D image", lambda r: _image_of_dimension(r, [8, 8]), "ADC_ss.mha", "2D"),
    "4d": ("a 4D image", lambda r: _image_of_dimension(r, [8, 8, 4, 2]), "ADC_ss.mha", "4D"),
    "vector": ("vector (RGB) pixels", lambda r: _image_of_dimension(r, [8, 8, 4], 3), "ADC_ss.mha", "3 components"),
    "other-size": ("Z_ADC of another size than ADC", lambda r: _rewrite(_z(r), lambda a, g: (
        a[:, :-1], replace(g, size_xyz=(g.size_xyz[0], g.size_xyz[1] - 1, g.size_xyz[2])))), "clipped10.mha", "size"),
    "other-spacing": ("Z_ADC spacing differs", lambda r: _shifted(r, spacing_xyz_mm=lambda g: tuple(
        v * 1.1 for v in g.spacing_xyz_mm)), "clipped10.mha", "spacing"),
    "other-origin": ("Z_ADC origin differs", lambda r: _shifted(r, origin_xyz_mm=lambda g: tuple(
        v + 5 for v in g.origin_xyz_mm)), "clipped10.mha", "origin"),
    "other-direction": ("Z_ADC direction differs", lambda r: _shifted(r, direction=lambda g: (
        0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)), "clipped10.mha", "direction"),
    "over-budget": ("header claims 1024^3 voxels", _over_budget, "ADC_ss.mha", "over the limit"),
}


@pytest.fixture
def case(tmp_path: Path) -> Path:
    root = tmp_path / "input"
    write_input_case(root, seed=2, index=0, config=SynthConfig.tiny())
    return root


def _process(input_dir: Path, output: Path, weights: Path, capsys, *options: str) -> tuple[int, str, str]:
    code = main(["process", "--input", str(input_dir), "--output", str(output), "--weights", str(weights),
                 "--device", "cpu", *options])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tamper_openvino(checkpoint: Path) -> None:
    """Export the checkpoint to OpenVINO, then change bytes of the export's weights behind its stamp's back."""
    from sparseg.derived import OPENVINO, make

    weights = make(checkpoint, OPENVINO).files[".bin"]
    data = bytearray(weights.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    weights.write_bytes(bytes(data))


def _process_torch(case: Path, tmp_path: Path, weights: Path) -> Path:
    out = tmp_path / "torch-output"
    assert main(["process", "--input", str(case), "--output", str(out), "--weights", str(weights), "--device", "cpu",
                 "--engine", "torch"]) == 0
    return out / OUTPUT_MASK


def _assert_clean_error(code: int, err: str, output: Path, names: str, problem: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("sparseg: error:")]
    assert code == 2, err
    assert len(lines) == 1, err
    assert names in lines[0] and problem in lines[0], lines[0]
    assert "Traceback" not in err
    assert not output.exists() or not [p for p in output.rglob("*") if p.is_file()]


@pytest.mark.parametrize("name", REJECTED)
def test_rejected_input(name: str, case: Path, tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    _, breaker, names, problem = REJECTED[name]
    breaker(case)
    output = tmp_path / "output"
    code, _, err = _process(case, output, tiny_checkpoint, capsys)
    _assert_clean_error(code, err, output, names, problem)


def test_unwritable_output_folder(case: Path, tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = _process(case, blocker / "output", tiny_checkpoint, capsys)
    _assert_clean_error(code, err, blocker / "output", "a-file", "cannot create output folder")


def test_a_full_disk_is_a_clean_error_not_an_empty_mask(case: Path, tiny_checkpoint: Path, full_disk: Path,
                                                        capsys) -> None:
    """On a full disk the job once printed "wrote .../overlay.mha", exited 0 and left a 0-byte mask."""
    output = full_disk / "output"
    code, out, err = _process(case, output, tiny_checkpoint, capsys)
    _assert_clean_error(code, err, output, "overlay.mha", "cannot write")
    assert "wrote" not in out


# how a checkpoint is damaged -> (change to its header, re-signed as if saved so, the problem named)
HEADER_DAMAGE: dict[str, tuple[Callable[[dict], None], bool, str]] = {
    "edited threshold": (lambda m: m["config"].update(threshold=0.1), False, "header was edited"),
    "edited ADC range": (lambda m: m["config"]["preprocessing"].update(adc_range=[0, 2000]), False,
                         "header was edited"),
    "unknown encoder": (lambda m: m["config"]["model"].update(encoder="inceptionv5"), True,
                        "model.encoder: unknown encoder"),
    "another encoder's shape": (lambda m: m["config"]["model"].update(encoder="resnet18"), True,
                                "weights do not fit the network"),
    "unknown config key": (lambda m: m["config"]["model"].update(depth=4), True, "model.depth"),
    "no config": (lambda m: m.pop("config"), True, "no run config"),
}
DAMAGE = ["missing", "truncated", "tampered", *HEADER_DAMAGE]


def _damaged_checkpoint(damage: str, checkpoint: Path, folder: Path) -> Path:
    weights = folder / "model.safetensors"
    data = checkpoint.read_bytes()
    if damage == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "tampered":
        weights.write_bytes(data[:-8] + bytes(8))
    elif damage in HEADER_DAMAGE:
        weights.write_bytes(data)
        change, resign, _ = HEADER_DAMAGE[damage]
        edit_checkpoint_header(weights, change, resign)
    return weights


def _checkpoint_problem(damage: str) -> str:
    return {"missing": "no such checkpoint", "truncated": "cannot be read", "tampered": "sha256"}.get(damage) or \
        HEADER_DAMAGE[damage][2]


@pytest.mark.parametrize("damage", DAMAGE)
def test_bad_checkpoint(damage: str, case: Path, tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    weights = _damaged_checkpoint(damage, tiny_checkpoint, tmp_path)
    output = tmp_path / "output"
    code, _, err = _process(case, output, weights, capsys)
    _assert_clean_error(code, err, output, "model.safetensors", _checkpoint_problem(damage))


def test_int8_without_an_int8_model_is_a_clean_error(case: Path, tiny_checkpoint: Path, tmp_path: Path,
                                                     capsys) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(tiny_checkpoint.read_bytes())
    output = tmp_path / "output"
    code, _, err = _process(case, output, weights, capsys, "--precision", "int8")
    _assert_clean_error(code, err, output, "model.safetensors", "no int8 model to run")


@pytest.mark.slow
def test_a_tampered_openvino_export_is_made_again(case: Path, tiny_checkpoint: Path, tmp_path: Path,
                                                  capsys) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(tiny_checkpoint.read_bytes())
    tamper_openvino(weights)
    output = tmp_path / "output"
    code, _, err = _process(case, output, weights, capsys)
    assert code == 0, err
    mask = read_image(output / OUTPUT_MASK)
    assert mask.array.shape == read_image(_adc(case)).array.shape
    np.testing.assert_array_equal(mask.array, read_image(_process_torch(case, tmp_path, weights)).array)


@pytest.mark.parametrize("damage", DAMAGE)
def test_info_verify_names_a_bad_checkpoint(damage: str, tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    weights = _damaged_checkpoint(damage, tiny_checkpoint, tmp_path)
    code = main(["info", str(weights), "--verify"])
    err = capsys.readouterr().err
    _assert_clean_error(code, err, tmp_path / "no-output", "model.safetensors", _checkpoint_problem(damage))


def _nan_inf(root: Path) -> None:
    def change(a, g):
        a = a.copy()
        a[0, :2, :2] = np.nan
        a[1, :2, :2] = np.inf
        return a, g
    _rewrite(_adc(root), change)


def _new_grid(root: Path, shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(0)
    geometry = Geometry((shape[2], shape[1], shape[0]), (1.0, 1.0, 4.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    adc = rng.uniform(800, 1500, shape).astype(np.float32)
    write_image(adc, geometry, _adc(root))
    write_image(rng.normal(0, 2, shape).astype(np.float32), geometry, _z(root))


def _respace(root: Path, spacing_mm: float) -> None:
    for path in (_adc(root), _z(root)):
        _rewrite(path, lambda a, g: (a, replace(g, spacing_xyz_mm=(spacing_mm,) * 3)))


# name -> (what the input is, how to make it, warning fragment or None)
ACCEPTED: dict[str, tuple[str, Callable[[Path], None], str | None]] = {
    "nan-inf": ("NaN and Inf voxels in ADC", _nan_inf, "8 non-finite voxels (NaN/Inf) treated as 0"),
    "all-zero": ("ADC all zeros", lambda r: _rewrite(_adc(r), lambda a, g: (np.zeros_like(a), g)), "no brain"),
    "one-slice": ("one slice (D = 1)", lambda r: _new_grid(r, (1, 40, 40)), None),
    "tiny": ("8x8x3 voxels", lambda r: _new_grid(r, (3, 8, 8)), None),
    "int16-float64": ("int16 ADC, float64 Z_ADC", lambda r: (
        _rewrite(_adc(r), lambda a, g: (np.rint(a).astype(np.int16), g)),
        _rewrite(_z(r), lambda a, g: (a.astype(np.float64), g))), None),
    "mm2-per-s": ("ADC in mm^2/s (values below 0.01)", lambda r: _rewrite(_adc(r), lambda a, g: (a * 1e-6, g)),
                  "mm^2/s"),
    "adc-negative": ("ADC negated (negative everywhere)", lambda r: _rewrite(_adc(r), lambda a, g: (-a, g)),
                     "ADC cannot be negative"),
    "adc-huge": ("ADC scaled to 1e30", lambda r: _rewrite(_adc(r), lambda a, g: (a * 1e27, g)),
                 "far above free water"),
    "float64-beyond-float32": ("float64 ADC with values of 1e300", lambda r: _rewrite(_adc(r), lambda a, g: (
        np.where(a > 0, 1e300, 0.0), g)), "beyond the float32 range"),
    "spacing-nanometre": ("spacing 1e-9 mm (ADC and Z_ADC)", lambda r: _respace(r, 1e-9), "outside 0.05-20 mm"),
    "spacing-kilometre": ("spacing 1e6 mm (ADC and Z_ADC)", lambda r: _respace(r, 1e6), "outside 0.05-20 mm"),
    "junk-after-stream": ("800 bytes after the compressed pixel data", lambda r: _adc(r).write_bytes(
        _adc(r).read_bytes() + bytes(800)), "bytes after the compressed pixel data ignored"),
    "no-spacing": ("header without ElementSpacing", lambda r: [_edit_header(p, r"ElementSpacing = [^\n]*\n", "")
                                                             for p in (_adc(r), _z(r))], "1 mm is assumed"),
    "capital-suffix": ("ADC file named .MHA (capitals)", lambda r: _adc(r).rename(_adc(r).with_suffix(".MHA")), None),
    "nii-int16-scaled": ("int16 .nii with scl_slope 0.5 (as scanners write)", _int16_scaled_nifti, None),
}


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_unusual_input(name: str, case: Path, tiny_checkpoint: Path, tmp_path: Path, capsys,
                                caplog: pytest.LogCaptureFixture) -> None:
    _, maker, warning = ACCEPTED[name]
    maker(case)
    output = tmp_path / "output"
    code, _, err = _process(case, output, tiny_checkpoint, capsys)
    assert code == 0, err
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if warning is not None:
        assert any(warning in w for w in warnings), warnings
    else:
        assert not warnings
    mask = read_image(output / OUTPUT_MASK)
    assert mask.geometry == read_image(_adc(case)).geometry
    assert set(np.unique(mask.array)) <= {0.0, 1.0}
    if name == "all-zero":
        assert not mask.array.any()


def readme_table() -> str:
    """The matrix as a markdown table, from running it (python tests/test_bad_input.py)."""
    import contextlib
    import io
    import logging
    import shutil
    import tempfile

    from sparseg.model import build_model, save_checkpoint

    from conftest import TINY_RUN

    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("sparseg").addHandler(handler)
    rows = ["| input | what happens | exit code |", "|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = save_checkpoint(tmp / "tiny.safetensors", build_model(TINY_RUN.model, TINY_RUN.in_channels), TINY_RUN)
        damaged = {"missing checkpoint": tmp / "absent.safetensors", "truncated checkpoint": tmp / "cut.safetensors",
                   "tampered checkpoint (weights changed)": tmp / "tampered.safetensors"}
        damaged["truncated checkpoint"].write_bytes(weights.read_bytes()[:1000])
        damaged["tampered checkpoint (weights changed)"].write_bytes(weights.read_bytes()[:-8] + bytes(8))
        exported = "OpenVINO export beside it with changed weights (it is made again)"
        damaged[exported] = tmp / "exported" / "tiny.safetensors"
        damaged[exported].parent.mkdir()
        damaged[exported].write_bytes(weights.read_bytes())
        tamper_openvino(damaged[exported])
        no_int8 = "`--precision int8` without an int8 model (`sparseg quantize`)"
        damaged[no_int8] = tmp / "no-int8" / "tiny.safetensors"
        damaged[no_int8].parent.mkdir()
        damaged[no_int8].write_bytes(weights.read_bytes())
        options = {no_int8: ["--precision", "int8"]}
        for what, (change, resign, _) in HEADER_DAMAGE.items():
            damaged[f"checkpoint header: {what}"] = tmp / f"header{len(damaged)}" / "tiny.safetensors"
            damaged[f"checkpoint header: {what}"].parent.mkdir()
            damaged[f"checkpoint header: {what}"].write_bytes(weights.read_bytes())
            edit_checkpoint_header(damaged[f"checkpoint header: {what}"], change, resign)
        blocker = tmp / "a-file"
        blocker.write_text("")
        cases = [(what, breaker, weights, None) for what, breaker, *_ in REJECTED.values()]
        cases.append(("output folder cannot be created", lambda r: None, weights, blocker / "output"))
        full = _mount_full_disk(tmp / "full")
        if full is not None:
            cases.append(("output on a full disk", lambda r: None, weights, full / "output"))
        cases += [(what, lambda r: None, path, None) for what, path in damaged.items()]
        cases += [(what, maker, weights, None) for what, maker, _ in ACCEPTED.values()]
        for number, (what, change, checkpoint, output) in enumerate(cases):
            root = tmp / f"case{number}" / "input"
            write_input_case(root, seed=2, index=0, config=SynthConfig.tiny())
            change(root)
            warnings.clear()
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(["process", "--input", str(root), "--output", str(output or tmp / f"out{number}"),
                             "--weights", str(checkpoint), "--device", "cpu", *options.get(what, [])])
            errors = [ln for ln in err.getvalue().splitlines() if ln.startswith("sparseg: error:")]
            message = errors[-1] if errors else "mask written" + "".join(f"; warning: {w}" for w in warnings)
            message = message.replace(str(tmp), "...").replace("|", "/")
            rows.append(f"| {what} | `{message}` | {code} |")
            shutil.rmtree(root.parent)
        if full is not None:
            subprocess.run(["umount", "-l", str(full)], check=False)
    return "\n".join(rows)


def _mount_full_disk(folder: Path) -> Path | None:
    """The `full_disk` fixture's filled tmpfs, for docs/integrity.md's table; None where it cannot be mounted."""
    folder.mkdir()
    return folder if mount_full_tmpfs(folder) is None else None


if __name__ == "__main__":
    print(readme_table())
    sys.exit(0)
