from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from sparseg.cases import OUTPUT_MASK, find_cases
from sparseg.cli import main
from sparseg.derived import INT8, OPENVINO, Derived, current
from sparseg.errors import InputError
from sparseg.io import read_mask
from sparseg.model import build_model, read_metadata, save_checkpoint
from sparseg.outputs import prediction_name
from sparseg.submission import MANIFEST, member_names, package_model
from sparseg.synth import SynthConfig, write_input_case
from sparseg.weights import default_weights

from conftest import TINY_RUN

ROOT = Path(__file__).resolve().parent.parent


def _checkpoint(path: Path, synthetic: bool = False, threshold: float = 0.5) -> Path:
    torch.manual_seed(sum(map(ord, str(path))))  # other weights for another file
    model = build_model(TINY_RUN.model, TINY_RUN.in_channels)
    return save_checkpoint(path, model.eval(), replace(TINY_RUN, threshold=threshold),
                           {"data": {"synthetic": synthetic}})


def test_fold_checkpoints_get_distinct_names(tmp_path: Path) -> None:
    paths = [tmp_path / "fold0" / "best.safetensors", tmp_path / "fold1" / "best.safetensors"]
    assert member_names(paths) == ["fold0-best.safetensors", "fold1-best.safetensors"]
    assert member_names([paths[0], paths[0]]) == ["0-fold0-best.safetensors", "1-fold0-best.safetensors"]


@pytest.mark.slow
def test_the_tarball_holds_every_checkpoint_and_a_manifest(tmp_path: Path) -> None:
    paths = [_checkpoint(tmp_path / f"fold{k}" / "best.safetensors") for k in range(2)]
    manifest = package_model(paths, tmp_path / "model.tar.gz")
    with tarfile.open(tmp_path / "model.tar.gz") as archive:
        names = sorted(archive.getnames())
        assert {member.mode for member in archive.getmembers()} == {0o644}  # the container's user reads them
        archive.extractall(tmp_path / "unpacked", filter="data")
    exports = [f"fold{k}-best.openvino.{part}" for k in range(2) for part in ("xml", "bin", "json")]
    assert names == sorted([MANIFEST, "fold0-best.json", "fold0-best.safetensors",
                            "fold1-best.json", "fold1-best.safetensors", *exports])
    assert manifest["openvino"] and all(entry["int8"] is None for entry in manifest["checkpoints"])
    for k in range(2):  # each export is current for its checkpoint under its new name: no export at start-up
        member = tmp_path / "unpacked" / f"fold{k}-best.safetensors"
        assert Derived.of(member, OPENVINO).stale_because(read_metadata(member)["weights_sha256"]) is None
    assert json.loads((tmp_path / "unpacked" / MANIFEST).read_text()) == manifest
    for entry, path in zip(manifest["checkpoints"], paths):
        assert read_metadata(tmp_path / "unpacked" / entry["file"])["weights_sha256"] == entry["weights_sha256"]
        assert entry["weights_sha256"] == read_metadata(path)["weights_sha256"]


@pytest.mark.slow
def test_checkpoints_that_cannot_be_averaged_or_mix_data_are_refused(tmp_path: Path) -> None:
    real = _checkpoint(tmp_path / "real" / "best.safetensors")
    other_threshold = _checkpoint(tmp_path / "other" / "best.safetensors", threshold=0.35)
    synthetic = _checkpoint(tmp_path / "synthetic" / "best.safetensors", synthetic=True)
    with pytest.raises(InputError, match="other/best.safetensors: its preprocessing or threshold differs"):
        package_model([real, other_threshold], tmp_path / "a.tar.gz")
    with pytest.raises(InputError, match="synthetic/best.safetensors: trained on synthetic data, unlike the other"):
        package_model([real, synthetic], tmp_path / "b.tar.gz")
    with pytest.raises(InputError, match=r"threshold 0.35 vs 0.5"):
        package_model([real, other_threshold], tmp_path / "a.tar.gz")
    copy = tmp_path / "copy" / "best.safetensors"
    copy.parent.mkdir()
    copy.write_bytes(real.read_bytes())
    with pytest.raises(InputError, match=f"copy/best.safetensors: the same weights as {real}"):
        package_model([real, copy], tmp_path / "c.tar.gz")
    with pytest.raises(InputError, match="real: a folder; name its checkpoints"):
        package_model([real.parent], tmp_path / "d.tar.gz")
    assert not list(tmp_path.glob("*.tar.gz"))


def test_an_uploaded_model_in_a_subfolder_is_found_and_wins(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    uploaded, baked = tmp_path / "opt-ml-model", tmp_path / "model_weights"
    demo = _checkpoint(baked / "demo.safetensors")
    (uploaded / "model").mkdir(parents=True)
    assert default_weights((uploaded, baked)) == [demo]
    assert "opt-ml-model exists but holds no checkpoint" in caplog.text  # an upload that holds none is said
    nested = _checkpoint(uploaded / "model" / "fold0-best.safetensors")
    assert default_weights((uploaded, baked)) == [nested]


@pytest.mark.slow
def test_the_participants_path_end_to_end(tmp_path: Path) -> None:
    """synth -> cv -> out-of-fold table -> package -> the container's entry point with the tarball as its model
    folder -> the same mask as `sparseg predict` with the same checkpoints."""
    data, cv, model = tmp_path / "release", tmp_path / "cv", tmp_path / "model.tar.gz"
    assert main(["synth", "--out", str(data), "--cases", "4", "--seed", "3", "--size", "64", "--depth", "8"]) == 0
    assert main(["cv", "--data", str(data), "--config", str(ROOT / "resources/configs/smoke.json"),
                 "--out", str(cv), "--device", "cpu"]) == 0
    scores = json.loads((cv / "out_of_fold_scores" / "summary.json").read_text())
    assert scores["summary"]["all"]["n"] == 4
    folds = sorted(cv.glob("fold*/final.safetensors"))
    assert len(folds) == 2
    assert main(["package", "--weights", *map(str, folds), "--out", str(model)]) == 0
    unpacked = tmp_path / "opt-ml-model"
    with tarfile.open(model) as archive:
        archive.extractall(unpacked, filter="data")

    case = write_input_case(tmp_path / "input", seed=4, config=SynthConfig().with_shape(64, 8))
    job = subprocess.run([sys.executable, str(ROOT / "process.py"), "--input", str(tmp_path / "input"),
                          "--output", str(tmp_path / "output"), "--weights", str(unpacked), "--device", "cpu"],
                         capture_output=True, text=True, timeout=300)
    assert job.returncode == 0, job.stderr
    for member in ("fold0-final", "fold1-final"):  # the packed OpenVINO exports, used as they are
        assert f"checkpoint: {unpacked / member}.safetensors (sha256" in job.stderr
        assert f"fp32 ({member}.openvino.xml)" in job.stderr
    assert "device: CPU" in job.stderr and "making" not in job.stderr

    assert main(["predict", "--data", str(tmp_path / "input"), "--out", str(tmp_path / "predicted"),
                 "--weights", *map(str, folds), "--device", "cpu"]) == 0
    np.testing.assert_array_equal(read_mask(tmp_path / "output" / OUTPUT_MASK)[0],
                                  read_mask(tmp_path / "predicted" / prediction_name(case.case_id))[0])
    assert len(find_cases(data)) == 4


@pytest.mark.slow
def test_quantize_data_packs_int8_models_with_their_agreement(tiny_dataset: Path, tmp_path: Path) -> None:
    ids = sorted(case.case_id for case in find_cases(tiny_dataset))
    torch.manual_seed(0)
    model = build_model(TINY_RUN.model, TINY_RUN.in_channels)
    path = save_checkpoint(tmp_path / "run" / "best.safetensors", model.eval(), TINY_RUN,
                           {"data": {"case_ids": ids[:4], "synthetic": True}})
    manifest = package_model([path], tmp_path / "model.tar.gz", quantize_data=tiny_dataset)
    int8 = manifest["checkpoints"][0]["int8"]
    assert int8["held_out_cases"] == 2 and 0 <= int8["smallest_dice_vs_fp32"] <= 1
    with tarfile.open(tmp_path / "model.tar.gz") as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    member = tmp_path / "unpacked" / "run-best.safetensors"
    assert Derived.of(member, INT8).stale_because(read_metadata(member)["weights_sha256"]) is None


@pytest.mark.slow
def test_an_int8_model_made_for_other_weights_is_not_packed(tmp_path: Path) -> None:
    """An int8 model beside a checkpoint whose stamp names other weights (copied over from another run) is stale
    for this checkpoint: it is neither packed nor its agreement put in the manifest."""
    import openvino as ov

    other = _checkpoint(tmp_path / "other" / "best.safetensors")
    weights = read_metadata(other)["weights_sha256"]
    model = ov.Core().read_model(str(current(other, OPENVINO, weights).files[".xml"]))  # stands in for int8
    made = Derived.of(other, INT8).save(model, {"weights_sha256": weights, "agreement": {
        "held_out_cases": 2, "holds": True, "dice_int8_vs_fp32": {"smallest": 1.0}}})
    mine = _checkpoint(tmp_path / "mine" / "best.safetensors")
    for source, copy in zip(made.all_paths, Derived.of(mine, INT8).all_paths, strict=True):
        copy.write_bytes(source.read_bytes())
    manifest = package_model([mine], tmp_path / "model.tar.gz", export=False)
    assert manifest["checkpoints"][0]["int8"] is None
    with tarfile.open(tmp_path / "model.tar.gz") as archive:
        assert not [name for name in archive.getnames() if ".int8." in name]
    assert package_model([other], tmp_path / "own.tar.gz", export=False)["checkpoints"][0]["int8"] == {
        "held_out_cases": 2, "holds": True, "smallest_dice_vs_fp32": 1.0}
