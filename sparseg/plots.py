"""PNG plots: a training run's losses, validation metrics and loss-collapse view; a case's lesion overlay."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sparseg.config import PreprocessingConfig  # noqa: E402
from sparseg.io import atomic_path, verify_png, write_bytes  # noqa: E402

HISTORY_PLOTS = ("losses.png", "validation.png", "lesion_fraction.png")
"""What `plot_history` writes."""


def plot_history(history: list[dict[str, float]], out: Path, rule: str) -> list[Path]:
    """losses.png, validation.png and lesion_fraction.png in `out` (the paper's Fig. 2 view is the last); `rule`
    names the spacing rule of the validation NSD (`sparseg.evaluation.RULES`)."""
    epochs = [row["epoch"] for row in history]
    paths = []

    def figure(name: str, keys: list[str], title: str, ylabel: str) -> None:
        fig, ax = plt.subplots(figsize=(6, 4))
        for key in keys:
            ax.plot(epochs, [row[key] for row in history], marker="o", markersize=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out / name
        with atomic_path(path, verify_png) as temporary:
            fig.savefig(temporary, format="png", dpi=100)
        plt.close(fig)
        paths.append(path)

    figure(HISTORY_PLOTS[0], [k for k in history[0] if k.startswith("train_")], "training loss terms", "loss")
    figure(HISTORY_PLOTS[1], ["val_dsc", "val_nsd"], f"validation (whole volumes; NSD: {rule} rule)",
           "score")
    figure(HISTORY_PLOTS[2], ["val_predicted_fraction", "val_true_fraction"],
           "predicted vs true lesion fraction (loss collapse shows as ~0)", "fraction of voxels")
    return paths


def overlay_png(adc: np.ndarray, mask: np.ndarray, label: np.ndarray | None, spacing_mm: tuple[float, float, float],
                title: str, n_slices: int = 3, dpi: int = 90) -> bytes:
    """The `n_slices` axial slices with the most lesion as a PNG: ADC in grey, prediction in red, truth (if any)
    in green.

    Shape: adc, mask, label (D, H, W); `spacing_mm` in (z, y, x) sets the pixel aspect.
    """
    lesion = mask.sum(axis=(1, 2)) + (label.sum(axis=(1, 2)) if label is not None else 0)
    chosen = sorted(np.argsort(-lesion, kind="stable")[: min(n_slices, len(lesion))])
    fig, axes = plt.subplots(1, len(chosen), figsize=(4 * len(chosen), 4.6), squeeze=False)
    try:
        for ax, k in zip(axes[0], chosen):
            ax.imshow(adc[k], cmap="gray", vmin=0, vmax=PreprocessingConfig.adc_range[1],
                      aspect=spacing_mm[1] / spacing_mm[2], interpolation="nearest")
            for array, colour in ((mask, "red"), (label, "lime")):
                if array is not None and array[k].any():
                    ax.contour(array[k].astype(np.float32), levels=[0.5], colors=colour, linewidths=1.0)
            true = f", {int(label[k].sum())} true" if label is not None else ""
            ax.set_title(f"slice {k}: {int(mask[k].sum())} predicted{true}", fontsize=9)
            ax.axis("off")
        legend = "red: predicted" + (", green: true" if label is not None else "")
        fig.suptitle(f"{title} ({legend})", fontsize=10, parse_math=False)  # a case id's $ is not TeX
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def plot_overlay(adc: np.ndarray, mask: np.ndarray, label: np.ndarray | None, spacing_mm: tuple[float, float, float],
                 title: str, path: Path, n_slices: int = 3) -> Path:
    """`overlay_png` written to `path` (checked complete before its rename)."""
    return write_bytes(path, overlay_png(adc, mask, label, spacing_mm, title, n_slices))
