"""PNG plots of a training run: losses, validation metrics, and the loss-collapse view."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_history(history: list[dict[str, float]], out: Path) -> list[Path]:
    """losses.png, validation.png and lesion_fraction.png in `out` (the paper's Fig. 2 view is the last)."""
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
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)

    figure("losses.png", [k for k in history[0] if k.startswith("train_")], "training loss terms", "loss")
    figure("validation.png", ["val_dsc", "val_nsd"], "validation (whole volumes)", "score")
    figure("lesion_fraction.png", ["val_predicted_fraction", "val_true_fraction"],
           "predicted vs true lesion fraction (loss collapse shows as ~0)", "fraction of voxels")
    return paths
