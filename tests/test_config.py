from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sparseg.cli import main
from sparseg.config import (
    CHANNELS,
    EvaluationConfig,
    InferenceConfig,
    ModelConfig,
    PreprocessingConfig,
    RunConfig,
    TrainConfig,
    load_run_config,
    run_config_from_dict,
    to_dict,
)
from sparseg.errors import ConfigError, InputError
from sparseg.losses import build_loss
from sparseg.model import build_model

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "resources" / "configs").glob("*.json"))


def test_there_are_the_paper_demo_and_ablation_configs() -> None:
    names = {path.stem for path in CONFIGS}
    assert {"paper", "demo", "table2-tlhf", "table2-tlhf-scse", "table2-dice-focal"} <= names
    assert sum(name.startswith("table1-") for name in names) == 8


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_loads_and_builds(path: Path) -> None:
    config = load_run_config(path)
    assert config.description
    with torch.device("meta"):  # the real architecture, no memory and no time for the weights
        model = build_model(config.model, config.in_channels)
    logits = model(torch.empty(2, config.in_channels, *config.preprocessing.slice_size, device="meta"))
    assert logits.shape == (2, 1, *config.preprocessing.slice_size)
    assert set(build_loss(config.loss).terms(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32)))
    assert run_config_from_dict(to_dict(config)) == config  # what a checkpoint stores rebuilds the same config


def test_the_paper_config_is_the_defaults() -> None:
    config = load_run_config(next(p for p in CONFIGS if p.stem == "paper"))
    assert replace(config, description="") == RunConfig()
    assert config.threshold == 0.35 and config.preprocessing.channels == CHANNELS
    assert (config.model.architecture, config.model.encoder, config.model.attention) == ("UnetPlusPlus", "inceptionv4",
                                                                                         "scse")


# (config file content, the field the error must name, a fragment of the problem)
BAD_FIELDS = {
    "unknown channel": ({"preprocessing": {"channels": ["adc", "zz"]}}, "preprocessing.channels", "'zz'"),
    "repeated channel": ({"preprocessing": {"channels": ["adc", "adc"]}}, "preprocessing.channels", "repeated"),
    "no channels": ({"preprocessing": {"channels": []}}, "preprocessing.channels", "list of channel names"),
    "slice not a multiple of 32": ({"preprocessing": {"slice_size": [100, 100]}}, "preprocessing.slice_size",
                                   "multiples of 32"),
    "empty ADC range": ({"preprocessing": {"adc_range": [3400, 0]}}, "preprocessing.adc_range", "below high"),
    "init typo": ({"model": {"init": "xavier"}}, "model.init", "'xavier'"),
    "unknown attention": ({"model": {"attention": "cbam"}}, "model.attention", "'cbam'"),
    "unknown architecture": ({"model": {"architecture": "UNet3D"}}, "model.architecture", "'UNet3D'"),
    "four decoder stages": ({"model": {"decoder_channels": [64, 32, 16, 8]}}, "model.decoder_channels", "five"),
    "unknown loss": ({"loss": {"name": "dice"}}, "loss.name", "'dice'"),
    "negative weight": ({"loss": {"tversky_weight": -1}}, "loss.tversky_weight", "at least 0"),
    "focal alpha above 1": ({"loss": {"focal_alpha": 1.5}}, "loss.focal_alpha", "at most 1"),
    "zero epochs": ({"train": {"epochs": 0}}, "train.epochs", "at least 1"),
    "zero batch": ({"train": {"batch_size": 0}}, "train.batch_size", "at least 1"),
    "fractional batch": ({"train": {"batch_size": 2.5}}, "train.batch_size", "whole number"),
    "one fold": ({"train": {"folds": 1}}, "train.folds", "at least 2"),
    "boolean as text": ({"train": {"augment": "False"}}, "train.augment", "true or false"),
    "learning rate 0": ({"train": {"learning_rate": 0}}, "train.learning_rate", "above 0"),
    "unknown train key": ({"train": {"epoch": 3}}, "train.epoch", "unknown field"),
    "unknown section": ({"optimizer": {}}, "optimizer", "unknown section"),
    "threshold 1": ({"threshold": 1.0}, "threshold", "below 1"),
    "threshold as text": ({"threshold": "0.35"}, "threshold", "expected a number"),
}


@pytest.mark.parametrize("content, field, problem", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_a_bad_field_is_named_in_one_line_with_the_file(tmp_path: Path, content: dict, field: str,
                                                        problem: str) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(content))
    with pytest.raises(InputError) as error:
        load_run_config(path)
    message = str(error.value)
    assert message.startswith(f"{path}: {field}: ") and problem in message and "\n" not in message


def test_unreadable_config_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such config file"):
        load_run_config(tmp_path / "none.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InputError, match="broken.json: not a readable JSON run config"):
        load_run_config(tmp_path / "broken.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(InputError, match="list.json: expected a JSON object"):
        load_run_config(tmp_path / "list.json")


def test_configs_are_checked_when_built_in_code_too() -> None:
    with pytest.raises(ConfigError, match="^epochs: must be at least 1"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="^channels: unknown value 'adc2'"):
        replace(PreprocessingConfig(), channels=("adc2",))
    with pytest.raises(ConfigError, match="^nsd_tolerance_mm: must be above 0"):
        EvaluationConfig(nsd_tolerance_mm=-1.0)
    with pytest.raises(ConfigError, match="^batch_size: must be at least 0"):
        InferenceConfig(batch_size=-1)
    with pytest.raises(ConfigError, match="^init"):
        ModelConfig(init="xavier")


def test_train_refuses_a_bad_config_before_reading_data_or_writing(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"loss": {"name": "focal"}}))
    out = tmp_path / "run"
    code = main(["train", "--data", str(tmp_path / "no-such-data"), "--config", str(config), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"sparseg: error: {config}: loss.name: unknown value 'focal'")
    assert not out.exists()


def test_evaluate_refuses_a_negative_tolerance(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["evaluate", "--gt", str(tmp_path), "--pred", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--tolerance-mm", "-1"])
    assert code == 2 and "nsd_tolerance_mm: must be above 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_unknown_encoder_is_named_with_the_file_before_any_data_is_read(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"model": {"encoder": "inceptionv5"}}))
    out = tmp_path / "run"
    code = main(["train", "--data", str(tmp_path / "no-such-data"), "--config", str(config), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"sparseg: error: {config}: model.encoder: unknown encoder 'inceptionv5'")
    assert not out.exists()
