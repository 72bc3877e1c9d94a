"""The container's files: what the Dockerfile copies exists, the scripts parse, build.sh guards the weights.

The image itself is built and run on the sample cases by `./test.sh` (CI: docker/ci.sh).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
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
        made_by_build_sh = source == "build/model_weights"
        assert made_by_build_sh or (ROOT / source).exists(), f"{source} is not in the repository"
        assert source in allowed, f"{source} is excluded from the build context by .dockerignore"


def test_entry_point_runs_process_py_as_an_unprivileged_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python3", "/opt/app/process.py"]' in dockerfile
    assert re.search(r"^USER user$", dockerfile, re.MULTILINE)


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse(script: str) -> None:
    subprocess.run(["bash", "-n", str(ROOT / script)], check=True)


def _build_sh_in(tmp_path: Path, weights: list[Path], *arguments: str, registry: bool = True,
                 local_base: bool = True, root: bool = True, port: int | str | None = None,
                 cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a copy of build.sh with the given checkpoints in model_weights/, the given arguments and a stand-in
    `docker` that records its calls; `registry`: whether python:3.11-slim-bookworm can be pulled; `local_base`:
    whether sparseg-base:bookworm exists; `root`: whether debootstrap can make it."""
    shutil.copy(ROOT / "build.sh", tmp_path / "build.sh")
    (tmp_path / "model_weights").mkdir()
    for weight in weights:
        shutil.copy(weight, tmp_path / "model_weights" / weight.name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text('#!/bin/sh\necho "$@" >> "$(dirname "$0")/calls"\n'
                    f'[ "$1" = pull ] && exit {0 if registry else 1}\n'
                    f'[ "$3" = python:3.11-slim-bookworm ] && [ {int(registry)} = 0 ] && exit 1\n'
                    f'[ "$3" = sparseg-base:bookworm ] && [ {int(local_base)} = 0 ] && exit 1\n'
                    '[ "$1 $2" = "image inspect" ] && echo 1000000000\n'
                    # during a build, what the wheelhouse address (if any) serves
                    'for arg in "$@"; do case $arg in WHEELHOUSE_URL=*) python3 -c "import sys, urllib.request; '
                    'print(\'served:\', urllib.request.urlopen(sys.argv[1]).read().decode())" "${arg#*=}" '
                    '>> "$(dirname "$0")/calls" ;; esac; done\nexit 0\n')
    fake.chmod(0o755)
    for tool in ("id", "debootstrap"):  # stand-ins: who runs it, and whether debootstrap is there
        (bin_dir / tool).write_text(f"#!/bin/sh\necho {0 if root else 1000}\n")
        (bin_dir / tool).chmod(0o755)
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "base-image.sh").write_text('#!/bin/sh\necho "base-image.sh $@" >> bin/calls\n')
    (tmp_path / "docker" / "base-image.sh").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SPARSEG_PULL_TIMEOUT": "5",
           **({"SPARSEG_WHEELHOUSE_PORT": str(port)} if port is not None else {})}
    return subprocess.run(["bash", str(tmp_path / "build.sh"), *arguments], capture_output=True, text=True, env=env,
                          cwd=cwd)


def test_build_without_a_checkpoint_fails_before_docker(tmp_path: Path) -> None:
    result = _build_sh_in(tmp_path, [])
    assert result.returncode == 1
    assert "no checkpoint (*.safetensors) in model_weights/" in result.stderr
    assert not (tmp_path / "bin" / "calls").exists()


def test_build_with_the_synthetic_demo_weights_warns(tmp_path: Path) -> None:
    result = _build_sh_in(tmp_path, [ROOT / "model_weights" / "sparseg-demo.safetensors"])
    assert result.returncode == 0, result.stderr
    assert "trained on synthetic data" in result.stderr and "not for real scans" in result.stderr
    calls = (tmp_path / "bin" / "calls").read_text()
    assert "build --force-rm --build-arg BASE_IMAGE=python:3.11-slim-bookworm" in calls


@pytest.mark.parametrize("registry, local_base, root, base, made", [
    (True, True, True, "python:3.11-slim-bookworm", False),
    (False, True, True, "sparseg-base:bookworm", False),
    (False, False, True, "sparseg-base:bookworm", True),
])
def test_the_base_is_the_registry_image_where_it_can_be_had(tmp_path: Path, registry: bool, local_base: bool,
                                                             root: bool, base: str, made: bool) -> None:
    result = _build_sh_in(tmp_path, [ROOT / "model_weights" / "sparseg-demo.safetensors"], registry=registry,
                          local_base=local_base, root=root)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "bin" / "calls").read_text()
    assert f"--build-arg BASE_IMAGE={base} " in calls
    assert ("base-image.sh sparseg-base:bookworm" in calls) == made


def test_without_a_registry_or_root_the_error_names_both_ways(tmp_path: Path) -> None:
    result = _build_sh_in(tmp_path, [ROOT / "model_weights" / "sparseg-demo.safetensors"], registry=False,
                          local_base=False, root=False)
    assert result.returncode == 1
    assert "python:3.11-slim-bookworm cannot be pulled" in result.stderr and "debootstrap" in result.stderr
    assert "build --force-rm" not in (tmp_path / "bin" / "calls").read_text()


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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_offline_build_is_served_the_wheelhouse_and_stops_serving_it(tmp_path: Path) -> None:
    """The wheels reach the build over loopback, never as build context or a layer (their 4 GB twice more on
    disk ran CI out of space); the server lives exactly as long as build.sh."""
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    (wheelhouse / "torch-0-py3-none-any.whl").write_bytes(b"not a real wheel")
    port = _free_port()
    result = _build_sh_in(tmp_path, [ROOT / "model_weights" / "sparseg-demo.safetensors"], "--wheelhouse",
                          str(wheelhouse), port=port)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "bin" / "calls").read_text()
    assert f"build --force-rm --network host --build-arg WHEELHOUSE_URL=http://127.0.0.1:{port}/" in calls
    assert "served:" in calls and "torch-0-py3-none-any.whl" in calls
    with pytest.raises(OSError):  # nothing listens there any more
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert "build/wheelhouse" not in (ROOT / ".dockerignore").read_text()


@pytest.mark.parametrize("decoy", ["socket", "http server"])
def test_a_wheelhouse_port_in_use_is_a_clear_error_before_docker_builds(tmp_path: Path, decoy: str) -> None:
    """Another HTTP server on the port (an earlier build's, say) must never be the one that serves the wheels."""
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    (wheelhouse / "a-0-py3-none-any.whl").write_bytes(b"")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = None
        if decoy == "http server":
            import http.server
            import threading

            busy.close()
            server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1] if server else busy.getsockname()[1]
        result = _build_sh_in(tmp_path, [ROOT / "model_weights" / "sparseg-demo.safetensors"], "--wheelhouse",
                              str(wheelhouse), port=port)
        if server:
            server.shutdown()
            server.server_close()
    assert result.returncode == 1
    assert f"cannot serve the wheelhouse {wheelhouse} on 127.0.0.1:" in result.stderr
    assert "SPARSEG_WHEELHOUSE_PORT" in result.stderr
    calls = tmp_path / "bin" / "calls"
    assert not calls.exists() or "build --force-rm" not in calls.read_text()


@pytest.mark.parametrize("port", ["abc", "0", "99999", " 18766", "-1"])
def test_a_wheelhouse_port_that_is_no_port_is_refused(tmp_path: Path, port: str) -> None:
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    (wheelhouse / "a-0-py3-none-any.whl").write_bytes(b"")
    result = _build_sh_in(tmp_path, [ROOT / "model_weights" / "sparseg-demo.safetensors"], "--wheelhouse",
                          str(wheelhouse), port=port)
    assert result.returncode == 2
    assert f"SPARSEG_WHEELHOUSE_PORT must be a port number from 1 to 65535, not '{port}'" in result.stderr


def test_a_relative_wheelhouse_is_read_from_where_build_sh_was_called(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "wh").mkdir(parents=True)
    (elsewhere / "wh" / "a-0-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "repo").mkdir()
    result = _build_sh_in(tmp_path / "repo", [ROOT / "model_weights" / "sparseg-demo.safetensors"],
                          "--wheelhouse", "wh", port=_free_port(), cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert f"offline build from {elsewhere}/wh (1 wheels" in result.stdout
    (tmp_path / "repo2").mkdir()
    empty = _build_sh_in(tmp_path / "repo2", [], "--wheelhouse", "")
    assert empty.returncode == 2 and "--wheelhouse needs a value" in empty.stderr
