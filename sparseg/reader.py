"""The background reader: a batch's next cases read, hashed and preprocessed in a thread while the network
segments the current one.

`load_case` reads a case's images (their checks name a bad file best), hashes
its input files (`sparseg.resume.inputs_sha256`) and makes the network input;
`read_ahead` does so for the cases in order, a few cases ahead. An error is
kept with the case, not raised, so that one bad case never stops the others.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sparseg.cases import Case
from sparseg.errors import SparsegError
from sparseg.inference import Predictor, Prepared
from sparseg.io import Volume, read_image, require_same_grid
from sparseg.resume import inputs_sha256


@dataclass
class LoadedCase:
    """A case's volumes as read (by the background reader), or why they could not be."""

    case: Case
    adc: Volume | None = None
    z: Volume | None = None
    inputs_sha256: str = ""
    prepared: Prepared | None = None
    """The network input, when the reader was given a predictor to prepare it for."""
    error: SparsegError | None = None
    seconds: float = 0.0


def load_case(case: Case, predictor: Predictor | None = None) -> LoadedCase:
    """Read a case's images (their checks name a bad file best), hash its input files, and with `predictor`
    check their grids and make the network input (`Predictor.prepare`); an error is kept, not raised."""
    started = time.perf_counter()
    try:
        adc, z = read_image(case.adc), read_image(case.z)
        digest = inputs_sha256(case)
        prepared = None
        if predictor is not None:
            require_same_grid(adc, z)
            prepared = predictor.prepare(adc.array, z.array)
    except SparsegError as exc:
        return LoadedCase(case, error=exc, seconds=time.perf_counter() - started)
    return LoadedCase(case, adc, z, digest, prepared, seconds=time.perf_counter() - started)


def read_ahead(cases: list[Case], predictor: Predictor | None = None, depth: int = 2) -> Iterator[LoadedCase]:
    """`load_case` of each case in order, up to `depth` cases ahead in a background thread, so that reading,
    decompressing and preprocessing the next cases overlaps the network on the current one; `depth` 0 reads
    in turn."""
    if depth == 0:
        yield from (load_case(case, predictor) for case in cases)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sparseg-reader") as reader:
        pending: deque = deque()
        upcoming = iter(cases)
        for case in upcoming:
            pending.append(reader.submit(load_case, case, predictor))
            if len(pending) > depth:
                break
        while pending:
            loaded = pending.popleft().result()
            next_case = next(upcoming, None)
            if next_case is not None:
                pending.append(reader.submit(load_case, next_case, predictor))
            yield loaded
