"""One seeded factory of small synthetic cases for every test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sparseg.config import ModelConfig, PreprocessingConfig, RunConfig
from sparseg.model import build_model, save_checkpoint
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


TINY_RUN = RunConfig(
    preprocessing=PreprocessingConfig(slice_size=(64, 64)),
    model=ModelConfig(encoder="timm-mobilenetv3_small_100", decoder_channels=(32, 32, 16, 16, 16)),
    threshold=0.5,
)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small randomly initialised network saved as a checkpoint (predictions are arbitrary but fixed)."""
    torch.manual_seed(0)
    model = build_model(TINY_RUN.model, TINY_RUN.in_channels)
    with torch.no_grad():
        model.segmentation_head[0].bias.fill_(0.3)  # some lesion everywhere the input allows
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", model.eval(), TINY_RUN)


def tamper_traced(checkpoint: Path) -> Path:
    """Trace `checkpoint`, then change a weight of the traced network and keep its stamp (a modified file)."""
    import json

    from sparseg.model import TRACED_STAMP, trace_checkpoint, traced_stamp

    traced = trace_checkpoint(checkpoint)
    module = torch.jit.load(str(traced))
    with torch.no_grad():
        next(iter(module.parameters())).add_(1.0)
    torch.jit.save(module, str(traced), _extra_files={TRACED_STAMP: json.dumps(traced_stamp(traced))})
    return traced
