from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from sparseg.cases import OUTPUT_MASK, find_cases
from sparseg.cli import main
from sparseg.errors import InputError
from sparseg.io import read_geometry, read_image
from sparseg.prediction import default_weights, load_predictor, predict_batch, run_container_job
from sparseg.synth import SynthConfig, generate_case, write_input_case


@pytest.mark.parametrize("index", [0, 4])
def test_container_job_writes_a_binary_mask_on_the_adc_grid(tiny_checkpoint: Path, tmp_path: Path, index: int) -> None:
    case = write_input_case(tmp_path / "input", seed=8, index=index, config=SynthConfig.tiny())
    path = run_container_job(tmp_path / "input", tmp_path / "output", load_predictor([tiny_checkpoint], "cpu"))
    assert path == tmp_path / "output" / OUTPUT_MASK
    image = sitk.ReadImage(str(path))
    assert image.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayViewFromImage(image))) <= {0, 1}
    assert read_geometry(path).differences(case.geometry, tolerance=1e-9) == []


def test_oblique_case_keeps_its_direction(tiny_checkpoint: Path, tmp_path: Path) -> None:
    index = next(i for i in range(50) if generate_case(8, i, SynthConfig.tiny()).orientation == "oblique")
    case = write_input_case(tmp_path / "input", seed=8, index=index, config=SynthConfig.tiny())
    path = run_container_job(tmp_path / "input", tmp_path / "output", load_predictor([tiny_checkpoint], "cpu"))
    assert read_geometry(path).direction == pytest.approx(case.geometry.direction, abs=1e-9)


def test_batch_goes_on_past_a_bad_case(tiny_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    data = shutil.copytree(tiny_dataset, tmp_path / "data")
    bad = find_cases(data)[2]
    bad.z.write_bytes(b"not an image")
    summaries = predict_batch(data, tmp_path / "out", load_predictor([tiny_checkpoint], "cpu"), save_probabilities=True)
    status = {s.case_id: s.status for s in summaries}
    assert status.pop(bad.case_id) == "failed" and set(status.values()) == {"ok"}
    with open(tmp_path / "out" / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and "not a readable image" in next(r for r in rows if r["case_id"] == bad.case_id)["error"]
    assert not (tmp_path / "out" / f"{bad.case_id}_lesion.mha").exists()
    good = find_cases(data)[0]
    probabilities = read_image(tmp_path / "out" / f"{good.case_id}_probabilities.mha").array
    assert probabilities.shape == read_image(good.adc).array.shape


def test_predict_command_exit_codes(tiny_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    args = ["predict", "--data", str(tiny_dataset), "--out", str(tmp_path / "ok"), "--weights", str(tiny_checkpoint)]
    assert main(args) == 0
    data = shutil.copytree(tiny_dataset, tmp_path / "data")
    find_cases(data)[0].adc.write_bytes(b"")
    assert main(["predict", "--data", str(data), "--out", str(tmp_path / "bad"), "--weights", str(tiny_checkpoint)]) == 1


def test_uploaded_model_wins_over_baked_weights(tmp_path: Path) -> None:
    uploaded, baked = tmp_path / "opt-ml-model", tmp_path / "model_weights"
    baked.mkdir()
    (baked / "demo.safetensors").write_bytes(b"x")
    assert default_weights((uploaded, baked)) == [baked / "demo.safetensors"]
    uploaded.mkdir()
    (uploaded / "fold0.safetensors").write_bytes(b"x")
    assert default_weights((uploaded, baked)) == [uploaded / "fold0.safetensors"]
    with pytest.raises(InputError, match="no checkpoint"):
        default_weights((tmp_path / "none",))


def test_batch_overlays_are_pngs_of_every_case(tiny_dataset: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    predict_batch(tiny_dataset, tmp_path, load_predictor([tiny_checkpoint], "cpu"), overlays=True)
    pngs = sorted(tmp_path.glob("*_overlay.png"))
    assert [p.name.removesuffix("_overlay.png") for p in pngs] == [c.case_id for c in find_cases(tiny_dataset)]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert not list(tmp_path.glob(".partial-*"))
