from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from sparseg.cases import find_cases
from sparseg.config import PreprocessingConfig
from sparseg.data import EpochSampler, SliceDataset, fingerprint, prepare_case, stratified_folds
from sparseg.errors import InputError

CONFIG = PreprocessingConfig(slice_size=(64, 64))


@pytest.fixture(scope="module")
def prepared(tiny_dataset: Path) -> list:
    return [prepare_case(c, CONFIG) for c in find_cases(tiny_dataset)]


def test_prepared_case_shapes(prepared: list) -> None:
    case = prepared[0]
    depth = case.targets.shape[0]
    assert case.slices.shape == (depth, 3, 64, 64) and case.slices.dtype == np.float16
    assert case.targets.shape == (depth, 1, 64, 64)
    assert 0 <= case.burden < 1


def test_dataset_serves_every_slice(prepared: list) -> None:
    dataset = SliceDataset(prepared)
    assert len(dataset) == sum(c.targets.shape[0] for c in prepared)
    image, target = dataset[3]
    assert image.shape == (3, 64, 64) and target.shape == (1, 64, 64)


def test_folds_are_a_stratified_partition(prepared: list) -> None:
    folds = stratified_folds(prepared, 3, seed=0)
    ids = [cid for fold in folds for cid in fold]
    assert sorted(ids) == sorted(c.case_id for c in prepared) and len(ids) == len(set(ids))
    assert [len(f) for f in folds] == [2, 2, 2]
    assert folds == stratified_folds(prepared, 3, seed=0)
    with pytest.raises(InputError):
        stratified_folds(prepared, 7, seed=0)


def test_sampler_shards_are_disjoint_equal_and_reproducible() -> None:
    shards = [EpochSampler(101, seed=3, rank=r, world=3) for r in range(3)]
    for sampler in shards:
        sampler.set_epoch(4)
    indices = [s.indices() for s in shards]
    assert all(len(i) == 33 == len(s) for i, s in zip(indices, shards))
    assert len(set().union(*map(set, indices))) == 99
    again = EpochSampler(101, seed=3, rank=1, world=3)
    again.set_epoch(4)
    assert again.indices() == indices[1]
    again.set_epoch(5)
    assert again.indices() != indices[1]
    assert len(EpochSampler(101, seed=3, per_epoch=40).indices()) == 40


def test_fingerprint_follows_the_files(tiny_dataset: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(tiny_dataset, tmp_path / "copy")
    before = fingerprint(find_cases(copy))
    assert before == fingerprint(find_cases(tiny_dataset))
    label = find_cases(copy)[0].label
    image = sitk.ReadImage(str(label))
    image[0, 0, 0] = 1
    sitk.WriteImage(image, str(label))
    assert fingerprint(find_cases(copy))["sha256"] != before["sha256"]


def test_fingerprint_tells_apart_files_of_the_same_name_in_other_folders(tiny_dataset: Path, tmp_path: Path) -> None:
    """A manifest's p01/adc.mha and p02/adc.mha are two files: changing either changes the data's hash."""
    from sparseg.cases import manifest_cases

    rows = ["case_id,adc,zadc,label"]
    for number, case in enumerate(find_cases(tiny_dataset)[:2], start=1):
        folder = tmp_path / f"p0{number}"
        folder.mkdir()
        for name, source in (("adc.mha", case.adc), ("zadc.mha", case.z), ("label.mha", case.label)):
            shutil.copyfile(source, folder / name)
        rows.append(f"p0{number},{folder.name}/adc.mha,{folder.name}/zadc.mha,{folder.name}/label.mha")
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("\n".join(rows) + "\n")
    before = fingerprint(manifest_cases(manifest))
    assert sorted(before["files_sha256"]) == ["p01/adc", "p01/label", "p01/zadc", "p02/adc", "p02/label", "p02/zadc"]
    for changed in ("p01", "p02"):
        image = sitk.ReadImage(str(tmp_path / changed / "adc.mha"))
        image[0, 0, 0] = 7
        sitk.WriteImage(image, str(tmp_path / changed / "adc.mha"))
        after = fingerprint(manifest_cases(manifest))
        assert after["sha256"] != before["sha256"], changed
        before = after


def test_label_on_another_grid_is_named(tiny_dataset: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(tiny_dataset, tmp_path / "copy")
    case = find_cases(copy)[0]
    image = sitk.ReadImage(str(case.label))
    image.SetSpacing([s * 2 for s in image.GetSpacing()])
    sitk.WriteImage(image, str(case.label))
    with pytest.raises(InputError, match=f"{case.label.name}: grid differs from the ADC"):
        prepare_case(case, CONFIG)


def test_synthetic_data_is_flagged(tiny_dataset: Path, tmp_path: Path) -> None:
    assert fingerprint(find_cases(tiny_dataset))["synthetic"] is True
    copy = shutil.copytree(tiny_dataset, tmp_path / "copy")
    (copy / "synth_manifest.csv").unlink()
    real = fingerprint(find_cases(copy))
    assert real["synthetic"] is False and "notice" not in real
