from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sparseg import cases
from sparseg.config import burden_group
from sparseg.io import read_image
from sparseg.metrics import dice
from sparseg.synth import SynthConfig, generate_case, write_dataset, write_input_case

TINY = SynthConfig.tiny()


@pytest.fixture(scope="module")
def full_size_cases() -> list:
    """Twenty cases at the real grid sizes, shared by the statistical checks."""
    return [generate_case(seed=11, index=i) for i in range(20)]


def test_same_seed_same_case_other_seed_other_case() -> None:
    a, b = generate_case(3, 1, TINY), generate_case(3, 1, TINY)
    np.testing.assert_array_equal(a.adc, b.adc)
    np.testing.assert_array_equal(a.z, b.z)
    np.testing.assert_array_equal(a.label, b.label)
    assert a.geometry == b.geometry
    c = generate_case(4, 1, TINY)
    assert c.adc.shape != a.adc.shape or not np.array_equal(c.adc, a.adc)


@pytest.mark.slow
def test_grids_follow_the_dataset(full_size_cases: list) -> None:
    for case in full_size_cases:
        depth, height, width = case.adc.shape
        assert 128 <= height <= 256 and height == width
        assert 16 <= depth <= 64
        assert 2.0 <= case.geometry.spacing_mm[0] <= 6.0
        assert case.z.shape == case.label.shape == case.adc.shape


@pytest.mark.slow
def test_intensities_look_like_neonatal_adc(full_size_cases: list) -> None:
    case = full_size_cases[0]
    brain = case.adc > 0
    assert 0.05 < brain.mean() < 0.6  # skull-stripped: a brain with zero background
    assert 1100 < np.median(case.adc[brain & ~case.label]) < 1500  # mostly white matter
    assert np.percentile(case.adc[brain], 99.5) > 2300  # CSF is present
    assert case.z.min() >= -10 and case.z.max() <= 10
    assert np.all(case.z[~brain] == 0)


@pytest.mark.slow
def test_lesions_have_reduced_adc(full_size_cases: list) -> None:
    lesion_z = []
    for case in full_size_cases:
        if case.label.sum() > 50:
            brain = case.adc > 0
            assert np.median(case.adc[case.label]) < 0.9 * np.median(case.adc[brain & ~case.label])
            lesion_z.append(np.median(case.z[case.label]))
    # Some foci are mild (an expert still outlines them), most lie well below 0.
    assert np.mean(lesion_z) < -1.5 and min(lesion_z) < -2.0 < max(lesion_z), lesion_z


@pytest.mark.slow
def test_burden_strata_and_lesion_free_cases() -> None:
    groups = Counter()
    lesion_free = 0
    for index in range(200):
        case = generate_case(seed=21, index=index, config=TINY)
        groups[burden_group(case.burden)] += 1
        lesion_free += not case.label.any()
    assert lesion_free > 0
    # 74:26:33 of 200 = 111:39:50; allow sampling noise.
    assert 85 <= groups["<1%"] <= 135 and 20 <= groups["1%-5%"] <= 60 and 30 <= groups[">5%"] <= 70, groups


@pytest.mark.slow
def test_threshold_baseline_agrees_only_in_part(full_size_cases: list) -> None:
    scores = [dice(c.label, c.z < -2) for c in full_size_cases]
    assert 0.35 <= float(np.mean(scores)) <= 0.65, np.mean(scores)
    assert np.std(scores) > 0.1


def test_files_vary_in_type_and_geometry() -> None:
    made = [generate_case(seed=5, index=i, config=TINY) for i in range(30)]
    assert len({c.adc_dtype for c in made}) >= 3
    assert {c.orientation for c in made} == {"identity", "flipped", "oblique"}
    assert len({c.geometry.origin_xyz_mm for c in made}) == 30


def test_release_layout_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "BONBID2023_Train"
    write_dataset(root, n_cases=3, seed=9, config=TINY)
    found = cases.find_cases(root, require_labels=True)
    assert [c.case_id for c in found] == ["MGHNICU_001-VISIT_01", "MGHNICU_002-VISIT_01", "MGHNICU_003-VISIT_01"]
    assert found[0].z.name == "Zmap_MGHNICU_001-VISIT_01-ADC_smooth2mm_clipped10.mha"
    expected = generate_case(9, 1, TINY)
    adc = read_image(found[1].adc)
    assert adc.geometry.differences(expected.geometry, tolerance=1e-6) == []
    tolerance = 0.5 if expected.adc_dtype.startswith(("int", "uint")) else 1e-3
    np.testing.assert_allclose(adc.array, expected.adc, atol=tolerance)
    assert (root / "synth_manifest.csv").read_text().count("MGHNICU_") == 3


def test_input_layout_is_one_container_case(tmp_path: Path) -> None:
    case = write_input_case(tmp_path, seed=2, config=TINY)
    found = cases.find_input_case(tmp_path)
    assert found.case_id == case.case_id
    assert read_image(found.z).array.shape == case.z.shape


def test_config_is_respected() -> None:
    config = SynthConfig(in_plane_sizes=(100,), slice_spacing_mm=(5.0, 5.0), coverage_mm=(80.0, 80.0))
    case = generate_case(0, 0, config)
    assert case.adc.shape == (16, 100, 100)
    assert case.geometry.spacing_mm[0] == pytest.approx(5.0)


def test_a_full_brain_case_has_brain_and_lesion_on_real_slices_only() -> None:
    """The benchmarks' real-sized volume: brain on every slice, unlike the default grids."""
    for index in range(6):
        case = generate_case(5, index, SynthConfig().with_shape(128, 32, full_brain=True))
        assert case.adc.shape == (32, 128, 128)
        assert (case.adc > 0).reshape(32, -1).any(axis=1).all(), index
    default = generate_case(5, 0, SynthConfig().with_shape(128, 64))
    assert not (default.adc > 0).reshape(64, -1).any(axis=1).all()


def test_a_population_s_cases_are_its_template_under_each_case_s_own_warp_and_level(
        population_dataset: Path) -> None:
    from sparseg.atlas import read_atlas
    from sparseg.synth import GENERATING_ATLAS, generate_population_case, population

    people = population(5, TINY)
    again = population(5, TINY)
    np.testing.assert_array_equal(people.mean, again.mean)
    assert np.all(people.sd[people.mask] > 0) and people.mask.mean() > 0.2
    atlas = read_atlas(population_dataset / GENERATING_ATLAS)
    np.testing.assert_array_equal(atlas.mean, people.mean)
    assert atlas.description["kind"] == "synthetic" and "not a normative atlas of real neonates" in \
        atlas.description["description"]
    made = [generate_population_case(5, index, people, TINY) for index in range(6)]
    first = generate_population_case(5, 0, people, TINY)
    np.testing.assert_array_equal(first.adc, made[0].adc)
    np.testing.assert_array_equal(first.z, made[0].z)
    levels = [case.adc_level for case in made]
    assert len(set(levels)) == 6 and 0.7 < min(levels) and max(levels) < 1.4
    assert len({case.warp_rms_mm for case in made}) == 6 and all(case.warp_rms_mm > 0 for case in made)
    for case in made:
        brain = case.adc > 0
        healthy = brain & ~case.label
        # the ADC is the atlas mean (white matter ~1300) at the case's level
        assert np.median(case.adc[healthy]) / case.adc_level == pytest.approx(1300, rel=0.12)
        assert np.all(case.z[~brain] == 0) and np.abs(case.z).max() <= 10
        if case.label.sum() > 20:
            assert np.median(case.z[case.label]) < np.median(case.z[healthy]) - 1
    with open(population_dataset / "synth_manifest.csv") as handle:
        header = handle.readline()
    assert "adc_level" in header and "warp_rms_mm" in header


def test_a_population_is_not_the_default_synthetic_data(tmp_path: Path) -> None:
    write_dataset(tmp_path / "plain", n_cases=1, seed=3, config=TINY)
    assert not (tmp_path / "plain" / "generating_atlas").exists()
