from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparseg.errors import InputError
from sparseg.runtime import (
    Runtime,
    cuda_driver_needed,
    gpu_problem,
    gradient_scaler,
    probe_nvidia,
    resolve_runtime,
    training_runtime,
)

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")
needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="these stand-ins describe a machine whose GPU "
                                  "torch cannot use; this one's can")


def _stand_in_smi(folder: Path, driver: str = "470.82.01") -> Path:
    """An `nvidia-smi` that answers like NVIDIA's for a driver torch's CUDA build cannot use."""
    folder.mkdir(parents=True, exist_ok=True)
    smi = folder / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\necho '{driver}'\n")
    smi.chmod(0o755)
    return smi


def _device_nodes(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("nvidia0", "nvidiactl", "nvidia-uvm"):
        (folder / name).touch()
    return folder


def test_auto_on_this_cpu_is_openvino_fp32_and_every_combination_resolves_once() -> None:
    runtime = resolve_runtime("cpu")
    assert (runtime.device, runtime.engine, runtime.precision) == (CPU, "openvino", "fp32")
    assert runtime.autocast_dtype is None and runtime.openvino_hint == "f32"
    assert isinstance(runtime.autocast(), contextlib.nullcontext)
    assert runtime.key() == "device=cpu engine=openvino precision=fp32"
    torch_bf16 = resolve_runtime("cpu", "torch", "bf16")
    assert torch_bf16.autocast_dtype == torch.bfloat16 and isinstance(torch_bf16.autocast(), torch.autocast)
    assert resolve_runtime("cpu", "torch").precision == "fp32"  # the CPU never autocasts unless asked
    assert resolve_runtime("cpu", "auto", "int8").engine == "openvino"
    from sparseg.runtime import cpu_has_native_bf16

    # OpenVINO runs bf16 where the CPU has it natively, else fp32, and says so (test_bf16_on_a_cpu_without_...)
    assert resolve_runtime("cpu", "openvino", "bf16").openvino_hint == ("bf16" if cpu_has_native_bf16() else "f32")
    with pytest.raises(InputError, match="--precision int8 runs on the OpenVINO engine, not on torch"):
        resolve_runtime("cpu", "torch", "int8")
    for device, engine, precision in (("gpu", "auto", "auto"), ("cpu", "onnx", "auto"), ("cpu", "auto", "fp8")):
        with pytest.raises(InputError, match="expected one of"):
            resolve_runtime(device, engine, precision)


def test_a_usable_gpu_runs_torch_with_autocast_and_names_gpu_driver_and_cuda(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)  # a T4
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.setenv("PATH", f"{_stand_in_smi(tmp_path / 'bin', '535.183.01').parent}:{os.environ['PATH']}")
    runtime = resolve_runtime()
    assert (runtime.device.type, runtime.engine, runtime.precision) == ("cuda", "torch", "fp16")
    assert runtime.autocast_dtype == torch.float16
    assert runtime.describe() == (f"GPU Tesla T4 (driver 535.183.01, torch CUDA {torch.version.cuda}), "
                                  "torch fp16 autocast")
    assert resolve_runtime("cuda", precision="fp32").autocast_dtype is None
    assert gradient_scaler(training_runtime()).is_enabled()  # fp16 needs loss scaling; bf16 and fp32 do not
    with pytest.raises(InputError, match="--engine openvino: the OpenVINO engine runs on the CPU, not on CUDA"):
        resolve_runtime("auto", "openvino")
    with pytest.raises(InputError, match="--precision int8: the OpenVINO engine runs on the CPU"):
        resolve_runtime("cuda", precision="int8")


@needs_no_gpu
def test_a_gpu_that_torch_cannot_use_is_a_warning_and_refuses_device_cuda(tmp_path: Path, caplog) -> None:
    """Device nodes and an nvidia-smi that answers with driver 470: the job says, at WARNING, which driver it
    found, which CUDA this torch is built for and which driver that needs; --device cuda fails saying the same."""
    probe = probe_nvidia(_device_nodes(tmp_path / "dev"), str(_stand_in_smi(tmp_path / "bin")))
    assert probe.driver == "470.82.01" and probe.gpu_expected
    problem = gpu_problem(probe, cuda="12.8")
    assert problem == (f"NVIDIA device nodes ({tmp_path}/dev/nvidia-uvm, {tmp_path}/dev/nvidia0, {tmp_path}/dev/"
                       f"nvidiactl) but torch cannot use the GPU: NVIDIA driver 470.82.01, this torch "
                       f"({torch.__version__}) is built for CUDA 12.8, which needs driver 525.60 or later")
    caplog.set_level(logging.INFO, logger="sparseg")
    assert resolve_runtime(probe=probe).device == CPU
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "NVIDIA driver 470.82.01" in record.getMessage() or "CPU-only build" in record.getMessage()
    assert record.getMessage().endswith("; the job runs on the CPU, not the GPU")
    with pytest.raises(InputError) as refused:
        resolve_runtime("cuda", probe=probe)
    assert str(refused.value) == f"--device cuda: {gpu_problem(probe)}"
    assert cuda_driver_needed("12.8") == "525.60" and cuda_driver_needed("13.0") == "580.65"
    smi_only = probe_nvidia(tmp_path / "no-dev", str(_stand_in_smi(tmp_path / "bin")))
    assert gpu_problem(smi_only, cuda="13.0").startswith("nvidia-smi answers but torch cannot use the GPU: NVIDIA "
                                                         "driver 470.82.01")


@needs_no_gpu
def test_no_sign_of_a_gpu_is_no_warning(tmp_path: Path, monkeypatch, caplog) -> None:
    """The image sets NVIDIA_VISIBLE_DEVICES=all, so alone it is no sign of a GPU: a plain `docker run` without
    --gpus logs it at INFO only."""
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "all")
    caplog.set_level(logging.INFO, logger="sparseg")
    probe = probe_nvidia(tmp_path, smi=str(tmp_path / "absent-nvidia-smi"), proc_version=tmp_path / "absent")
    assert not probe.gpu_expected and gpu_problem(probe) is None
    assert resolve_runtime(probe=probe).device == CPU
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "no GPU was given to this container" in caplog.text
    with pytest.raises(InputError, match="^--device cuda: no NVIDIA GPU is visible to this process$"):
        resolve_runtime("cuda", probe=probe)


@needs_no_gpu
@pytest.mark.slow
def test_the_container_job_warns_when_nvidia_smi_answers_but_torch_has_no_gpu(tmp_path: Path) -> None:
    """End to end: process.py with a stand-in nvidia-smi on PATH writes its mask on the CPU and says why at WARNING."""
    smi = _stand_in_smi(tmp_path / "bin")
    env = {**os.environ, "PATH": f"{smi.parent}:{os.environ['PATH']}"}
    sample = sorted((ROOT / "test").glob("*/input"))[0]
    job = subprocess.run([sys.executable, str(ROOT / "process.py"), "--input", str(sample), "--output",
                          str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert job.returncode == 0, job.stderr
    warning = next(line for line in job.stderr.splitlines() if "WARNING" in line and "nvidia-smi answers" in line)
    assert "NVIDIA driver 470.82.01" in warning or "CPU-only build" in warning
    assert warning.endswith("the job runs on the CPU, not the GPU")
    cuda = subprocess.run([sys.executable, str(ROOT / "process.py"), "--input", str(sample), "--output",
                           str(tmp_path / "out-cuda"), "--device", "cuda"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert cuda.returncode == 2 and "--device cuda: nvidia-smi answers but" in cuda.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out-cuda" / "images").exists()


def test_a_runtime_is_what_it_says() -> None:
    runtime = Runtime(CPU, "torch", "bf16")
    assert runtime.describe().endswith("torch bf16 autocast") and runtime.key().endswith("precision=bf16")


@pytest.mark.parametrize("output", [b"\\377\\376", b"garbage !!! NaN", b""])
def test_an_nvidia_smi_that_answers_nonsense_gives_no_driver_and_no_traceback(output: bytes, tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_bytes(b"#!/bin/sh\nprintf '" + output + b"\\n'\n")
    smi.chmod(0o755)
    probe = probe_nvidia(tmp_path / "no-dev", str(smi), tmp_path / "absent")
    assert probe.driver is None


def test_an_nvidia_smi_that_hangs_is_given_up_with_a_warning(tmp_path: Path, monkeypatch, caplog) -> None:
    from sparseg import runtime

    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\nsleep 30\n")
    smi.chmod(0o755)
    monkeypatch.setattr(runtime, "SMI_TIMEOUT_S", 1)
    probe = probe_nvidia(tmp_path / "no-dev", str(smi), tmp_path / "absent")
    assert probe.driver is None and not probe.smi_answered
    assert "did not answer within 1 s" in caplog.text


def test_bf16_on_a_cpu_without_native_bf16_is_said_and_recorded_as_what_runs(monkeypatch, caplog) -> None:
    """On OpenVINO it silently compiled f32 while the log, summary.csv and the QA page said bf16; on torch it was
    emulated, slower, with other masks, and nothing said so."""
    from sparseg import runtime

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    caplog.set_level(logging.WARNING, logger="sparseg")
    openvino = resolve_runtime("cpu", "openvino", "bf16")
    assert openvino.precision == "fp32" and "precision=fp32" in openvino.key()
    assert "OpenVINO runs fp32" in caplog.text
    caplog.clear()
    emulated = resolve_runtime("cpu", "torch", "bf16")
    assert emulated.precision == "bf16" and "torch emulates it" in caplog.text
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    caplog.clear()
    assert resolve_runtime("cpu", "openvino", "bf16").precision == "bf16" and not caplog.text


def test_an_instruction_set_cap_hides_the_flags_above_it() -> None:
    """ONEDNN_MAX_CPU_ISA=AVX2 on an AVX-512 CPU with VNNI and bf16: no bf16 autocast is chosen as native (the
    kernels may not use it), and the benchmarks' ruler counts no VNNI."""
    from sparseg.runtime import capped_flags

    zen5 = {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni"}
    assert capped_flags(zen5, "avx2") == {"avx2", "fma"}
    assert capped_flags(zen5, "AVX512_CORE") == {"avx2", "fma", "avx512f", "avx512bw"}
    assert capped_flags(zen5, "AVX512_CORE_VNNI") == zen5 - {"avx512_bf16"}
    assert capped_flags(zen5, "") == capped_flags(zen5, "ALL") == zen5
