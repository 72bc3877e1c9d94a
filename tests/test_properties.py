"""Property-based tests (hypothesis) of the I/O and the preprocessing round trip (the scoring's is in
test_metrics.py), and a bounded fuzz run of damaged .mha files through reading and segmentation."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparseg.config import PreprocessingConfig
from sparseg.errors import InputError
from sparseg.inference import Predictor
from sparseg.io import Geometry, read_image, write_image
from sparseg.preprocessing import from_slices, label_to_slices

DTYPES = ["uint8", "int16", "uint16", "int32", "float32", "float64"]
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


@FAST
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 12), st.integers(1, 12)),
    spacing=st.tuples(*[st.floats(0.1, 10.0)] * 3),
    origin=st.tuples(*[st.floats(-500.0, 500.0)] * 3),
    rotation_seed=st.integers(0, 2**16),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_image_round_trip(tmp_path: Path, shape, spacing, origin, rotation_seed, dtype, seed) -> None:
    info = np.iinfo(dtype) if np.issubdtype(np.dtype(dtype), np.integer) else None
    rng = np.random.default_rng(seed)
    if info is not None:
        array = rng.integers(max(info.min, -(2**20)), min(info.max, 2**20), size=shape, endpoint=True).astype(dtype)
    else:
        array = rng.normal(0.0, 1000.0, size=shape).astype(dtype)
    geometry = Geometry((shape[2], shape[1], shape[0]), spacing, origin, tuple(_rotation(rotation_seed).ravel()))
    path = write_image(array, geometry, tmp_path / f"img-{seed}.mha")
    volume = read_image(path)
    np.testing.assert_array_equal(volume.array, array.astype(np.float32))
    assert volume.geometry.differences(geometry, tolerance=1e-6) == []


@FAST
@given(height=st.integers(1, 256), width=st.integers(1, 256), depth=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_mask_survives_the_slice_round_trip_up_to_256(height: int, width: int, depth: int, seed: int) -> None:
    mask = np.random.default_rng(seed).random((depth, height, width)) > 0.7
    back = from_slices(label_to_slices(mask, PreprocessingConfig()), (height, width)) > 0.5
    np.testing.assert_array_equal(back, mask)


FUZZ_ITERATIONS = int(os.environ.get("SPARSEG_FUZZ_ITERATIONS", "300"))
"""Damaged files per test run (CI: 300; set SPARSEG_FUZZ_ITERATIONS for a longer run)."""
HEADER_FIELDS = ["NDims", "DimSize", "ElementType", "ElementSpacing", "Offset", "TransformMatrix",
                 "ElementNumberOfChannels", "CompressedData", "CompressedDataSize", "BinaryDataByteOrderMSB"]
JUNK = ["0", "-1", "3 3", "1 1 1 1", "999999999 2 2", "nan", "MET_BOGUS", "True", "", "1e308 1 1", "MET_DOUBLE",
        "2", "4", "200 200 200", "0 0 0"]


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random damage: flipped bytes, a cut, or a header field set to junk, removed or repeated."""
    kind = rng.integers(4)
    if kind == 0:
        damaged = bytearray(data)
        for position in rng.integers(0, len(data), size=rng.integers(1, 8)):
            damaged[position] = int(rng.integers(256))
        return bytes(damaged)
    if kind == 1:
        return data[: int(rng.integers(0, len(data)))]
    end = data.index(b"ElementDataFile")
    header, rest = data[:end].decode("latin-1"), data[end:]
    field = HEADER_FIELDS[rng.integers(len(HEADER_FIELDS))]
    if kind == 2:
        junk = JUNK[rng.integers(len(JUNK))]
        if re.search(rf"^{field} = .*$", header, re.MULTILINE):
            header = re.sub(rf"^{field} = .*$", f"{field} = {junk}", header, flags=re.MULTILINE)
        else:
            header += f"{field} = {junk}\n"
    else:
        lines = header.splitlines(keepends=True)
        index = int(rng.integers(len(lines)))
        lines = lines[:index] + lines[index + 1 :] if rng.random() < 0.5 else lines[: index + 1] + lines[index:]
        header = "".join(lines)
    return header.encode("latin-1") + rest


class _Timeout(Exception):
    pass


def test_fuzzed_files_give_a_mask_or_a_clean_error(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """Every damaged file is either read (and segmented into a valid mask) or refused with an InputError."""
    rng = np.random.default_rng(2024)
    array = (rng.random((6, 24, 20)) * 2000).astype(np.float32)
    geometry = Geometry((20, 24, 6), (0.9, 0.9, 4.0), (1.0, 2.0, 3.0), tuple(np.eye(3).ravel()))
    originals = [write_image(array, geometry, tmp_path / f"valid{c}.mha", compress=c).read_bytes()
                 for c in (False, True)]
    predictor = Predictor.load([tiny_checkpoint], torch.device("cpu"))
    outcomes = {"mask": 0, "clean error": 0}

    def alarm(*_):
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        for iteration in range(FUZZ_ITERATIONS):
            path = tmp_path / "fuzzed.mha"
            path.write_bytes(_mutate(originals[iteration % 2], rng))
            signal.alarm(10)
            try:
                volume = read_image(path)
                result = predictor.predict(volume, volume)
                assert result.mask.shape == volume.array.shape and result.mask.dtype == bool
                outcomes["mask"] += 1
            except InputError as exc:
                assert str(exc).startswith(str(path)) and "\n" not in str(exc)
                outcomes["clean error"] += 1
            except _Timeout:
                pytest.fail(f"iteration {iteration}: reading or segmenting took over 10 s")
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert sum(outcomes.values()) == FUZZ_ITERATIONS
    assert outcomes["mask"] > 0 and outcomes["clean error"] > 0, outcomes
