"""One seeded factory of small synthetic cases for every test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from sparseg.config import ModelConfig, PreprocessingConfig, RunConfig, ZmapConfig
from sparseg.model import build_model, save_checkpoint
from sparseg.synth import SynthConfig, write_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six tiny labelled cases in the release layout. Read-only: copy before changing."""
    root = tmp_path_factory.mktemp("tiny") / "BONBID2023_Train"
    write_dataset(root, n_cases=6, seed=7, config=SynthConfig.tiny())
    return root


FAST_ZMAP = ZmapConfig(registration_spacing_mm=3.0, syn_iterations=(20, 10, 0))
"""Registration on a 3 mm grid with fewer SyN iterations: the tests' tiny cases need no more."""


@pytest.fixture(scope="session")
def population_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fourteen tiny labelled cases drawn from one synthetic population, with its generating atlas in
    `generating_atlas/`. Read-only: copy before changing."""
    root = tmp_path_factory.mktemp("population") / "cohort"
    write_dataset(root, n_cases=14, seed=5, config=SynthConfig.tiny(), drawn_from_population=True)
    return root


@pytest.fixture(scope="session")
def built_atlas(population_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An atlas built from the first ten cases of `population_dataset` (one template round, 4 mm). Read-only."""
    from sparseg.cases import find_cases
    from sparseg.config import AtlasConfig
    from sparseg.template import build_atlas

    out = tmp_path_factory.mktemp("atlas") / "built"
    build_atlas(find_cases(population_dataset)[:10], out, AtlasConfig(iterations=1, spacing_mm=4.0), FAST_ZMAP,
                source="the test population")
    return out


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


def edit_checkpoint_header(checkpoint: Path, change: Callable[[dict], None], resign: bool = False) -> Path:
    """Change a checkpoint's header metadata in place with `change`; `resign` recomputes checkpoint_sha256 as the
    header's format defines it (a checkpoint saved so by other code, not an edit after saving)."""
    import json

    from sparseg.model import FORMAT_CONFIG_HASH, checkpoint_sha256, header_sha256

    data = checkpoint.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    metadata = json.loads(header["__metadata__"]["sparseg"])
    change(metadata)
    if resign:
        metadata["checkpoint_sha256"] = (
            checkpoint_sha256(metadata["weights_sha256"], metadata.get("config", {}))
            if metadata.get("format") == FORMAT_CONFIG_HASH else header_sha256(metadata))
    header["__metadata__"]["sparseg"] = json.dumps(metadata)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    checkpoint.write_bytes(len(encoded).to_bytes(8, "little") + encoded + data[8 + size :])
    return checkpoint


def mount_full_tmpfs(folder: Path) -> str | None:
    """Mount a 64 KiB tmpfs on `folder` and fill it to the last byte; the reason when it cannot (needs root)."""
    import os
    import subprocess

    if os.geteuid() != 0:
        return "needs root to mount a small tmpfs (CI runs as root)"
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        return f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}"
    with open(folder / "filler", "wb", buffering=0) as handle:
        try:
            while handle.write(b"\0" * 512):
                pass
        except OSError:  # ENOSPC: full
            pass
    return None


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a small tmpfs filled to the last byte (root only: mounting needs it; CI runs as root)."""
    import subprocess

    folder = tmp_path / "full"
    folder.mkdir()
    reason = mount_full_tmpfs(folder)
    if reason is not None:
        pytest.skip(reason)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def own_names(tiny_dataset: Path, folder: Path, suffix: str = ".nii.gz") -> dict[str, tuple[Path, Path, Path]]:
    """The tiny cases as a user's flat folder: patient<k>_adc / _zadc / _label, in `suffix` format."""
    from sparseg.cases import find_cases
    from sparseg.io import read_image, write_image

    files = {}
    for k, case in enumerate(find_cases(tiny_dataset)):
        names = []
        for kind, path in (("adc", case.adc), ("zadc", case.z), ("label", case.label)):
            volume = read_image(path)
            names.append(write_image(volume.array, volume.geometry, folder / f"patient{k:02d}_{kind}{suffix}"))
        files[f"patient{k:02d}"] = tuple(names)
    return files
