"""Z_ADC from an ADC map and an atlas: the formula, the checks of the ADC, the registration against the truth of a
synthetic population, and a folder of cases."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from sparseg.atlas import read_atlas
from sparseg.cases import find_cases
from sparseg.config import ZmapConfig
from sparseg.errors import InputError
from sparseg.io import Geometry, Volume, read_image, write_image
from sparseg.synth import GENERATING_ATLAS
from sparseg.zmap import ZMAP_SUMMARY, ZmapMaker, check_adc, compute_zmap, write_zmaps, z_scores

from conftest import FAST_ZMAP

GRID = Geometry.from_array_order((8, 40, 40), (4.0, 2.0, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))


def _ball(value: float = 1300.0) -> np.ndarray:
    z, y, x = np.ogrid[:8, :40, :40]
    inside = ((z - 3.5) / 3.6) ** 2 + ((y - 19.5) / 14) ** 2 + ((x - 19.5) / 12) ** 2 < 1
    return np.where(inside, value, 0.0).astype(np.float32)


def _levels(root: Path) -> dict[str, float]:
    with open(root / "synth_manifest.csv") as handle:
        return {row["case_id"]: float(row["adc_level"]) for row in csv.DictReader(handle)}


def test_z_is_the_smoothed_adc_against_the_norm_clipped_and_zero_outside() -> None:
    adc = _ball(1300.0)
    brain = adc > 0
    mean, sd = np.full(adc.shape, 1000.0, np.float32), np.full(adc.shape, 100.0, np.float32)
    z = z_scores(adc, mean, sd, brain, GRID.spacing_mm)
    # a uniform brain stays uniform when smoothed within itself, to its edge: (1300 - 1000) / 100 = 3
    np.testing.assert_allclose(z[brain], 3.0, atol=1e-4)
    assert np.all(z[~brain] == 0)
    far = z_scores(adc * 10, mean, sd, brain, GRID.spacing_mm)
    assert far.max() == ZmapConfig().clip
    only = z_scores(adc, mean, sd, brain, GRID.spacing_mm, where=brain & (np.arange(40) < 20))
    assert np.all(only[:, :, 20:] == 0) and np.allclose(only[brain & (np.arange(40) < 20)], 3.0, atol=1e-4)


def test_an_adc_a_z_adc_cannot_be_made_of_is_refused_saying_why() -> None:
    adc = _ball()
    assert check_adc(Volume(adc, GRID, Path("ok.mha"))).sum() == np.count_nonzero(adc)
    cases = {
        "empty.mha": (np.zeros_like(adc), "is empty \\(no voxel above 0: no brain\\)"),
        "si.mha": (adc * 1e-6, "in mm\\^2/s or 1e-3 mm\\^2/s"),
        "milli.mha": (adc * 1e-3, "in mm\\^2/s or 1e-3 mm\\^2/s"),
        "frame.mha": (np.full(adc.shape, 1300.0, np.float32), "not skull-stripped\\? tissue fills 100% of the slices"),
    }
    scalp = adc.copy()
    z, y, x = np.ogrid[:8, :40, :40]
    ring = (((y - 19.5) / 18.5) ** 2 + ((x - 19.5) / 17) ** 2 < 1) & (adc == 0)
    scalp[np.broadcast_to(ring, adc.shape) & (np.arange(8)[:, None, None] < 8)] = 250.0  # fat and bone around
    cases["scalp.mha"] = (scalp, "not skull-stripped\\? its outer 4 mm are 0.")
    zmap = np.where(adc > 0, np.linspace(-6, 4, adc.size).reshape(adc.shape), 0).astype(np.float32)
    cases["zadc.mha"] = (zmap, "of its non-zero values are negative, all within \\+-10: a Z_ADC map given as ADC")
    for name, (array, fragment) in cases.items():
        with pytest.raises(InputError, match=f"^{name}: .*{fragment}"):
            check_adc(Volume(array, GRID, Path(name)))
    # the same ball with a spacing ten times too large (centimetres written as millimetres) spans 280 x 240 x 288 mm
    wide = Geometry.from_array_order((8, 40, 40), (40.0, 20.0, 20.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    with pytest.raises(InputError, match="^wide.mha: its tissue spans .* mm \\(x, y, z\\), more than a brain "
                                         "\\(30-250 mm"):
        check_adc(Volume(adc, wide, Path("wide.mha")))
    # ... and a hundred times too small (0.02 mm voxels): no brain is 0.6 mm wide, and ITK's registration would fail
    narrow = Geometry.from_array_order((8, 40, 40), (0.04, 0.02, 0.02), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    with pytest.raises(InputError, match="^narrow.mha: its tissue spans .* less than a brain"):
        check_adc(Volume(adc, narrow, Path("narrow.mha")))


def test_the_generating_atlas_gives_back_the_given_z_adc(population_dataset: Path) -> None:
    """Registration against the truth: the population's own atlas, registered onto each case, gives its given
    Z_ADC back closely, and the ADC scale undoes the case's global level."""
    atlas = read_atlas(population_dataset / GENERATING_ATLAS)
    levels = _levels(population_dataset)
    correlations = []
    for case in find_cases(population_dataset)[10:13]:
        adc, given = read_image(case.adc), read_image(case.z).array
        result = compute_zmap(adc, atlas, FAST_ZMAP)
        brain = adc.array > 0
        assert result.z.shape == adc.array.shape and np.all(result.z[~brain] == 0)
        assert result.overlap > 0.9 and result.covered > 0.9 and result.flags == []
        assert result.scale * levels[case.case_id] == pytest.approx(1.0, abs=0.06)
        correlations.append(np.corrcoef(result.z[brain], given[brain])[0, 1])
        difference = np.abs(result.z - given)[brain].mean()
        misaligned = np.abs(np.roll(result.z, 7, axis=2) - given)[brain].mean()
        assert difference < 0.85 * misaligned, (difference, misaligned)  # it is the case's own Z_ADC, in place
    assert min(correlations) > 0.5 and np.mean(correlations) > 0.6, correlations


def test_the_same_adc_gives_the_same_z_adc(population_dataset: Path) -> None:
    atlas = read_atlas(population_dataset / GENERATING_ATLAS)
    adc = read_image(find_cases(population_dataset)[11].adc)
    first, second = compute_zmap(adc, atlas, FAST_ZMAP), compute_zmap(adc, atlas, FAST_ZMAP)
    np.testing.assert_array_equal(first.z, second.z)


def test_a_doubtful_registration_is_flagged_and_a_failed_one_refused(population_dataset: Path) -> None:
    atlas = read_atlas(population_dataset / GENERATING_ATLAS)
    adc = read_image(find_cases(population_dataset)[12].adc)
    doubtful = compute_zmap(adc, atlas, dataclasses.replace(FAST_ZMAP, overlap_flag=0.999))
    assert doubtful.flags[0].startswith(f"atlas registration: look (overlap {doubtful.overlap:.2f})")
    with pytest.raises(InputError, match=f"^{adc.path}: the atlas did not register onto this brain .*below 0.999"):
        compute_zmap(adc, atlas, dataclasses.replace(FAST_ZMAP, overlap_flag=0.9995, overlap_refuse=0.999))


def test_an_atlas_at_another_level_than_the_adc_is_refused_and_a_saturated_z_adc_flagged(
        population_dataset: Path) -> None:
    """An atlas five times the ADC's level would scale the ADC by 5 (another map or unit): refused. An SD a tenth
    of the true one saturates Z_ADC: flagged, never silently used."""
    atlas = read_atlas(population_dataset / GENERATING_ATLAS)
    adc = read_image(find_cases(population_dataset)[12].adc)
    with pytest.raises(InputError, match=f"^{adc.path}: its ADC would be scaled by [45][.0-9]* .*outside 0.25-4"):
        compute_zmap(adc, dataclasses.replace(atlas, mean=atlas.mean * 5, sd=atlas.sd * 5), FAST_ZMAP)
    narrow = compute_zmap(adc, dataclasses.replace(atlas, sd=atlas.sd / 20), FAST_ZMAP)
    assert any(flag.startswith("Z_ADC on") and "of the brain at the clip" in flag for flag in narrow.flags)
    # an SD a fifth of the true one: few voxels at the clip, but Z_ADC spreads far wider than a normative one's
    fifth = compute_zmap(adc, dataclasses.replace(atlas, sd=atlas.sd / 5), FAST_ZMAP)
    assert any(flag.startswith("Z_ADC on the brain spreads") for flag in fifth.flags), fifth.flags
    assert compute_zmap(adc, atlas, FAST_ZMAP).flags == []


def test_a_folder_of_adc_maps_gets_its_z_adc_and_a_summary(population_dataset: Path, tmp_path: Path) -> None:
    cases = find_cases(population_dataset, with_zadc=False)[10:12]
    bad = tmp_path / "bad_adc.mha"
    volume = read_image(cases[1].adc)
    write_image(volume.array * 1e-6, volume.geometry, bad)
    cases[1] = dataclasses.replace(cases[1], adc=bad)
    zmaker = ZmapMaker(read_atlas(population_dataset / GENERATING_ATLAS), FAST_ZMAP)
    (tmp_path / "out").mkdir()
    stale = tmp_path / "out" / f"{cases[1].case_id}_zadc.mha"
    stale.write_bytes(b"an earlier run's")
    rows = write_zmaps(cases, zmaker, tmp_path / "out")
    assert [row["status"] for row in rows] == ["ok", "failed"]
    assert "mm^2/s" in rows[1]["error"] and not stale.exists()  # a failed case leaves no Z_ADC
    written = read_image(tmp_path / "out" / rows[0]["zadc"])
    assert written.geometry.differences(read_image(cases[0].adc).geometry) == []
    with open(tmp_path / "out" / ZMAP_SUMMARY) as handle:
        summary = list(csv.DictReader(handle))
    assert [row["case_id"] for row in summary] == [c.case_id for c in cases]
    assert summary[0]["atlas"] == zmaker.key() and float(summary[0]["atlas_overlap"]) > 0.9


def test_no_z_adc_is_written_over_an_input(population_dataset: Path, tmp_path: Path) -> None:
    """An ADC file named as a Z_ADC output (`p1_zadc.mha` read with the pattern `*_zadc.mha`, case id p1)."""
    from sparseg.cases import pattern_cases

    zmaker = ZmapMaker(read_atlas(population_dataset / GENERATING_ATLAS), FAST_ZMAP)
    volume = read_image(find_cases(population_dataset)[10].adc)
    adc = write_image(volume.array, volume.geometry, tmp_path / "p1_zadc.mha")
    before = adc.read_bytes()
    with pytest.raises(InputError, match="p1_zadc.mha: this command would write there, but it is an input"):
        write_zmaps(pattern_cases(tmp_path, "*_zadc.mha", None), zmaker, tmp_path)
    assert adc.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["p1_zadc.mha"]
