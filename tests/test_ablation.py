from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from sparseg.ablation import run_ablation
from sparseg.config import LossConfig, ModelConfig, PreprocessingConfig, RunConfig, TrainConfig, to_dict

BASE = RunConfig(
    preprocessing=PreprocessingConfig(slice_size=(64, 64)),
    model=ModelConfig(encoder="timm-mobilenetv3_small_100", decoder_channels=(32, 32, 16, 16, 16), attention=None),
    train=TrainConfig(epochs=1, batch_size=8, folds=3, workers=0),
)


@pytest.mark.slow
def test_ablation_trains_each_config_and_tabulates(tiny_dataset: Path, tmp_path: Path) -> None:
    configs = []
    for name, config in {
        "dice-focal": replace(BASE, loss=LossConfig(name="dice_focal")),
        "two-channels": replace(BASE, preprocessing=replace(BASE.preprocessing, channels=("adc", "z"))),
    }.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(to_dict(config)))
        configs.append(path)
    table = run_ablation(tiny_dataset, configs, tmp_path / "runs", folds=[0], device_name="cpu")
    lines = table.splitlines()
    assert lines[0].startswith("| config |") and len(lines) == 6 and "BONBID-HIE 2024" in lines[5]
    assert lines[2].startswith("| dice-focal | 2 |") and lines[3].startswith("| two-channels | 2 |")
    assert (tmp_path / "runs" / "ablation.md").read_text() == table
    assert (tmp_path / "runs" / "two-channels" / "fold0" / "best.safetensors").is_file()
    assert not (tmp_path / "runs" / "two-channels" / "fold1").exists()
    out_of_fold = sorted((tmp_path / "runs" / "dice-focal" / "out_of_fold").glob("*_lesion.mha"))
    assert len(out_of_fold) == 2  # fold 0's held-out cases, scored on the masks its network wrote
