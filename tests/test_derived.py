from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sparseg.cases import find_input_case
from sparseg.config import InferenceConfig
from sparseg.derived import OPENVINO, Derived, make
from sparseg.errors import InputError
from sparseg.inference import Predictor
from sparseg.io import read_image
from sparseg.model import build_model, read_metadata, save_checkpoint
from sparseg.networks import OpenVINONetwork, load_network
from sparseg.runtime import resolve_runtime

from conftest import TINY_RUN

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "model_weights" / "sparseg-demo.safetensors"
SAMPLES = sorted((ROOT / "test").glob("*/input"))
TORCH_FP32 = InferenceConfig(engine="torch", precision="fp32")
OPENVINO_FP32 = InferenceConfig(engine="openvino", precision="fp32")


@pytest.fixture(scope="module")
def demo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo checkpoint in a folder of its own, so its export is made here and not in the checkout."""
    folder = tmp_path_factory.mktemp("demo")
    shutil.copyfile(DEMO, folder / DEMO.name)
    return folder / DEMO.name


@pytest.mark.slow
def test_openvino_masks_equal_torch_fp32_on_the_sample_cases(demo_copy: Path) -> None:
    """The CPU default (OpenVINO fp32) must segment the sample cases exactly as torch fp32 does."""
    assert len(SAMPLES) == 3
    torch_predictor = Predictor.load([demo_copy], CPU, inference=TORCH_FP32)
    openvino_predictor = Predictor.load([demo_copy], CPU, inference=OPENVINO_FP32)
    assert torch_predictor.runtime.engine == "torch" and openvino_predictor.runtime.engine == "openvino"
    assert isinstance(openvino_predictor.networks[0], OpenVINONetwork)
    for sample in SAMPLES:
        case = find_input_case(sample)
        adc, z = read_image(case.adc), read_image(case.z)
        reference, result = torch_predictor.predict(adc, z), openvino_predictor.predict(adc, z)
        assert reference.mask.any()
        np.testing.assert_array_equal(result.mask, reference.mask, err_msg=case.case_id)
        assert np.abs(result.probabilities - reference.probabilities).max() < 1e-4


def _checkpoint(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = build_model(TINY_RUN.model, TINY_RUN.in_channels)
    return save_checkpoint(path, model.eval(), TINY_RUN)


def _probabilities(path: Path, adc: np.ndarray) -> np.ndarray:
    predictor = Predictor.load([path], CPU, inference=OPENVINO_FP32)
    return predictor.probabilities(adc, np.zeros_like(adc))


@pytest.mark.slow
def test_an_export_is_reused_while_current_and_made_again_when_stale(tmp_path: Path, caplog) -> None:
    path = _checkpoint(tmp_path / "net.safetensors", seed=1)
    paths = Derived.of(path, OPENVINO)
    xml, bin_ = paths.files[".xml"], paths.files[".bin"]
    adc = np.full((3, 48, 48), 1200.0, dtype=np.float32)
    caplog.set_level(logging.INFO, logger="sparseg")
    first = _probabilities(path, adc)
    assert xml.is_file() and bin_.is_file() and "making its openvino files (none yet)" in caplog.text
    stamp = json.loads(paths.stamp_path.read_text())
    assert stamp["weights_sha256"] == read_metadata(path)["weights_sha256"]
    assert {"openvino", "torch"} <= set(stamp["libraries"]) and set(stamp["files_sha256"]) == {".xml", ".bin"}

    caplog.clear()
    np.testing.assert_array_equal(_probabilities(path, adc), first)
    assert "making" not in caplog.text  # current: reused

    _checkpoint(path, seed=2)  # other weights under the same name
    assert paths.stale_because(read_metadata(path)["weights_sha256"]) == "it was made from other weights"
    caplog.clear()
    second = _probabilities(path, adc)
    assert "making its openvino files (it was made from other weights)" in caplog.text
    reference = Predictor.load([path], CPU, inference=TORCH_FP32).probabilities(adc, np.zeros_like(adc))
    np.testing.assert_allclose(second, reference, atol=1e-5)
    assert not np.allclose(second, first)

    with open(bin_, "r+b") as handle:  # damage the weights file behind the stamp's back
        handle.seek(100)
        handle.write(b"\x00" * 16)
    assert "not the file its stamp names" in paths.stale_because(read_metadata(path)["weights_sha256"])
    caplog.clear()
    np.testing.assert_array_equal(_probabilities(path, adc), second)
    assert "making its openvino files (net.openvino.bin is not the file its stamp names" in caplog.text


@pytest.mark.slow
def test_an_export_needs_no_model_library_once_made(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path / "net.safetensors", seed=1)
    make(path)
    script = ("import sys; from sparseg.weights import load_predictor; "
              f"p = load_predictor([__import__('pathlib').Path({str(path)!r})], 'cpu'); "
              "print(type(p.networks[0]).__name__, sorted(m for m in ('segmentation_models_pytorch', 'timm', "
              "'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["OpenVINONetwork", "[]"]


def test_int8_without_a_quantized_model_is_refused_with_the_command_to_make_one(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path / "net.safetensors", seed=1)
    with pytest.raises(InputError, match=r"net.safetensors: no int8 model to run \(net.int8.xml: there is none\); "
                                         r"make one with: sparseg quantize"):
        load_network(path, resolve_runtime("cpu", "openvino", "int8"))


@pytest.mark.slow
def test_an_export_that_fsync_cannot_put_on_disk_is_not_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exports are written like every other output (`io.place`): a write error that only fsync reports (a full
    disk with delayed allocation) is an OutputError naming the file, and nothing is left under the export's names."""
    import errno
    import os

    from sparseg.errors import OutputError

    path = _checkpoint(tmp_path / "net.safetensors", seed=1)

    def full(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    # the first file to reach the disk is the stamp naming the set about to be placed
    with pytest.raises(OutputError, match=r"net.openvino.json: cannot write \(No space left on device\)"):
        make(path)
    assert not any(p.exists() for p in Derived.of(path, OPENVINO).all_paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.json", "net.safetensors"]
    # the stamp is written and the .bin's fsync fails: nothing was replaced, so no stamp is left either
    monkeypatch.undo()
    real = os.fsync

    def bin_full(descriptor: int) -> None:
        if os.readlink(f"/proc/self/fd/{descriptor}").endswith(".openvino.bin"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(descriptor)

    monkeypatch.setattr(os, "fsync", bin_full)
    with pytest.raises(OutputError, match=r"net.openvino.bin: cannot write \(No space left on device\)"):
        make(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.json", "net.safetensors"]


@pytest.mark.slow
def test_every_derived_network_passes_one_parity_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A derived network is held to `derived.PARITY_TOLERANCE`: with none left, the OpenVINO export is refused,
    naming the checkpoint; within it, a derived network off by less than the tolerance passes."""
    from sparseg import derived, model
    from sparseg.errors import SparsegError

    path = _checkpoint(tmp_path / "net.safetensors", seed=1)
    checkpoint = model.load_checkpoint(path)
    network = checkpoint.module
    with torch.no_grad():
        scale = 1e-4 * max(1.0, max(float(network(f).abs().max()) for f in derived.parity_frames(TINY_RUN)))
    derived.require_parity(checkpoint, "close", lambda frame: network(frame) + 0.5 * scale)
    with pytest.raises(SparsegError, match=r"net.safetensors: off differs from torch's by"):
        derived.require_parity(checkpoint, "off", lambda frame: network(frame) + 2.0 * scale)
    monkeypatch.setattr(derived, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(SparsegError, match=r"net.safetensors: OpenVINO's network differs from torch's"):
        make(path)
    assert not any(p.exists() for p in Derived.of(path, OPENVINO).all_paths)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True, 10**400, "0.5", -0.1, 1.5, None])
def test_an_int8_agreement_that_is_no_dice_is_not_taken_for_one(value) -> None:
    from sparseg.derived import recorded_agreement

    stamp = {"agreement": {"held_out_cases": 3, "dice_int8_vs_fp32": {"smallest": value}}}
    assert recorded_agreement(stamp) == (None, 3)
    measured = {"agreement": {"held_out_cases": 3, "dice_int8_vs_fp32": {"smallest": 0.97}}}
    assert recorded_agreement(measured) == (0.97, 3)
    assert recorded_agreement(None) == (None, None)
