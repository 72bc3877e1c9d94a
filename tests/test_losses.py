from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.losses import FocalLoss, LogHausdorffDTLoss, TverskyLoss
from scipy import ndimage

from sparseg.config import LOSS_NAMES, LossConfig
from sparseg.errors import ConfigError
from sparseg.losses import (
    LOSSES,
    DiceFocalLoss,
    TLHFLoss,
    build_loss,
    dice_loss,
    distance_field,
    focal_loss,
    focal_weight_at,
    log_hausdorff_loss,
    torch_distance_field,
    tversky_loss,
)


def _logits(p: list[float]) -> torch.Tensor:
    p_t = torch.tensor(p, dtype=torch.float64)
    return torch.log(p_t / (1 - p_t)).reshape(1, 1, 1, -1)


def _target(q: list[float]) -> torch.Tensor:
    return torch.tensor(q, dtype=torch.float64).reshape(1, 1, 1, -1)


P, Q = [0.8, 0.2, 0.6, 0.1], [1.0, 0.0, 0.0, 1.0]


def test_tversky_by_hand() -> None:
    tp, fp, fn = 0.8 + 0.1, 0.2 + 0.6, 0.2 + 0.9
    expected = 1 - tp / (tp + 0.3 * fp + 0.7 * fn)
    assert float(tversky_loss(_logits(P), _target(Q), 0.3, 0.7)) == pytest.approx(expected, abs=1e-6)
    assert float(dice_loss(_logits(P), _target(Q))) == pytest.approx(1 - 2 * tp / (2 * tp + fp + fn), abs=1e-6)


def test_tversky_is_zero_for_an_empty_batch_without_false_positives() -> None:
    loss = tversky_loss(torch.full((2, 1, 4, 4), -30.0), torch.zeros(2, 1, 4, 4), 0.3, 0.7)
    assert float(loss) == pytest.approx(0, abs=1e-5)


def test_focal_by_hand() -> None:
    terms = [
        -(1 - 0.8) ** 3 * math.log(0.8),
        -(0.2**3) * math.log(0.8),
        -(0.6**3) * math.log(0.4),
        -(1 - 0.1) ** 3 * math.log(0.1),
    ]
    assert float(focal_loss(_logits(P), _target(Q), gamma=3)) == pytest.approx(np.mean(terms), rel=1e-5)
    weighted = [0.25 * terms[0], 0.75 * terms[1], 0.75 * terms[2], 0.25 * terms[3]]
    assert float(focal_loss(_logits(P), _target(Q), gamma=3, alpha=0.25)) == pytest.approx(np.mean(weighted), rel=1e-5)


def test_log_hausdorff_by_hand() -> None:
    # One lesion pixel in a 3x3 image, predicted empty: only that pixel errs (error 1),
    # with target distance 1 (inside) and no prediction boundary (0): log(1 + 1/9).
    target = torch.zeros(1, 1, 3, 3)
    target[0, 0, 1, 1] = 1
    logits = torch.full((1, 1, 3, 3), -50.0)
    assert float(log_hausdorff_loss(logits, target)) == pytest.approx(math.log(1 + 1 / 9), abs=1e-6)


@pytest.mark.parametrize("field_of", [distance_field, torch_distance_field], ids=["scipy", "torch"])
def test_distance_field_is_zero_without_a_boundary(field_of) -> None:
    masks = torch.zeros((3, 1, 4, 4), dtype=torch.bool)
    masks[1] = True
    masks[2, 0, 0, 0] = True
    field = field_of(masks)
    assert field.shape == masks.shape and field.dtype == torch.float32
    assert not field[0].any() and not field[1].any()
    assert field[2, 0, 0, 0] == 1 and float(field[2, 0, 3, 3]) == pytest.approx(math.hypot(3, 3))


@pytest.mark.parametrize("density", [0.002, 0.05, 0.5, 0.97])
def test_torch_distance_field_equals_scipy(density: float) -> None:
    # The GPU path (run here on the CPU) against scipy's EDT: sparse, blobby and nearly full masks,
    # a non-square frame, columns with no mask pixel, and more images than one chunk.
    rng = np.random.default_rng(int(density * 1000))
    masks = ndimage.binary_dilation(rng.random((9, 1, 40, 56)) < density, structure=np.ones((1, 1, 3, 3)))
    masks[0] = False
    masks[1, 0, 5, 7] = True
    masks = torch.from_numpy(masks)
    np.testing.assert_allclose(torch_distance_field(masks).numpy(), distance_field(masks).numpy(), rtol=1e-6, atol=0)


def _random_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    target = ndimage.binary_dilation(rng.random((4, 1, 32, 32)) < 0.01, structure=np.ones((1, 1, 5, 5)))
    target[3] = False  # one image without lesion
    logits = torch.from_numpy(rng.normal(0, 2, (4, 1, 32, 32)) + 3 * (target - 0.5))
    return logits.float(), torch.from_numpy(target.astype(np.float32))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_monai(seed: int) -> None:
    logits, target = _random_batch(seed)
    monai_tversky = TverskyLoss(sigmoid=True, alpha=0.3, beta=0.7, batch=True, smooth_nr=1e-6, smooth_dr=1e-6)
    expected = float(monai_tversky(logits, target))
    assert float(tversky_loss(logits, target, 0.3, 0.7)) == pytest.approx(expected, abs=1e-5)
    for alpha in (None, 0.25):
        monai_focal = FocalLoss(gamma=3.0, alpha=alpha, use_softmax=False)
        expected = float(monai_focal(logits, target))
        assert float(focal_loss(logits, target, 3.0, alpha)) == pytest.approx(expected, rel=1e-4)
    monai_lh = LogHausdorffDTLoss(sigmoid=True, alpha=2.0, include_background=True)  # one channel: the lesion
    assert float(log_hausdorff_loss(logits, target, 2.0)) == pytest.approx(float(monai_lh(logits, target)), rel=1e-4)


def test_focal_weight_ramps_linearly_from_2_to_4() -> None:
    config = LossConfig()
    assert focal_weight_at(0, 100, config) == 2.0
    assert focal_weight_at(99, 100, config) == 4.0
    assert focal_weight_at(33, 67, config) == pytest.approx(3.0)


def test_tlhf_is_the_weighted_sum_of_its_terms() -> None:
    logits, target = _random_batch(4)
    loss = build_loss(LossConfig())
    assert isinstance(loss, TLHFLoss)
    loss.set_epoch(50, 101)
    terms = loss.terms(logits, target)
    assert float(terms["tversky"]) == pytest.approx(float(tversky_loss(logits, target, 0.3, 0.7)), rel=1e-6)
    assert float(terms["log_hausdorff"]) == pytest.approx(float(log_hausdorff_loss(logits, target, 2.0)), rel=1e-6)
    assert float(terms["focal"]) == pytest.approx(float(focal_loss(logits, target, 3.0)), rel=1e-6)
    expected = 1.5 * terms["tversky"] + 2.0 * terms["log_hausdorff"] + 3.0 * terms["focal"]
    assert float(loss(logits, target)) == pytest.approx(float(expected), rel=1e-6)


def test_dice_focal_is_dice_plus_focal_whatever_the_epoch() -> None:
    logits, target = _random_batch(4)
    loss = build_loss(LossConfig(name="dice_focal"))
    assert isinstance(loss, DiceFocalLoss)
    loss.set_epoch(90, 100)
    terms = loss.terms(logits, target)
    assert set(terms) == {"dice", "focal"}
    assert float(terms["dice"]) == pytest.approx(float(dice_loss(logits, target)), rel=1e-6)
    assert float(loss(logits, target)) == pytest.approx(float(terms["dice"] + terms["focal"]), rel=1e-6)


def test_gradients_flow_through_every_term() -> None:
    logits, target = _random_batch(5)
    logits.requires_grad_(True)
    build_loss()(logits, target).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_the_factory_makes_every_loss_a_config_may_name() -> None:
    assert set(LOSSES) == set(LOSS_NAMES)
    with pytest.raises(ConfigError, match="^name: unknown value 'dice'"):
        LossConfig(name="dice")
