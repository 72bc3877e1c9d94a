from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from sparseg.cases import find_cases
from sparseg.config import ModelConfig, PreprocessingConfig, RunConfig, TrainConfig, run_config_from_dict, to_dict
from sparseg.errors import InputError
from sparseg.model import load_checkpoint, read_metadata
from sparseg.train import BEST, CONFIG, FINAL, HISTORY, SKIPPED, SPLIT, STATE, train

TINY = RunConfig(
    preprocessing=PreprocessingConfig(slice_size=(64, 64)),
    model=ModelConfig(encoder="timm-mobilenetv3_small_100", decoder_channels=(32, 32, 16, 16, 16)),
    train=TrainConfig(epochs=2, batch_size=8, folds=3, workers=0, learning_rate=1e-3),
)


def _state(run: Path) -> dict:
    return torch.load(run / STATE, weights_only=True)["model"]


@pytest.mark.slow
def test_a_run_leaves_a_loadable_self_describing_checkpoint(tiny_dataset: Path, tmp_path: Path) -> None:
    result = train(tiny_dataset, TINY, tmp_path / "run", fold=1, progress=False)
    run = tmp_path / "run"
    assert result["epochs"] == 2
    for name in (BEST, FINAL, STATE, HISTORY, SPLIT, CONFIG, "losses.png", "validation.png", "lesion_fraction.png"):
        assert (run / name).is_file(), name
    with open(run / HISTORY) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"train_tversky", "train_log_hausdorff", "train_focal", "val_dsc", "val_predicted_fraction"} <= set(rows[0])
    assert {"val_masd", "val_nsd", "val_masd_physical", "val_nsd_physical", "val_masd_2023", "val_nsd_2023"} <= set(
        rows[0])
    split = json.loads((run / "split.json").read_text())
    metadata = read_metadata(run / BEST)
    assert metadata["fold"] == 1 and metadata["validation"]["all"]["n"] == len(split["folds"][1])
    assert metadata["split"]["held_out"] == split["folds"][1]  # what `sparseg quantize` holds out
    assert sorted(metadata["split"]["training"] + split["folds"][1]) == sorted(metadata["data"]["case_ids"])
    assert len(metadata["data"]["case_ids"]) == 6 and run_config_from_dict(metadata["config"]) == TINY
    assert "(z, x, y)" in metadata["validation_scoring"]["masd, nsd"]
    checkpoint = load_checkpoint(run / BEST)
    assert checkpoint.config == TINY


@pytest.mark.slow
def test_resume_continues_exactly(tiny_dataset: Path, tmp_path: Path) -> None:
    train(tiny_dataset, TINY, tmp_path / "straight", progress=False)
    one_epoch = replace(TINY, train=replace(TINY.train, epochs=1))
    train(tiny_dataset, one_epoch, tmp_path / "resumed", progress=False)
    with pytest.raises(InputError, match="--resume"):
        train(tiny_dataset, TINY, tmp_path / "resumed", progress=False)
    with pytest.raises(InputError, match=r"another config \(train.epochs 1 there, 2 now\)"):
        train(tiny_dataset, TINY, tmp_path / "resumed", resume=True, progress=False)
    train(tiny_dataset, TINY, tmp_path / "resumed", resume=True, progress=False, allow_config_change=True)
    assert json.loads((tmp_path / "resumed" / CONFIG).read_text())["train"]["epochs"] == 2
    straight, resumed = _state(tmp_path / "straight"), _state(tmp_path / "resumed")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    with open(tmp_path / "resumed" / HISTORY) as handle:
        assert [r["epoch"] for r in csv.DictReader(handle)] == ["1", "2"]


@pytest.mark.slow
def test_two_gloo_processes_see_disjoint_slices(tiny_dataset: Path, tmp_path: Path) -> None:
    config = replace(TINY, train=replace(TINY.train, epochs=1, record_samples=True))
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(to_dict(config)))
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",  # a free port
         "-m", "sparseg", "train", "--data", str(tiny_dataset), "--config", str(config_path), "--out", str(run),
         "--device", "cpu"],
        check=True, env=env, capture_output=True, timeout=600,
    )
    rank0 = json.loads((run / "samples_rank0_epoch0.json").read_text())
    rank1 = json.loads((run / "samples_rank1_epoch0.json").read_text())
    assert rank0 and len(rank0) == len(rank1) and not set(rank0) & set(rank1)
    assert load_checkpoint(run / BEST).config == config


@pytest.mark.slow
def test_bad_cases_are_all_named_before_training_or_skipped(tiny_dataset: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    cases = find_cases(data)
    cases[0].adc.write_bytes(b"")
    cases[3].label.write_text("not an image")
    with pytest.raises(InputError) as error:
        train(data, TINY, tmp_path / "stopped", progress=False)
    message = str(error.value)
    assert "2 of 6 cases cannot be used" in message and cases[0].adc.name in message and cases[3].label.name in message
    assert not (tmp_path / "stopped" / STATE).exists()
    result = train(data, TINY, tmp_path / "skipped", progress=False, skip_bad=True)
    with open(tmp_path / "skipped" / SKIPPED) as handle:
        assert sorted(r["case_id"] for r in csv.DictReader(handle)) == sorted([cases[0].case_id, cases[3].case_id])
    assert len(read_metadata(Path(result["checkpoint"]))["data"]["case_ids"]) == 4


@pytest.mark.slow
def test_training_killed_after_an_epoch_resumes_to_the_planned_epochs(tiny_dataset: Path, tmp_path: Path) -> None:
    """Killed right after epoch 1's state and plots were saved (`tests/interrupt.py`, no polling), a run resumes
    with epoch 2 and ends where a run never stopped would."""
    import signal

    config = tmp_path / "three.json"
    config.write_text(json.dumps(to_dict(replace(TINY, train=replace(TINY.train, epochs=3)))))
    run = tmp_path / "run"
    arguments = ["train", "--data", str(tiny_dataset), "--config", str(config), "--out", str(run), "--device", "cpu"]
    interrupt = Path(__file__).resolve().parent / "interrupt.py"
    killed = subprocess.run([sys.executable, str(interrupt), "sparseg.train:plot_history", "1", "after", *arguments],
                            capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert torch.load(run / STATE, weights_only=True)["epoch"] == 1 and not (run / FINAL).exists()
    assert subprocess.run([sys.executable, "-m", "sparseg", *arguments, "--resume"],
                          capture_output=True).returncode == 0
    with open(run / HISTORY) as handle:
        assert [r["epoch"] for r in csv.DictReader(handle)] == ["1", "2", "3"]
    assert load_checkpoint(run / BEST).config.train.epochs == 3
    assert read_metadata(run / FINAL)["epoch"] == 3


@pytest.mark.slow
def test_validation_masks_are_what_predict_writes(tiny_dataset: Path, tmp_path: Path) -> None:
    """The trainer's validation segments through the inference path: its masks for the held-out cases equal
    `sparseg predict`'s with the saved weights, and the scores it records are those of `sparseg evaluate`."""
    from sparseg.cli import main
    from sparseg.evaluation import evaluate, summarise
    from sparseg.io import read_mask
    from sparseg.outputs import prediction_name
    from sparseg.train import Trainer

    one_epoch = replace(TINY, train=replace(TINY.train, epochs=1))
    trainer = Trainer.set_up(tiny_dataset, one_epoch, tmp_path / "run", fold=1, progress=False)
    means = trainer.train_epoch(0)
    assert set(means) == {"loss", "tversky", "log_hausdorff", "focal"} and all(v > 0 for v in means.values())
    validation = trainer.validate()
    trainer.finish_epoch(0, means, validation, seconds=1.0)
    held_out = json.loads((tmp_path / "run" / "split.json").read_text())["folds"][1]
    assert sorted(validation.masks) == held_out
    assert any(mask.any() for mask in validation.masks.values())

    predicted = tmp_path / "predicted"
    assert main(["predict", "--data", str(tiny_dataset), "--out", str(predicted), "--weights",
                 str(tmp_path / "run" / BEST), "--device", "cpu"]) == 0
    for case_id, mask in validation.masks.items():
        np.testing.assert_array_equal(read_mask(predicted / prediction_name(case_id))[0], mask)
    rows = [row for row in evaluate(tiny_dataset, predicted).rows if row.case_id in held_out]
    recorded, scored = read_metadata(tmp_path / "run" / BEST)["validation"], summarise(rows)
    assert recorded.keys() == scored.keys()
    for group in scored:
        assert recorded[group] == pytest.approx(scored[group], nan_ok=True)


def test_one_step_updates_the_weights_and_reports_each_term() -> None:
    from sparseg.runtime import training_runtime
    from sparseg.train import Optimisation

    optimisation = Optimisation.build(TINY, training_runtime("cpu"))
    before = {k: v.clone() for k, v in optimisation.model.state_dict().items()}
    images = torch.rand(4, TINY.in_channels, *TINY.preprocessing.slice_size)
    targets = (torch.rand(4, 1, *TINY.preprocessing.slice_size) > 0.9).float()
    values = optimisation.step(images, targets)
    assert set(values) == {"loss", "tversky", "log_hausdorff", "focal"}
    expected = 1.5 * values["tversky"] + 2.0 * values["log_hausdorff"] + 2.0 * values["focal"]
    assert float(values["loss"]) == pytest.approx(float(expected), rel=1e-6)
    after = optimisation.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if after[k].is_floating_point())


def test_set_up_checks_the_fold_before_reading_or_writing(tiny_dataset: Path, tmp_path: Path) -> None:
    from sparseg.train import Trainer

    with pytest.raises(InputError, match="--fold 3: expected 0 to 2"):
        Trainer.set_up(tiny_dataset, TINY, tmp_path / "run", fold=3)
    assert not (tmp_path / "run").exists()


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def one_epoch_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run of TINY (fold 0). Read-only: copy before resuming."""
    run = tmp_path_factory.mktemp("one-epoch") / "run"
    train(tiny_dataset, replace(TINY, train=replace(TINY.train, epochs=1)), run, progress=False)
    return run


@pytest.mark.parametrize("change, named", [
    (lambda c: replace(c, train=replace(c.train, learning_rate=1e-2)), "train.learning_rate 0.001 there, 0.01 now"),
    (lambda c: replace(c, preprocessing=replace(c.preprocessing, slice_size=(96, 96))),
     "preprocessing.slice_size [64, 64] there, [96, 96] now"),
    (lambda c: replace(c, preprocessing=replace(c.preprocessing, channels=("adc", "z"))),
     "preprocessing.channels"),
])
def test_resume_refuses_another_config_and_writes_nothing(tiny_dataset: Path, one_epoch_run: Path, tmp_path: Path,
                                                          change, named: str) -> None:
    """A changed learning rate or slice size once ran silently while config.json said otherwise."""
    run = shutil.copytree(one_epoch_run, tmp_path / "run")
    before = _files(run)
    config = change(replace(TINY, train=replace(TINY.train, epochs=1)))
    with pytest.raises(InputError, match=f"config.json: the run was made with another config .*{re.escape(named)}"):
        train(tiny_dataset, config, run, resume=True, progress=False)
    assert _files(run) == before


def test_resume_with_a_network_of_another_shape_is_a_clean_error(tiny_dataset: Path, one_epoch_run: Path,
                                                                  tmp_path: Path) -> None:
    """Changed channels gave a traceback after config.json had been overwritten."""
    run = shutil.copytree(one_epoch_run, tmp_path / "run")
    before = _files(run)
    config = replace(TINY, preprocessing=replace(TINY.preprocessing, channels=("adc", "z")))
    with pytest.raises(InputError, match="last_state.pt: the saved network does not fit the config's"):
        train(tiny_dataset, config, run, resume=True, progress=False, allow_config_change=True)
    assert _files(run) == before


def test_resume_without_a_run_is_refused(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    from sparseg.cli import main

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(to_dict(TINY)))
    (tmp_path / "empty").mkdir()
    code = main(["train", "--data", str(tiny_dataset), "--config", str(config), "--out", str(tmp_path / "empty"),
                 "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "empty: nothing to resume (no last_state.pt)" in err
    assert list((tmp_path / "empty").iterdir()) == []


def test_resume_on_other_cases_is_refused(tiny_dataset: Path, one_epoch_run: Path, tmp_path: Path) -> None:
    run = shutil.copytree(one_epoch_run, tmp_path / "run")
    data = shutil.copytree(tiny_dataset, tmp_path / "data")
    removed = find_cases(data)[0]
    for path in (removed.adc, removed.z, removed.label):
        path.unlink()
    with pytest.raises(InputError, match="split.json: the cases or the fold differ"):
        train(data, replace(TINY, train=replace(TINY.train, epochs=1)), run, resume=True, progress=False)


def test_a_damaged_or_incomplete_state_is_refused(tiny_dataset: Path, one_epoch_run: Path, tmp_path: Path) -> None:
    """torch.load does not check the zip CRCs: flipped bytes in a tensor once resumed into garbage weights."""
    config = replace(TINY, train=replace(TINY.train, epochs=1))
    run = shutil.copytree(one_epoch_run, tmp_path / "damaged")
    state = bytearray((run / STATE).read_bytes())
    middle = len(state) // 2
    state[middle : middle + 64] = bytes(b ^ 0xFF for b in state[middle : middle + 64])
    (run / STATE).write_bytes(bytes(state))
    with pytest.raises(InputError, match="last_state.pt: training state (is damaged|cannot be read)"):
        train(tiny_dataset, config, run, resume=True, progress=False)
    run = shutil.copytree(one_epoch_run, tmp_path / "incomplete")
    payload = torch.load(run / STATE, weights_only=True)
    del payload["epoch"]
    torch.save(payload, run / STATE)
    with pytest.raises(InputError, match="last_state.pt: training state is incomplete"):
        train(tiny_dataset, config, run, resume=True, progress=False)


def test_resume_on_changed_files_is_refused(tiny_dataset: Path, one_epoch_run: Path, tmp_path: Path) -> None:
    from sparseg.io import write_image

    run = shutil.copytree(one_epoch_run, tmp_path / "run")
    data = shutil.copytree(tiny_dataset, tmp_path / "data")
    changed = find_cases(data)[0]
    from sparseg.io import read_image

    volume = read_image(changed.adc)
    write_image(volume.array * 1.01, volume.geometry, changed.adc)
    with pytest.raises(InputError, match="split.json: the cases' files changed since the run began"):
        train(data, replace(TINY, train=replace(TINY.train, epochs=1)), run, resume=True, progress=False)


def test_resume_of_a_run_whose_data_hash_is_of_the_old_kind_says_it_cannot_check(
        tiny_dataset: Path, one_epoch_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = shutil.copytree(one_epoch_run, tmp_path / "run")
    split = json.loads((run / SPLIT).read_text())
    split["data_sha256"], split["data_fingerprint"] = "0" * 64, None  # begun by an earlier SPARSeg
    (run / SPLIT).write_text(json.dumps(split))
    train(tiny_dataset, replace(TINY, train=replace(TINY.train, epochs=1)), run, resume=True, progress=False)
    assert "hashed the files by name alone" in caplog.text


def test_resume_without_the_run_s_split_is_refused(tiny_dataset: Path, one_epoch_run: Path, tmp_path: Path) -> None:
    """With split.json gone, a resume on changed data once went on and recorded the new data's fingerprint."""
    run = shutil.copytree(one_epoch_run, tmp_path / "run")
    (run / SPLIT).unlink()
    with pytest.raises(InputError, match="split.json: missing or unreadable, so the split and the data"):
        train(tiny_dataset, replace(TINY, train=replace(TINY.train, epochs=2)), run, resume=True, progress=False,
              allow_config_change=True)


@pytest.mark.slow
def test_seed_changes_the_run_and_keeps_the_split(tiny_dataset: Path, tmp_path: Path) -> None:
    """`sparseg train --seed N`: other initial weights and slices, the config's folds; the seed in the checkpoint's
    config (covered by its hash). The same seed twice gives the same weights (test_resume_continues_exactly)."""
    from sparseg.cli import main

    one_epoch = replace(TINY, train=replace(TINY.train, epochs=1))
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(to_dict(one_epoch)))
    common = ["train", "--data", str(tiny_dataset), "--config", str(config), "--device", "cpu"]
    assert main([*common, "--out", str(tmp_path / "seed0")]) == 0
    assert main([*common, "--out", str(tmp_path / "seed3"), "--seed", "3"]) == 0
    splits = [json.loads((tmp_path / run / SPLIT).read_text()) for run in ("seed0", "seed3")]
    assert splits[0]["folds"] == splits[1]["folds"] and splits[1]["seed"] == 0
    saved = read_metadata(tmp_path / "seed3" / BEST)["config"]["train"]
    assert (saved["seed"], saved["split_seed"]) == (3, 0)
    first, other = _state(tmp_path / "seed0"), _state(tmp_path / "seed3")
    assert not all(torch.equal(first[k], other[k]) for k in first)
    assert main([*common, "--out", str(tmp_path / "bad"), "--seed", "-1"]) == 2
