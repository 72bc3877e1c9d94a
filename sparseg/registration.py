"""Deformable registration with ANTs (antspyx): one image aligned onto another (affine, then SyN), and maps of
the moving image's space pulled onto any grid of the fixed image's space.

ANTs is the field's tool for this (and builds the atlases of Ou et al. 2017);
SimpleITK registers too, with less proven deformable quality on neonatal
brains. Images cross into ANTs through in-memory ITK images
(`sparseg.io.itk_image`), so the (z, y, x) arrays keep their geometry and no
axis is reversed here.

Registration is deterministic: ANTs runs single-threaded with a fixed random
seed (with two threads the same inputs gave different warps). In a batch it runs
in the background reader while the network uses the other cores.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparseg.errors import InputError
from sparseg.io import Geometry, from_itk_image, itk_image

THREADS_VARIABLE = "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"
SEED_VARIABLE = "ANTS_RANDOM_SEED"


def _ants() -> Any:
    """antspyx, imported on first use (it takes ~2 s), its ITK single-threaded unless the user chose otherwise
    (ANTs reads the variable when it first runs a filter: set it before)."""
    os.environ.setdefault(THREADS_VARIABLE, "1")
    import ants

    return ants


def ants_version() -> str:
    from importlib.metadata import version

    return version("antspyx")


@dataclass(frozen=True)
class Image:
    """A (z, y, x) array on its grid: what registration takes and gives."""

    array: np.ndarray
    geometry: Geometry


def _to_ants(image: Image) -> Any:
    return _ants().from_sitk(itk_image(image.array.astype(np.float32, copy=False), image.geometry))


def _from_ants(image: Any) -> Image:
    array, geometry = from_itk_image(_ants().to_sitk(image))
    return Image(array, geometry)


def isotropic(image: Image, spacing_mm: float, interpolation: str = "linear") -> Image:
    """`image` resampled to an isotropic grid of `spacing_mm` over the same extent and orientation."""
    ants = _ants()
    resampled = ants.resample_image(_to_ants(image), (spacing_mm,) * 3, use_voxels=False,
                                    interp_type={"linear": 0, "nearest": 1}[interpolation])
    return _from_ants(resampled)


def grid_around(mask: np.ndarray, geometry: Geometry, spacing_mm: float, margin_mm: float) -> Geometry:
    """An isotropic grid in physical space (identity direction) around the voxels of `mask`, with `margin_mm`
    of room: an atlas's grid around a brain."""
    indices = np.argwhere(mask)[:, ::-1].astype(np.float64)  # (x, y, z) voxel indices
    spacing = np.array(geometry.spacing_xyz_mm)
    direction = np.reshape(geometry.direction, (3, 3))
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    low, high = indices.min(axis=0) - 0.5, indices.max(axis=0) + 0.5
    box = low + corners * (high - low)
    points = np.array(geometry.origin_xyz_mm) + (direction @ (box * spacing).T).T
    start, stop = points.min(axis=0) - margin_mm, points.max(axis=0) + margin_mm
    size = np.ceil((stop - start) / spacing_mm).astype(int) + 1
    return Geometry(size_xyz=tuple(int(v) for v in size), spacing_xyz_mm=(float(spacing_mm),) * 3,
                    origin_xyz_mm=tuple(float(v) for v in start), direction=tuple(np.eye(3).ravel()))


def resample(image: Image, onto: Geometry, interpolation: str = "linear") -> Image:
    """`image` on the grid `onto` (no transform; 0 outside it)."""
    ants = _ants()
    target = _to_ants(Image(np.zeros(onto.shape, np.float32), onto))
    out = ants.resample_image_to_target(_to_ants(image), target, interp_type=_INTERPOLATORS[interpolation])
    return _from_ants(out)


_INTERPOLATORS = {"linear": "linear", "nearest": "nearestNeighbor"}


class Warp:
    """The transforms of one registration: `pull` takes maps of the moving image's space onto a grid of the fixed
    image's space (its own or another, the case's native grid)."""

    def __init__(self, transforms: list[str], warped: Image) -> None:
        self.transforms = transforms
        self.warped = warped
        """The moving image on the fixed grid the registration ran on."""

    def pull(self, image: Image, onto: Geometry, interpolation: str = "linear") -> np.ndarray:
        """`image` (of the moving image's space) resampled onto the grid `onto` through the registration's
        transforms. Shape: -> `onto.shape`."""
        ants = _ants()
        target = _to_ants(Image(np.zeros(onto.shape, np.float32), onto))
        out = ants.apply_transforms(fixed=target, moving=_to_ants(image), transformlist=self.transforms,
                                    interpolator=_INTERPOLATORS[interpolation])
        return _from_ants(out).array


@contextlib.contextmanager
def registration(fixed: Image, moving: Image, syn_iterations: tuple[int, ...] = (40, 20, 0), seed: int = 1,
                 transform: str = "SyN") -> Iterator[Warp]:
    """Register `moving` onto `fixed` (ANTs: an affine stage, then SyN with `syn_iterations` per level, Mattes
    mutual information; "Affine" for the affine stage alone). The transforms live in a temporary folder for the
    block, removed after it. A registration ANTs cannot run is an InputError."""
    ants = _ants()
    os.environ[SEED_VARIABLE] = str(seed)
    with tempfile.TemporaryDirectory(prefix="sparseg-registration-") as folder:
        try:
            with _quiet_output(Path(folder) / "output.txt") as printed:
                result = ants.registration(_to_ants(fixed), _to_ants(moving), type_of_transform=transform,
                                           reg_iterations=tuple(syn_iterations), outprefix=str(Path(folder) / "r"))
        except (RuntimeError, ValueError, IndexError) as exc:
            said = [line.strip() for line in (str(exc) + "\n" + printed()).splitlines() if line.strip()]
            raise InputError(f"the registration failed ({said[-1][:200] if said else type(exc).__name__})") from None
        yield Warp(list(result["fwdtransforms"]), _from_ants(result["warpedmovout"]))


@contextlib.contextmanager
def _quiet_output(into: Path) -> Iterator[Callable[[], str]]:
    """What the C++ libraries print to standard output and error (ITK prints its exceptions there, over several
    lines, before raising one) kept in the file `into` for the block; yields what reads it back, so that a
    failure is said in one line."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(into, "wb") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
        yield lambda: into.read_text(errors="replace") if into.exists() else ""
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Standard output silenced, Python's and the C++ libraries' (ANTs' affine averaging prints every matrix of
    a template round, and build_template each round's mean warp), for the block."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def group_template(initial: Image, images: list[Image], iterations: int, syn_iterations: tuple[int, ...],
                   seed: int = 1) -> Image:
    """ANTs' group-wise template of `images` (`ants.build_template`: each registered to the current template,
    affine then SyN, their average moved to the group's mean shape, `iterations` times), on `initial`'s grid,
    started from `initial`. Its working files live in a temporary folder, removed after."""
    ants = _ants()
    os.environ[SEED_VARIABLE] = str(seed)
    with tempfile.TemporaryDirectory(prefix="sparseg-template-") as folder, _quiet_stdout():
        try:
            template = ants.build_template(initial_template=_to_ants(initial), image_list=[_to_ants(i) for i in images],
                                           iterations=iterations, type_of_transform="SyN",
                                           reg_iterations=tuple(syn_iterations), output_dir=folder)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise InputError(f"building the template failed ({str(exc).strip()[:200]})") from None
    return _from_ants(template)
