"""Which weights segment: an uploaded model's, else the baked-in ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparseg.errors import InputError
from sparseg.weights import default_weights


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
