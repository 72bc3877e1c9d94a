"""The atlas folder: written all or nothing, every file and field checked when read, imported from published maps."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from sparseg.atlas import ATLAS_JSON, MAPS, _body_sha256, import_atlas, read_atlas, remove_staging, write_atlas
from sparseg.errors import InputError
from sparseg.io import PARTIAL_PREFIX, Geometry, read_image, write_image
from sparseg.paths import file_sha256

GRID = Geometry.from_array_order((6, 8, 7), (2.0, 2.0, 2.0), (-7.0, -8.0, -6.0), tuple(np.eye(3).ravel()))


def _maps() -> dict[str, np.ndarray]:
    mask = np.zeros(GRID.shape, np.uint8)
    mask[1:5, 2:6, 2:6] = 1
    mean = np.where(mask, 1300.0, 0.0).astype(np.float32)
    sd = np.where(mask, 120.0, 1.0).astype(np.float32)
    return {"mean": mean, "sd": sd, "mask": mask, "coverage": (mask * 12).astype(np.uint16)}


def _atlas(folder: Path) -> Path:
    write_atlas(folder, _maps(), GRID, {"kind": "test", "description": "a small test atlas", "made": {"cases": []}})
    return folder


def _forge(folder: Path, role: str, array: np.ndarray, geometry: Geometry = GRID) -> None:
    """Replace one map and re-sign atlas.json as a writer would: an atlas that is consistent, but wrong."""
    write_image(array, geometry, folder / MAPS[role])
    body = json.loads((folder / ATLAS_JSON).read_text())
    body["files"][role]["sha256"] = file_sha256(folder / MAPS[role])
    body["sha256"] = _body_sha256(body)
    (folder / ATLAS_JSON).write_text(json.dumps(body))


def test_an_atlas_reads_back_as_written(tmp_path: Path) -> None:
    atlas = read_atlas(_atlas(tmp_path / "atlas"))
    maps = _maps()
    np.testing.assert_array_equal(atlas.mean, maps["mean"])
    np.testing.assert_array_equal(atlas.mask, maps["mask"] > 0)
    np.testing.assert_array_equal(atlas.coverage, maps["coverage"])
    assert atlas.geometry.differences(GRID) == []
    assert atlas.description["files"]["sd"]["units"] == "ADC, 1e-6 mm^2/s"
    assert len(atlas.sha256) == 16 and atlas.sha256 in atlas.describe()
    assert sorted(p.name for p in (tmp_path / "atlas").iterdir()) == sorted([ATLAS_JSON, *MAPS.values()])
    assert not any(p.name.startswith(PARTIAL_PREFIX) for p in tmp_path.iterdir())


@pytest.mark.parametrize("damage, fragment", [
    (lambda f: (f / "sd.mha").unlink(), "sd.mha: is missing"),
    (lambda f: (f / "mean.mha").write_bytes((f / "mean.mha").read_bytes() + b"\0"), "mean.mha: changed since"),
    (lambda f: (f / ATLAS_JSON).write_text((f / ATLAS_JSON).read_text().replace("a small test atlas", "healthy")),
     "atlas.json: its fields were changed after it was written"),
    (lambda f: (f / ATLAS_JSON).unlink(), "atlas.json: is missing"),
    (lambda f: (f / ATLAS_JSON).write_text("{"), "not a readable atlas description"),
    (lambda f: ((f / "mask.mha").unlink(), os.mkfifo(f / "mask.mha")), "mask.mha: is not a regular file"),
])
def test_a_damaged_atlas_is_refused_naming_the_file(tmp_path: Path, damage, fragment: str) -> None:
    folder = _atlas(tmp_path / "atlas")
    damage(folder)
    with pytest.raises(InputError, match=fragment.replace("(", r"\(")):
        read_atlas(folder)


def test_a_file_or_a_missing_folder_given_as_the_atlas_is_refused_saying_which(tmp_path: Path) -> None:
    folder = _atlas(tmp_path / "atlas")
    with pytest.raises(InputError, match="mean.mha: is a file, not an atlas folder"):
        read_atlas(folder / "mean.mha")
    with pytest.raises(InputError, match="elsewhere: no such atlas folder"):
        read_atlas(tmp_path / "elsewhere")


def test_maps_on_other_grids_or_impossible_sds_are_refused(tmp_path: Path) -> None:
    folder = _atlas(tmp_path / "atlas")
    shifted = Geometry.from_array_order(GRID.shape, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), GRID.direction)
    _forge(folder, "sd", _maps()["sd"], shifted)
    with pytest.raises(InputError, match="sd.mha: not on the grid of mean.mha"):
        read_atlas(folder)
    zero = _maps()["sd"].copy()
    zero[2, 3, 3] = 0.0
    _forge(folder, "sd", zero)
    with pytest.raises(InputError, match="sd.mha: the SD is 0 or less at 1 voxels inside the mask"):
        read_atlas(folder)
    nan = _maps()["sd"].copy()
    nan[0, 0, 0] = np.nan  # outside the mask: a NaN is a broken file anywhere
    _forge(folder, "sd", nan)
    with pytest.raises(InputError, match="sd.mha: 1 voxels are not finite"):
        read_atlas(folder)
    _forge(folder, "sd", _maps()["sd"])
    _forge(folder, "mean", _maps()["mean"] * 1e-6)  # mm^2/s
    with pytest.raises(InputError, match="mean.mha: the atlas mean has a median brain ADC of .*mm\\^2/s"):
        read_atlas(folder)


def test_a_failed_write_leaves_no_atlas_and_keeps_the_earlier_one(tmp_path: Path) -> None:
    folder = _atlas(tmp_path / "atlas")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    bad = _maps()
    bad["sd"][2, 3, 3] = -1.0
    with pytest.raises(InputError, match="the SD is 0 or less"):
        write_atlas(folder, bad, GRID, {"kind": "test"})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["atlas"]
    with pytest.raises(InputError):
        write_atlas(tmp_path / "new", bad, GRID, {"kind": "test"})
    assert not (tmp_path / "new").exists() and [p.name for p in tmp_path.iterdir()] == ["atlas"]


def test_a_killed_write_s_staging_is_removed_by_the_next_and_nothing_else(tmp_path: Path) -> None:
    """Only a gone process's staging of this very destination goes: not a neighbour's (`--out b` beside a write into
    `a-b`), not a live process's, never one that holds an input."""
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, host = int(gone.stdout), socket.gethostname()
    stale = tmp_path / f"{PARTIAL_PREFIX}0123abcd-{host}-{dead}-new-atlas"
    shutil.copytree(_atlas(tmp_path / "first"), stale)
    kept = [f"{PARTIAL_PREFIX}0123abcd-{host}-{dead}-new-other", f"{PARTIAL_PREFIX}0123abcd-{host}-{dead}-new-a-atlas",
            f"{PARTIAL_PREFIX}0123abcd-{host}-{os.getpid()}-replaced-atlas", f"{PARTIAL_PREFIX}deadbeef-a-atlas"]
    for name in kept:
        (tmp_path / name).mkdir()
    holding = tmp_path / f"{PARTIAL_PREFIX}89abcdef-{host}-{dead}-replaced-atlas"
    shutil.copytree(_atlas(tmp_path / "second"), holding)
    remove_staging(tmp_path / "atlas", [holding / "sd.mha"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["first", "second", holding.name, *kept])


def test_published_maps_are_imported_in_any_format(tmp_path: Path) -> None:
    maps = _maps()
    paths = {role: write_image(maps[role], GRID, tmp_path / f"{role}.nii.gz") for role in ("mean", "sd", "mask")}
    atlas = import_atlas(paths["mean"], paths["sd"], paths["mask"], tmp_path / "atlas", "Ou et al. 2017, neonates")
    assert atlas.coverage is None and atlas.description["kind"] == "imported"
    assert atlas.description["made"]["sources"]["sd"]["sha256"] == file_sha256(paths["sd"])
    np.testing.assert_array_equal(atlas.mask, maps["mask"] > 0)
    without_mask = import_atlas(paths["mean"], paths["sd"], None, tmp_path / "atlas2")
    np.testing.assert_array_equal(without_mask.mask, maps["mean"] > 0)


def test_an_import_that_cannot_be_an_atlas_is_refused_before_writing(tmp_path: Path) -> None:
    maps = _maps()
    mean = write_image(maps["mean"], GRID, tmp_path / "mean.mha")
    sd = write_image(maps["sd"], GRID, tmp_path / "sd.mha")
    other = Geometry.from_array_order((6, 8, 8), (2.0, 2.0, 2.0), GRID.origin_xyz_mm, GRID.direction)
    wrong_grid = write_image(np.ones(other.shape, np.uint8), other, tmp_path / "mask.mha")
    negative = write_image(np.where(maps["mask"], -5.0, 1.0).astype(np.float32), GRID, tmp_path / "negative.mha")
    small = write_image(maps["mean"] * 1e-3, GRID, tmp_path / "small.mha")
    negated = -maps["mean"]
    negated[2, 3, 3] = 1000.0  # one voxel of ADC: the rest of the mean is not
    negative_mean = write_image(negated, GRID, tmp_path / "negated.mha")
    mask = write_image(maps["mask"], GRID, tmp_path / "brain.mha")
    tiny = write_image(np.where(maps["mask"], 1e-20, 1.0).astype(np.float32), GRID, tmp_path / "tiny.mha")
    huge = write_image(np.where(maps["mask"], 1e9, 1.0).astype(np.float32), GRID, tmp_path / "huge.mha")
    cases = [((mean, sd, wrong_grid), "mask.mha: not on the grid of the mean mean.mha"),
             ((mean, negative, None), "negative.mha: the SD is 0 or less at 64 voxels"),
             ((small, sd, None), "small.mha: the atlas mean has a median brain ADC of 1.3"),
             ((negative_mean, sd, mask), "negated.mha: the atlas mean is 0 or less at 98.4% of the voxels"),
             ((mean, tiny, None), "tiny.mha: the SD is 7.69e-24 times the mean .* outside 0.02-1"),
             ((mean, huge, None), "huge.mha: the SD is 7.69e\\+05 times the mean"),
             ((mean, sd, None, tmp_path), "is an input"),
             ((mean, sd, None, tmp_path / "sd.mha"), "is an input")]
    for arguments, fragment in cases:
        out = arguments[3] if len(arguments) > 3 else tmp_path / "atlas"
        with pytest.raises(InputError, match=fragment):
            import_atlas(*arguments[:3], out)
        assert not (tmp_path / "atlas").exists()
    assert read_image(sd).array.max() == 120.0  # no input was touched


def test_an_atlas_goes_into_a_new_folder_or_over_an_atlas(tmp_path: Path) -> None:
    maps = _maps()
    mean = write_image(maps["mean"], GRID, tmp_path / "in" / "mean.mha")
    sd = write_image(maps["sd"], GRID, tmp_path / "in" / "sd.mha")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds other files \\(notes.txt\\)"):
        import_atlas(mean, sd, None, tmp_path / "busy")
    (tmp_path / "looks").mkdir()  # atlas names, not an atlas: a user's own mean.mha
    shutil.copy(mean, tmp_path / "looks" / "mean.mha")
    (tmp_path / "looks" / ATLAS_JSON).write_text('{"format": "mine"}')
    with pytest.raises(InputError, match="looks: holds files of an atlas's names but is not an atlas"):
        import_atlas(mean, sd, None, tmp_path / "looks")
    assert (tmp_path / "looks" / "mean.mha").read_bytes() == mean.read_bytes()
    copied = _atlas(tmp_path / "real")  # a real atlas.json beside someone's own mean.mha: not that atlas either
    (copied / "mean.mha").write_bytes(b"my own mean")
    with pytest.raises(InputError, match="real: holds files of an atlas's names but is not an atlas .*mean.mha: "
                                         "changed since"):
        import_atlas(mean, sd, None, copied)
    assert (copied / "mean.mha").read_bytes() == b"my own mean"
    first = import_atlas(mean, sd, None, tmp_path / "atlas", "first")
    second = import_atlas(mean, sd, None, tmp_path / "atlas", "second")
    assert first.sha256 != second.sha256 and read_atlas(tmp_path / "atlas").description["description"] == "second"
