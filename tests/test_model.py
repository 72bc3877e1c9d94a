from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sparseg.config import LossConfig, ModelConfig, PreprocessingConfig, RunConfig
from sparseg.errors import InputError
from sparseg.losses import build_loss
from sparseg.model import (
    build_model,
    count_parameters,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)

from conftest import edit_checkpoint_header

TINY_MODEL = ModelConfig(encoder="timm-mobilenetv3_small_100", decoder_channels=(32, 32, 16, 16, 16))
TINY_RUN = RunConfig(preprocessing=PreprocessingConfig(slice_size=(64, 64)), model=TINY_MODEL)


@pytest.fixture(scope="module")
def paper_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(), in_channels=3)


def test_paper_model_size_and_attention(paper_model: nn.Module) -> None:
    assert count_parameters(paper_model) == pytest.approx(60.8e6, rel=0.005)
    assert type(paper_model).__name__ == "UnetPlusPlus"
    assert any(type(m).__name__ == "SCSEModule" for m in paper_model.modules())
    without = build_model(ModelConfig(attention=None), in_channels=3)
    assert not any(type(m).__name__ == "SCSEModule" for m in without.modules())


def test_xavier_uniform_initialisation(paper_model: nn.Module) -> None:
    convs = [m for m in paper_model.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs[:: max(1, len(convs) // 20)]:
        fan_in = conv.weight[0].numel()
        fan_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        assert conv.weight.abs().max() <= bound + 1e-6
        assert conv.weight.abs().max() > 0.5 * bound
        if conv.bias is not None:
            assert not conv.bias.any()


@pytest.mark.slow
def test_paper_configuration_learns_one_batch(paper_model: nn.Module) -> None:
    torch.manual_seed(1)
    images = torch.rand(2, 3, 64, 64)
    targets = torch.zeros(2, 1, 64, 64)
    targets[:, :, 20:30, 25:40] = 1
    model = paper_model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = build_loss(LossConfig())
    losses = []
    for _ in range(6):
        logits = model(images)
        assert logits.shape == (2, 1, 64, 64)
        loss = loss_fn(logits, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0], losses


def test_input_channels_follow_the_config() -> None:
    model = build_model(TINY_MODEL, in_channels=2).eval()
    assert model(torch.rand(1, 2, 64, 64)).shape == (1, 1, 64, 64)


def _saved(tmp_path: Path) -> tuple[Path, nn.Module]:
    torch.manual_seed(2)
    model = build_model(TINY_RUN.model, TINY_RUN.in_channels).eval()
    path = save_checkpoint(tmp_path / "model.safetensors", model, TINY_RUN, {"note": "test"})
    return path, model


def test_checkpoint_round_trip_rebuilds_from_its_own_config(tmp_path: Path) -> None:
    path, model = _saved(tmp_path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.config == TINY_RUN
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(checkpoint.module(x), model(x))
    metadata = read_metadata(path)
    assert metadata["note"] == "test" and len(metadata["weights_sha256"]) == 64
    assert {"torch", "segmentation-models-pytorch"} <= set(metadata["libraries"])
    assert json.loads(path.with_suffix(".json").read_text()) == metadata


def test_tampered_checkpoint_is_refused(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256"):
        load_checkpoint(path)


@pytest.mark.parametrize("damage", ["missing", "truncated", "text"])
def test_broken_checkpoint_is_a_clean_error(tmp_path: Path, damage: str) -> None:
    path, _ = _saved(tmp_path)
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:5000])
    else:
        path.write_text("not a checkpoint")
    with pytest.raises(InputError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("encoder", ["inceptionv5", "tu-no_such_net"])
def test_an_unknown_encoder_is_a_config_error(encoder: str) -> None:
    from sparseg.errors import ConfigError

    with pytest.raises(ConfigError, match=f"^model.encoder: unknown encoder '{encoder}'"):
        build_model(ModelConfig(encoder=encoder), in_channels=3)


def test_a_checkpoint_with_an_impossible_config_is_named(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    edit_checkpoint_header(path, lambda m: m["config"].update(threshold=1.5), resign=True)
    expected = r"model.safetensors: the checkpoint's run config: threshold: must be at most 1"
    with pytest.raises(InputError, match=expected):
        load_checkpoint(path)


@pytest.mark.parametrize("field", ["threshold", "preprocessing.adc_range", "weights_sha256"])
def test_an_edited_header_is_refused_by_its_hash(tmp_path: Path, field: str) -> None:
    path, _ = _saved(tmp_path)
    changes = {"threshold": lambda m: m["config"].update(threshold=0.5),
               "preprocessing.adc_range": lambda m: m["config"]["preprocessing"].update(adc_range=[0, 3000]),
               "weights_sha256": lambda m: m.update(weights_sha256="0" * 64)}
    edit_checkpoint_header(path, changes[field])
    with pytest.raises(InputError, match="model.safetensors: the header was edited after the checkpoint was saved"):
        read_metadata(path)


def test_a_checkpoint_of_an_earlier_format_loads_saying_what_no_hash_covers(tmp_path: Path,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    path, model = _saved(tmp_path)
    identity = load_checkpoint(path).sha256
    edit_checkpoint_header(path, lambda m: (m.update(format="sparseg-checkpoint/1"), m.pop("checkpoint_sha256"),
                                            m.pop("probe")))
    loaded = load_checkpoint(path)
    assert loaded.sha256 == identity  # the same weights and config: the same network
    assert any("no hash covers its code_version, config" in r.getMessage() for r in caplog.records)


def test_header_fields_of_another_type_do_not_crash(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    edit_checkpoint_header(path, lambda m: m.update(data="synthetic", notice=["a", "b"]), resign=True)
    assert load_checkpoint(path).synthetic is False


def test_the_whole_header_is_covered_and_the_probe_recorded(tmp_path: Path) -> None:
    from sparseg.model import PROBE_SIDE, header_sha256, probe_input

    path, model = _saved(tmp_path)
    metadata = read_metadata(path)
    assert metadata["format"] == "sparseg-checkpoint/3" and metadata["checkpoint_sha256"] == header_sha256(metadata)
    config = load_checkpoint(path).config
    with torch.no_grad():
        expected = model.eval()(probe_input(config)).reshape(-1).numpy()
    assert len(metadata["probe"]["logits"]) == PROBE_SIDE**2
    np.testing.assert_allclose(metadata["probe"]["logits"], expected, rtol=1e-5, atol=1e-6)
    edit_checkpoint_header(path, lambda m: m.update(parameters=1))
    with pytest.raises(InputError, match="the header was edited after the checkpoint was saved"):
        read_metadata(path)


def test_an_earlier_format_checkpoint_with_an_edited_config_is_another_checkpoint(tmp_path: Path) -> None:
    """A /1 header (no hash covers it) with an edited threshold once kept the old masks as "done earlier"."""
    path, _ = _saved(tmp_path)
    original = load_checkpoint(path).sha256
    edit_checkpoint_header(path, lambda m: (m.update(format="sparseg-checkpoint/1"), m.pop("probe"),
                                            m["config"].update(threshold=0.05)))
    assert load_checkpoint(path).sha256 != original
