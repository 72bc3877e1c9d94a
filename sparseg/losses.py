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


def distance_field(masks: torch.Tensor) -> torch.Tensor:
    """Distance of every pixel to the mask's boundary: EDT inside plus EDT outside, per image.

    Images whose mask is empty or full get 0 everywhere (no boundary). On the
    CPU this is scipy's exact EDT per image; on a GPU the same exact EDT in
    torch (`torch_distance_to`), so a training step never waits for the host.
    Shape: (B, 1, H, W) bool -> (B, 1, H, W) float32, in pixels, on the masks' device.
    """
    if masks.device.type != "cpu":
        return torch_distance_field(masks)
    field = np.zeros(masks.shape, dtype=np.float32)
    for index, mask in enumerate(masks.numpy()):
        if mask.any() and not mask.all():
            field[index, 0] = ndimage.distance_transform_edt(mask[0]) + ndimage.distance_transform_edt(~mask[0])
    return torch.from_numpy(field)


def torch_distance_field(masks: torch.Tensor) -> torch.Tensor:
    """`distance_field` in torch (used for masks on a GPU). Shape: (B, 1, H, W) bool -> (B, 1, H, W) float32."""
    inside = masks[:, 0]
    field = torch_distance_to(~inside) + torch_distance_to(inside)
    has_boundary = inside.any(dim=(1, 2)) & ~inside.all(dim=(1, 2))
    return torch.where(has_boundary[:, None, None], field, torch.zeros_like(field)).unsqueeze(1)


def torch_distance_to(features: torch.Tensor, chunk: int = 4) -> torch.Tensor:
    """Exact Euclidean distance of every pixel to the nearest True pixel of its image (0 on True pixels).

    Two separable passes: the distance g to the nearest True pixel in the same
    column (running max/min of row indices), then d^2(y, x) = min over x' of
    (x - x')^2 + g(y, x')^2, evaluated for all x' at once, `chunk` images at a
    time (chunk x H x W x W floats). Integer squared distances are exact in
    float32, so this equals scipy's `distance_transform_edt` of the complement.
    No well-kept library computes an exact EDT on a torch CUDA tensor without
    CuPy/cuCIM (MONAI's GPU path needs cuCIM), which the image does not ship.
    Shape: (B, H, W) bool -> (B, H, W) float32; inf in an image with no True pixel.
    """
    _, height, width = features.shape
    rows = torch.arange(height, device=features.device, dtype=torch.float32).view(1, height, 1)
    above = torch.where(features, rows, float("-inf")).cummax(dim=1).values
    below = torch.where(features, rows, float("inf")).flip(1).cummin(dim=1).values.flip(1)
    g2 = torch.minimum(rows - above, below - rows).square()
    columns = torch.arange(width, device=features.device, dtype=torch.float32)
    dx2 = (columns.view(width, 1) - columns.view(1, width)).square()
    squared = torch.cat([(part.unsqueeze(2) + dx2).amin(dim=3) for part in g2.split(chunk)])
    return squared.sqrt()


def log_hausdorff_loss(logits: torch.Tensor, target: torch.Tensor, exponent: float = 2.0) -> torch.Tensor:
    """log(1 + mean((p - q)^2 (d_p^a + d_q^a))), Karimi and Salcudean's HD loss (eq. 3).

    d_p and d_q are distance fields of the prediction thresholded at 0.5 and of
    the target; they carry no gradient.
    """
    probs = torch.sigmoid(logits.float())
    target = target.float()
    with torch.no_grad():
        d_pred = distance_field(probs > 0.5)
        d_target = distance_field(target > 0.5)
        weight = d_pred**exponent + d_target**exponent
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
