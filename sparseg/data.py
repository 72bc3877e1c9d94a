"""Cases -> in-memory 2D training slices, whole validation volumes, patient-level folds, the data fingerprint.

Every axial slice of every training case is used (as in the paper),
preprocessed once by the same function inference uses and cached in memory
as float16. Validation cases keep their ADC and Z_ADC volumes as read, so the
trainer segments them exactly as `sparseg predict` segments the files, and
scores them like the challenge: per case, on the original grid.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from sparseg.augment import SliceAugmenter
from sparseg.cases import SYNTH_MANIFEST, Case
from sparseg.config import EvaluationConfig, PreprocessingConfig, burden_group
from sparseg.errors import InputError
from sparseg.io import Volume, binary, image_files, read_image, require_same_grid
from sparseg.metrics import lesion_burden
from sparseg.preprocessing import label_to_slices, to_slices


@dataclass
class PreparedCase:
    """One labelled case: network slices and the label on its own grid."""

    case_id: str
    slices: np.ndarray
    """(D, C, S, S) float16, the network input."""
    targets: np.ndarray
    """(D, 1, S, S) float16, the label resized like the input."""
    burden: float

    @property
    def burden_group(self) -> str:
        return burden_group(self.burden, EvaluationConfig.burden_edges)


@dataclass
class ValidationCase:
    """One held-out labelled case as inference meets it: the volumes as read, and the label."""

    case_id: str
    adc: Volume
    z: Volume
    label: np.ndarray
    """(D, H, W) bool, on the ADC image's grid."""
    burden: float

    @property
    def burden_group(self) -> str:
        return burden_group(self.burden, EvaluationConfig.burden_edges)


def _read_labelled(case: Case) -> tuple[Volume, Volume, np.ndarray]:
    """ADC, Z_ADC and the label as a bool mask, all on one grid; a bad file raises InputError naming it."""
    if case.label is None:
        raise InputError(f"{case.adc}: case {case.case_id} has no label")
    adc, z, label = read_image(case.adc), read_image(case.z), read_image(case.label)
    require_same_grid(adc, z, label)
    return adc, z, binary(label)


def read_validation_case(case: Case) -> ValidationCase:
    """Read one held-out labelled case for validation."""
    adc, z, mask = _read_labelled(case)
    return ValidationCase(case.case_id, adc, z, mask, lesion_burden(mask, adc.array))


def prepare_case(case: Case, config: PreprocessingConfig) -> PreparedCase:
    """Read and preprocess one labelled case; a bad file raises InputError naming it."""
    adc, z, mask = _read_labelled(case)
    return PreparedCase(
        case_id=case.case_id,
        slices=to_slices(adc.array, z.array, config).astype(np.float16),
        targets=label_to_slices(mask, config)[:, None].astype(np.float16),
        burden=lesion_burden(mask, adc.array),
    )


def stratified_folds(cases: list[PreparedCase] | list[ValidationCase], folds: int, seed: int) -> list[list[str]]:
    """Patient-level K-fold split, stratified by burden group: case ids of each fold."""
    if not 2 <= folds <= len(cases):
        raise InputError(f"cannot split {len(cases)} cases into {folds} folds")
    rng = random.Random(seed)
    assignment: list[list[str]] = [[] for _ in range(folds)]
    position = 0
    for group in sorted({c.burden_group for c in cases}):
        members = sorted(c.case_id for c in cases if c.burden_group == group)
        rng.shuffle(members)
        for case_id in members:
            assignment[position % folds].append(case_id)
            position += 1
    return [sorted(fold) for fold in assignment]


SYNTHETIC_NOTICE = "trained on synthetic data (sparseg synth): for demos and tests only, not for real scans"


FINGERPRINT_FORMAT = "case-role/1"
"""How `fingerprint` keys the files it hashes: `<case id>/<role>` (adc, zadc, label). Earlier versions keyed
them by file name alone, so manifest cases `p01/adc.nii.gz` and `p02/adc.nii.gz` counted as one file."""
ROLES = (("adc", "adc"), ("zadc", "z"), ("label", "label"))
"""A case's files by role: (the role's name in a fingerprint, the `Case` field)."""


def fingerprint(cases: list[Case]) -> dict[str, object]:
    """Case ids and the sha256 of every file, keyed by case id and role: which data a checkpoint was trained on.

    Data written by `sparseg synth` (a synth manifest beside the case folders) is flagged as synthetic.
    """
    files = {}
    for case in cases:
        for role, field in ROLES:
            path = getattr(case, field)
            if path is not None:  # a MetaImage header with its data files (`io.image_files`): every byte read
                digest = hashlib.sha256()
                for part in image_files(path):
                    digest.update(Path(part).read_bytes())
                files[f"{case.case_id}/{role}"] = digest.hexdigest()
    digest = hashlib.sha256("".join(f"{k}:{v}" for k, v in sorted(files.items())).encode()).hexdigest()
    synthetic = any((c.adc.parent.parent / SYNTH_MANIFEST).is_file() for c in cases)
    result: dict[str, object] = {"case_ids": sorted(c.case_id for c in cases), "format": FINGERPRINT_FORMAT,
                                 "files_sha256": files, "sha256": digest, "synthetic": synthetic}
    if synthetic:
        result["notice"] = SYNTHETIC_NOTICE
    return result


class SliceDataset(Dataset):
    """All slices of the given cases. Item: (image (C, S, S), target (1, S, S)) float32, optionally augmented."""

    def __init__(self, cases: list[PreparedCase], augmenter: SliceAugmenter | None = None) -> None:
        self.images = np.concatenate([c.slices for c in cases])
        self.targets = np.concatenate([c.targets for c in cases])
        self.augmenter = augmenter

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(self.images[index].astype(np.float32))
        target = torch.from_numpy(self.targets[index].astype(np.float32))
        if self.augmenter is not None:
            image, target = self.augmenter(image, target)
        return image, target


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, optionally cut to `per_epoch` slices, sharded over ranks.

    Every rank gets the same number of indices (the tail that does not divide
    evenly is dropped), and the ranks' shares are disjoint. The order depends
    only on (seed, epoch), so a resumed run sees the same slices.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world: int = 1, per_epoch: int | None = None) -> None:
        self.size, self.seed, self.rank, self.world = size, seed, rank, world
        self.per_epoch = min(per_epoch or size, size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)[: self.per_epoch]
        usable = (len(order) // self.world) * self.world
        return order[self.rank : usable : self.world].tolist()

    def __iter__(self):
        return iter(self.indices())

    def __len__(self) -> int:
        return self.per_epoch // self.world
