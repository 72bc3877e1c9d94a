"""What the I/O checks cost: SPARSeg's checked reads and verified writes against SimpleITK's plain ones.

A full-size case (256x256x64 voxels): its ADC as compressed float32 .mha and .nii.gz,
and a uint8 lesion mask. Reading checks the header, the geometry and the whole
compressed stream (zlib's Adler-32, gzip's CRC-32) before ITK decodes it; writing
flushes to disk and reads the file back before its rename. Prints the median
seconds of each and their ratio, from one run.

    python bench/io.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from sparseg.environment import machine_summary
from sparseg.io import Geometry, read_image, write_mask
from sparseg.synth import SynthConfig, generate_case

FULL_SIZE = SynthConfig().with_shape(256, 64)


def _median(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _plain_write(mask: np.ndarray, geometry: Geometry, path: Path) -> None:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    geometry.apply_to(image)
    sitk.WriteImage(image, str(path), True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    case = generate_case(seed=0, index=0, config=FULL_SIZE)
    print(f"machine: {machine_summary()}")
    print(f"case: {case.adc.shape[::-1]} voxels (x, y, z), ADC float32, mask uint8\n")
    print("| operation | SimpleITK alone (s) | SPARSeg, checked (s) | ratio |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for suffix in (".mha", ".nii.gz"):
            path = folder / f"adc{suffix}"
            image = sitk.GetImageFromArray(case.adc)
            case.geometry.apply_to(image)
            sitk.WriteImage(image, str(path), True)
            plain = _median(lambda: sitk.GetArrayFromImage(sitk.ReadImage(str(path))), args.repeats)
            checked = _median(lambda: read_image(path), args.repeats)
            print(f"| read ADC {suffix} ({path.stat().st_size / 1e6:.1f} MB) | {plain:.4f} | {checked:.4f} | "
                  f"{checked / plain:.2f} |")
        for suffix in (".mha", ".nii.gz"):
            plain = _median(lambda: _plain_write(case.label, case.geometry, folder / f"plain{suffix}"), args.repeats)
            checked = _median(lambda: write_mask(case.label, case.geometry, folder / f"mask{suffix}"), args.repeats)
            print(f"| write mask {suffix} | {plain:.4f} | {checked:.4f} | {checked / plain:.2f} |")


if __name__ == "__main__":
    main()
