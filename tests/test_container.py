"""The container's files: what the Dockerfile copies exists, the scripts parse, build.sh guards the weights.

The image itself is built and run on the sample cases by `./test.sh` (CI: docker/ci.sh).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ["build.sh", "test.sh", "export.sh", *(f"docker/{p.name}" for p in (ROOT / "docker").glob("*.sh"))]


def test_dockerfile_copies_only_what_the_repository_has() -> None:
    sources = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        match = re.match(r"COPY\s+(?!--from)(?:--\S+\s+)*(.+)\s+\S+$", line.strip())
        if match:
            sources += match.group(1).split()
    assert "process.py" in sources and "build/model_weights" in sources
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in lines if line.startswith("!")]
    for source in sources:
        source = source.rstrip("/")
        made_by_build_sh = source in ("build/wheelhouse", "build/model_weights")
        assert made_by_build_sh or (ROOT / source).exists(), f"{source} is not in the repository"
        assert source in allowed, f"{source} is excluded from the build context by .dockerignore"


def test_entry_point_runs_process_py_as_an_unprivileged_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python3", "/opt/app/process.py"]' in dockerfile
    assert re.search(r"^USER user$", dockerfile, re.MULTILINE)


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse(script: str) -> None:
    subprocess.run(["bash", "-n", str(ROOT / script)], check=True)


def _build_sh_in(tmp_path: Path, weights: list[Path], *arguments: str) -> subprocess.CompletedProcess:
    """Run a copy of build.sh with the given checkpoints in model_weights/, the given arguments and a stand-in
    `docker` that records its calls."""
    shutil.copy(ROOT / "build.sh", tmp_path / "build.sh")
    (tmp_path / "model_weights").mkdir()
    for weight in weights:
        shutil.copy(weight, tmp_path / "model_weights" / weight.name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text('#!/bin/sh\necho "$@" >> "$(dirname "$0")/calls"\n'
                    '[ "$1 $2" = "image inspect" ] && echo 1000000000\nexit 0\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(["bash", str(tmp_path / "build.sh"), *arguments], capture_output=True, text=True, env=env)


def test_build_without_a_checkpoint_fails_before_docker(tmp_path: Path) -> None:
    result = _build_sh_in(tmp_path, [])
    assert result.returncode == 1
    assert "no checkpoint (*.safetensors) in model_weights/" in result.stderr
    assert not (tmp_path / "bin" / "calls").exists()


def test_build_with_the_synthetic_demo_weights_warns(tmp_path: Path) -> None:
    result = _build_sh_in(tmp_path, [ROOT / "model_weights" / "sparseg-demo.safetensors"])
    assert result.returncode == 0, result.stderr
    assert "trained on synthetic data" in result.stderr and "not for real scans" in result.stderr
    assert "build --force-rm --build-arg BASE_IMAGE=sparseg-base:bookworm" in (tmp_path / "bin" / "calls").read_text()


def test_build_bakes_the_checkpoints_named_with_weights_under_distinct_names(tmp_path: Path) -> None:
    demo = ROOT / "model_weights" / "sparseg-demo.safetensors"
    folds = []
    for fold in range(2):
        (tmp_path / "cv" / f"fold{fold}").mkdir(parents=True)
        folds.append(tmp_path / "cv" / f"fold{fold}" / "best.safetensors")
        shutil.copy(demo, folds[-1])
    result = _build_sh_in(tmp_path, [demo], "--weights", *map(str, folds), "--tag", "t")
    assert result.returncode == 0, result.stderr
    assert f"baking in {folds[0]} as model_weights/fold0-best.safetensors" in result.stdout
    assert f"baking in {folds[1]} as model_weights/fold1-best.safetensors" in result.stdout
    assert "sparseg-demo" not in result.stdout  # the baked-in demo weights are left out
    assert "--tag t" in (tmp_path / "bin" / "calls").read_text()
    (tmp_path / "again").mkdir()
    missing = _build_sh_in(tmp_path / "again", [], "--weights", str(tmp_path / "none.safetensors"))
    assert missing.returncode == 1 and "none.safetensors: no such checkpoint" in missing.stderr
