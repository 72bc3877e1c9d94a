"""One seeded factory of small synthetic cases for every test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparseg.synth import SynthConfig, write_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six tiny labelled cases in the release layout. Read-only: copy before changing."""
    root = tmp_path_factory.mktemp("tiny") / "BONBID2023_Train"
    write_dataset(root, n_cases=6, seed=7, config=SynthConfig.tiny())
    return root


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
