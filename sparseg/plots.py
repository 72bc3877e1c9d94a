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


OVERLAY_MARGIN_PX = 8
"""Pixels of background kept around the brain's in-plane box in overlays."""


def brain_box(adc: np.ndarray, *masks: np.ndarray | None, margin: int = OVERLAY_MARGIN_PX) -> tuple[slice, slice]:
    """The in-plane (rows, columns) box of the brain (non-zero ADC) and of any mask, widened by `margin` pixels
    within the frame; the whole frame when there is neither. Shape: (D, H, W) arrays."""
    seen = adc != 0
    for mask in masks:
        if mask is not None:
            seen = seen | mask
    rows, cols = np.flatnonzero(seen.any(axis=(0, 2))), np.flatnonzero(seen.any(axis=(0, 1)))
    if rows.size == 0:
        return slice(0, adc.shape[1]), slice(0, adc.shape[2])
    return (slice(max(0, rows[0] - margin), min(adc.shape[1], rows[-1] + 1 + margin)),
            slice(max(0, cols[0] - margin), min(adc.shape[2], cols[-1] + 1 + margin)))


def overlay_png(adc: np.ndarray, mask: np.ndarray, label: np.ndarray | None, spacing_mm: tuple[float, float, float],
                title: str, n_slices: int = 3, dpi: int = 90, outline: np.ndarray | None = None) -> bytes:
    """The `n_slices` axial slices with the most lesion as a PNG, cropped to the brain's box (`brain_box`): ADC
    in grey, prediction in red, truth (if any) in green, and the registered atlas's brain (`outline`, where the
    Z_ADC was computed from an atlas) in dashed yellow.

    Shape: adc, mask, label, outline (D, H, W); `spacing_mm` in (z, y, x) sets the pixel aspect.
    """
    rows, cols = brain_box(adc, mask, label)
    adc, mask = adc[:, rows, cols], mask[:, rows, cols]
    label = label[:, rows, cols] if label is not None else None
    outline = outline[:, rows, cols] if outline is not None else None
    lesion = mask.sum(axis=(1, 2)) + (label.sum(axis=(1, 2)) if label is not None else 0)
    chosen = sorted(np.argsort(-lesion, kind="stable")[: min(n_slices, len(lesion))])
    fig, axes = plt.subplots(1, len(chosen), figsize=(4 * len(chosen), 4.6), squeeze=False)
    try:
        for ax, k in zip(axes[0], chosen):
            ax.imshow(adc[k], cmap="gray", vmin=0, vmax=PreprocessingConfig.adc_range[1],
                      aspect=spacing_mm[1] / spacing_mm[2], interpolation="nearest")
            if outline is not None and outline[k].any():
                ax.contour(outline[k].astype(np.float32), levels=[0.5], colors="yellow", linewidths=0.8,
                           linestyles="dashed")
            for array, colour in ((mask, "red"), (label, "lime")):
                if array is not None and array[k].any():
                    ax.contour(array[k].astype(np.float32), levels=[0.5], colors=colour, linewidths=1.0)
            true = f", {int(label[k].sum())} true" if label is not None else ""
            ax.set_title(f"slice {k}: {int(mask[k].sum())} predicted{true}", fontsize=9)
            ax.axis("off")
        legend = ("red: predicted" + (", green: true" if label is not None else "")
                  + (", yellow: the atlas's brain" if outline is not None else ""))
        fig.suptitle(f"{title} ({legend})", fontsize=10, parse_math=False)  # a case id's $ is not TeX
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def thumbnail_png(overlay: bytes, height: int = 48) -> bytes:
    """A small copy of an overlay PNG (`overlay_png`) for a table row, about `height` pixels high, in 16 grey
    levels and red (a few KB: a 1,000-case page stays a few MB)."""
    import matplotlib.image

    picture = matplotlib.image.imread(io.BytesIO(overlay), format="png")[..., :3]
    step = max(1, int(np.ceil(picture.shape[0] / height)))
    rows, cols = picture.shape[0] // step * step, picture.shape[1] // step * step
    blocks = picture[:rows, :cols].reshape(rows // step, step, cols // step, step, 3)
    # each block's mean, but the reddest pixel's colour where a contour crosses it, so thin contours survive
    redness = blocks[..., 0] - blocks[..., 1:].max(axis=-1)
    small = np.round(blocks.mean(axis=(1, 3)) * 15) / 15
    contour = redness.max(axis=(1, 3)) > 0.5
    small[contour] = (0.9, 0.1, 0.1)
    buffer = io.BytesIO()
    plt.imsave(buffer, np.clip(small, 0.0, 1.0), format="png", pil_kwargs={"optimize": True})
    return buffer.getvalue()


def plot_overlay(adc: np.ndarray, mask: np.ndarray, label: np.ndarray | None, spacing_mm: tuple[float, float, float],
                 title: str, path: Path, n_slices: int = 3) -> Path:
    """`overlay_png` written to `path` (checked complete before its rename)."""
    return write_bytes(path, overlay_png(adc, mask, label, spacing_mm, title, n_slices))
