"""The background reader: a batch's next cases read, hashed and preprocessed in a thread while the network
segments the current one.

`load_case` reads a case's images (their checks name a bad file best), hashes
its input files (`sparseg.resume.inputs_sha256`), computes its Z_ADC from an
atlas where it has none (`sparseg.zmap`: the registration, seconds of one core,
overlaps the network on the others) and makes the network input; `read_ahead`
does so for the cases in order, a few cases ahead. A case an earlier run
finished (`keepable`) is read no further than its ADC and hash. An error is
kept with the case, not raised, so that one bad case never stops the others.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sparseg.cases import Case
from sparseg.errors import InputError, SparsegError
from sparseg.inference import Predictor, Prepared
from sparseg.io import Volume, read_image, require_same_grid
from sparseg.resume import inputs_sha256
from sparseg.zmap import ZmapMaker, ZmapResult

Keepable = Callable[[Case, str], bool]
"""Whether a case, with the hash of its input files, has outputs an earlier run made that may be kept."""


@dataclass
class LoadedCase:
    """A case's volumes as read (by the background reader), or why they could not be."""

    case: Case
    adc: Volume | None = None
    z: Volume | None = None
    """None for a case read no further than its ADC (`keepable`)."""
    inputs_sha256: str = ""
    prepared: Prepared | None = None
    """The network input, when the reader was given a predictor to prepare it for."""
    error: SparsegError | None = None
    seconds: float = 0.0
    zmap: ZmapResult | None = None
    """How its Z_ADC was computed, where it was (from an atlas)."""


def _z(case: Case, adc: Volume, zmaker: ZmapMaker | None) -> tuple[Volume, ZmapResult | None]:
    """A case's Z_ADC: its file, or computed from the atlas."""
    if case.z is not None:
        return read_image(case.z), None
    if zmaker is None:
        raise InputError(f"{case.adc}: no Z_ADC for {case.case_id}, and no atlas to compute one from (--atlas)")
    result = zmaker(adc)
    return Volume(result.z, adc.geometry, Path(f"{case.case_id} Z_ADC (computed)")), result


def load_case(case: Case, predictor: Predictor | None = None, zmaker: ZmapMaker | None = None,
              keepable: Keepable | None = None) -> LoadedCase:
    """Read a case's images (their checks name a bad file best), hash its input files, compute its Z_ADC where it
    has none (`zmaker`), and with `predictor` check their grids and make the network input (`Predictor.prepare`);
    a case `keepable` says an earlier run finished is read no further than its ADC. An error is kept, not raised."""
    started = time.perf_counter()
    try:
        adc = read_image(case.adc)
        digest = inputs_sha256(case)
        if keepable is not None and keepable(case, digest):
            return LoadedCase(case, adc, None, digest, seconds=time.perf_counter() - started)
        z, zmap = _z(case, adc, zmaker)
        prepared = None
        if predictor is not None:
            require_same_grid(adc, z)
            prepared = predictor.prepare(adc.array, z.array)
    except SparsegError as exc:
        return LoadedCase(case, error=exc, seconds=time.perf_counter() - started)
    return LoadedCase(case, adc, z, digest, prepared, seconds=time.perf_counter() - started, zmap=zmap)


def read_ahead(cases: list[Case], predictor: Predictor | None = None, depth: int = 2,
               zmaker: ZmapMaker | None = None, keepable: Keepable | None = None) -> Iterator[LoadedCase]:
    """`load_case` of each case in order, up to `depth` cases ahead in a background thread, so that reading,
    decompressing, computing Z_ADC and preprocessing the next cases overlaps the network on the current one;
    `depth` 0 reads in turn."""
    def load(case: Case) -> LoadedCase:
        return load_case(case, predictor, zmaker, keepable)

    if depth == 0:
        yield from (load(case) for case in cases)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sparseg-reader") as reader:
        pending: deque = deque()
        upcoming = iter(cases)
        for case in upcoming:
            pending.append(reader.submit(load, case))
            if len(pending) > depth:
                break
        while pending:
            loaded = pending.popleft().result()
            next_case = next(upcoming, None)
            if next_case is not None:
                pending.append(reader.submit(load, next_case))
            yield loaded
