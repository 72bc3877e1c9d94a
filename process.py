"""grand-challenge entry point: segment the one case in /input, write the mask to /output.

    python process.py [--input /input] [--output /output] [--weights CKPT ...] [--device auto|cuda|cpu]

Reads /input/images/skull-stripped-adc-brain-mri/*.mha and
/input/images/z-score-adc/*.mha, writes
/output/images/hie-lesion-segmentation/overlay.mha (uint8, the ADC grid).
Checkpoints: --weights, else those in /opt/ml/model/, else model_weights/.
"""

import sys

from sparseg.cli import main

if __name__ == "__main__":
    sys.exit(main(["process", *sys.argv[1:]]))
