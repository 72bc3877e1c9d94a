"""Tversky, Focal, Log-Hausdorff, their TLHF combination, and Dice-Focal (paper, section 3.3).

Pure functions over tensors, each wrapped by a small module; `CompoundLoss`
sums named modules with weights (TLHF, Dice-Focal), and `build_loss` makes
the one a `LossConfig` names. Every function takes the network's logits and a
target of the same shape.

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


class TverskyLoss(nn.Module):
    """`tversky_loss` as a module. Shape: logits, target (B, 1, H, W) -> scalar."""

    def __init__(self, alpha: float, beta: float) -> None:
        super().__init__()
        self.alpha, self.beta = alpha, beta

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return tversky_loss(logits, target, self.alpha, self.beta)


class DiceLoss(TverskyLoss):
    """`dice_loss` as a module: the Tversky loss with alpha = beta = 0.5."""

    def __init__(self) -> None:
        super().__init__(alpha=0.5, beta=0.5)


class FocalLoss(nn.Module):
    """`focal_loss` as a module. Shape: logits, target (B, 1, H, W) -> scalar."""

    def __init__(self, gamma: float, alpha: float | None = None) -> None:
        super().__init__()
        self.gamma, self.alpha = gamma, alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return focal_loss(logits, target, self.gamma, self.alpha)


class LogHausdorffLoss(nn.Module):
    """`log_hausdorff_loss` as a module. Shape: logits, target (B, 1, H, W) -> scalar."""

    def __init__(self, exponent: float = 2.0) -> None:
        super().__init__()
        self.exponent = exponent

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return log_hausdorff_loss(logits, target, self.exponent)


class CompoundLoss(nn.Module):
    """A weighted sum of named loss terms.

    `terms` gives each unweighted term (training logs them), `combine` their
    weighted sum, `forward` both. `set_epoch` lets a weight follow a schedule.
    Shape: logits, target (B, 1, H, W) -> scalar (`terms`: name -> scalar).
    """

    def __init__(self, terms: dict[str, nn.Module], weights: dict[str, float]) -> None:
        super().__init__()
        self.losses = nn.ModuleDict(terms)
        self.weights = dict(weights)

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Called before each training epoch (0-based) of `epochs`; the weights are fixed unless overridden."""

    def terms(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: loss(logits, target) for name, loss in self.losses.items()}

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.weights[name] * value for name, value in terms.items())  # type: ignore[return-value]

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.combine(self.terms(logits, target))


class TLHFLoss(CompoundLoss):
    """gamma_T Tversky + gamma_LH Log-Hausdorff + gamma_F Focal (eq. 4), gamma_F ramped over the epochs."""

    def __init__(self, config: LossConfig = LossConfig()) -> None:
        super().__init__(
            {
                "tversky": TverskyLoss(config.tversky_alpha, config.tversky_beta),
                "log_hausdorff": LogHausdorffLoss(config.log_hausdorff_exponent),
                "focal": FocalLoss(config.focal_gamma, config.focal_alpha),
            },
            {"tversky": config.tversky_weight, "log_hausdorff": config.log_hausdorff_weight,
             "focal": config.focal_weight_start},
        )
        self.config = config

    def set_epoch(self, epoch: int, epochs: int) -> None:
        self.weights["focal"] = focal_weight_at(epoch, epochs, self.config)


class DiceFocalLoss(CompoundLoss):
    """Dice + Focal, weights 1 and 1: the baseline loss of the paper's Tables 1 and 2."""

    def __init__(self, config: LossConfig = LossConfig(name="dice_focal")) -> None:
        super().__init__({"dice": DiceLoss(), "focal": FocalLoss(config.focal_gamma, config.focal_alpha)},
                         {"dice": 1.0, "focal": 1.0})


LOSSES: dict[str, type[CompoundLoss]] = {"tlhf": TLHFLoss, "dice_focal": DiceFocalLoss}
"""`LossConfig.name` -> the loss it names (the names are `config.LOSS_NAMES`)."""


def build_loss(config: LossConfig = LossConfig()) -> CompoundLoss:
    """The loss a run config names; the name was checked when the config was built."""
    return LOSSES[config.name](config)
