"""Tversky, Focal, Log-Hausdorff, their TLHF combination, and Dice-Focal (paper, section 3.3).

Pure functions over tensors, wrapped by small modules. Every function takes
the network's logits and a target of the same shape.

Shape: logits, target (B, 1, H, W); target in [0, 1]. Each loss returns a scalar.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from sparseg.config import LossConfig

EPSILON = 1e-6


def tversky_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """1 - TP / (TP + alpha FP + beta FN), soft counts summed over the whole batch (eq. 1).

    alpha weighs false positives, beta false negatives (0.3 and 0.7 in the paper,
    so missed lesion costs more than extra lesion). A batch with no lesion and
    no predicted lesion scores 0.
    """
    probs = torch.sigmoid(logits.float())
    target = target.float()
    tp = (probs * target).sum()
    fp = (probs * (1 - target)).sum()
    fn = ((1 - probs) * target).sum()
    return 1 - (tp + EPSILON) / (tp + alpha * fp + beta * fn + EPSILON)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float, alpha: float | None = None) -> torch.Tensor:
    """Binary focal loss (Lin et al.), the mean over all pixels.

    -[a q (1 - p)^g log p + (1 - a)(1 - q) p^g log(1 - p)]. The paper's eq. 2
    prints only the positive term; the negative term is the standard one and
    keeps the loss from rewarding false positives. alpha=None weighs both
    terms by 1.
    """
    logits, target = logits.float(), target.float()
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    p = log_p.exp()
    positive = -target * (1 - p).pow(gamma) * log_p
    negative = -(1 - target) * p.pow(gamma) * log_not_p
    if alpha is not None:
        positive, negative = alpha * positive, (1 - alpha) * negative
    return (positive + negative).mean()


def distance_field(masks: np.ndarray) -> np.ndarray:
    """Distance of every pixel to the mask's boundary: EDT inside plus EDT outside, per image.

    Images whose mask is empty or full get 0 everywhere (no boundary).
    Shape: (B, 1, H, W) bool -> (B, 1, H, W) float32, in pixels.
    """
    field = np.zeros(masks.shape, dtype=np.float32)
    for index, mask in enumerate(masks):
        if mask.any() and not mask.all():
            field[index, 0] = ndimage.distance_transform_edt(mask[0]) + ndimage.distance_transform_edt(~mask[0])
    return field


def log_hausdorff_loss(logits: torch.Tensor, target: torch.Tensor, exponent: float = 2.0) -> torch.Tensor:
    """log(1 + mean((p - q)^2 (d_p^a + d_q^a))), Karimi and Salcudean's HD loss (eq. 3).

    d_p and d_q are distance fields of the prediction thresholded at 0.5 and of
    the target; they carry no gradient.
    """
    probs = torch.sigmoid(logits.float())
    target = target.float()
    with torch.no_grad():
        d_pred = distance_field((probs > 0.5).cpu().numpy())
        d_target = distance_field((target > 0.5).cpu().numpy())
        weight = torch.from_numpy(d_pred**exponent + d_target**exponent).to(probs.device)
    return torch.log1p(((probs - target) ** 2 * weight).mean())


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice loss over the batch: the Tversky loss with alpha = beta = 0.5."""
    return tversky_loss(logits, target, alpha=0.5, beta=0.5)


def focal_weight_at(epoch: int, epochs: int, config: LossConfig) -> float:
    """The focal term's weight at `epoch` (0-based): linear from start to end over the run."""
    if epochs <= 1:
        return config.focal_weight_start
    fraction = min(max(epoch / (epochs - 1), 0.0), 1.0)
    return config.focal_weight_start + fraction * (config.focal_weight_end - config.focal_weight_start)


class SegmentationLoss(nn.Module):
    """TLHF (gamma_T Tversky + gamma_LH LogHausdorff + gamma_F Focal) or Dice + Focal.

    `terms` gives each unweighted term (for logging), `combine` their weighted
    sum; `forward` does both. The focal weight follows `set_epoch`.
    """

    def __init__(self, config: LossConfig = LossConfig()) -> None:
        super().__init__()
        if config.name not in ("tlhf", "dice_focal"):
            raise ValueError(f"unknown loss {config.name!r}: expected 'tlhf' or 'dice_focal'")
        self.config = config
        self.focal_weight = config.focal_weight_start if config.name == "tlhf" else 1.0

    def set_epoch(self, epoch: int, epochs: int) -> None:
        if self.config.name == "tlhf":
            self.focal_weight = focal_weight_at(epoch, epochs, self.config)

    def terms(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        focal = focal_loss(logits, target, c.focal_gamma, c.focal_alpha)
        if c.name == "dice_focal":
            return {"dice": dice_loss(logits, target), "focal": focal}
        return {
            "tversky": tversky_loss(logits, target, c.tversky_alpha, c.tversky_beta),
            "log_hausdorff": log_hausdorff_loss(logits, target, c.log_hausdorff_exponent),
            "focal": focal,
        }

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        c = self.config
        if c.name == "dice_focal":
            return terms["dice"] + terms["focal"]
        return (
            c.tversky_weight * terms["tversky"]
            + c.log_hausdorff_weight * terms["log_hausdorff"]
            + self.focal_weight * terms["focal"]
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.combine(self.terms(logits, target))
