"""Make the README's pictures under docs/ (all from synthetic data and the bundled demo weights).

    python docs/pictures.py [--run RUN]

- sample-overlay.png: the bundled sample case MGHNICU_901-VISIT_01 segmented by the demo weights;
- report.png: the top of the QA page of four synthetic labelled cases, as headless Chromium shows it;
- training-curves.png (with --run): a training run's losses.png, validation.png and lesion_fraction.png
  side by side, e.g. of `sparseg train` with resources/configs/demo.json shortened to 10 epochs of 600
  slices on `sparseg synth --cases 24 --seed 1`, fold 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sparseg.batch import predict_batch  # noqa: E402
from sparseg.cases import find_any_cases, overlay_name  # noqa: E402
from sparseg.synth import SynthConfig, write_dataset  # noqa: E402
from sparseg.weights import load_predictor  # noqa: E402

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
DEMO_WEIGHTS = Path("model_weights/sparseg-demo.safetensors")
"""Relative to the repository (where main() runs): the page shows the path as given."""


def sample_overlay(folder: Path) -> None:
    cases = find_any_cases(ROOT / "test" / "MGHNICU_901-VISIT_01" / "input")
    predict_batch(cases, folder / "sample", load_predictor([DEMO_WEIGHTS], "cpu"), overlays=True)
    shutil.copyfile(folder / "sample" / overlay_name(cases[0].case_id), DOCS / "sample-overlay.png")


def report_screenshot(folder: Path) -> None:
    from playwright.sync_api import sync_playwright

    write_dataset(folder / "data", n_cases=4, seed=2, config=SynthConfig().with_shape(160, 24))
    predict_batch(find_any_cases(folder / "data"), folder / "masks", load_predictor([DEMO_WEIGHTS], "cpu"), report=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 760})
        page.goto((folder / "masks" / "report.html").as_uri())
        page.wait_for_load_state("load")
        page.wait_for_function("[...document.images].filter(i => i.getBoundingClientRect().top < innerHeight)"
                               ".every(i => i.complete && i.naturalWidth > 0)")  # the overlays in view, lazily
        page.screenshot(path=str(DOCS / "report.png"))
        browser.close()


def training_curves(run: Path) -> None:
    names = ("losses.png", "validation.png", "lesion_fraction.png")
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    for ax, name in zip(axes, names):
        ax.imshow(plt.imread(run / name))
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(DOCS / "training-curves.png", dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a training run folder, for training-curves.png")
    args = parser.parse_args()
    os.chdir(ROOT)
    with tempfile.TemporaryDirectory() as folder:
        sample_overlay(Path(folder))
        report_screenshot(Path(folder))
    if args.run:
        training_curves(args.run)
    print(f"wrote the pictures under {DOCS}")


if __name__ == "__main__":
    main()
