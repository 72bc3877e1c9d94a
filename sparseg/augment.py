"""Training-time augmentation (paper, section 3.1): random flips, gamma, anisotropic down-up sampling, blur.

Built on TorchIO, which has all four transforms and keeps their random
parameters apart from the deterministic operation. The ADC and Z_ADC channels
go in as a scalar image, the prior channel and the label as label maps:

* flips move every channel and the label together;
* gamma and blur change the ADC and Z_ADC channels only;
* anisotropy (down-sample one in-plane axis by nearest neighbour, then back
  up by linear interpolation) also changes the ADC and Z_ADC channels only:
  TorchIO's `RandomAnisotropy` applies to scalar images by default
  (`scalars_only`), so the prior channel and the label keep their full
  resolution, as Billot et al. do to keep the segmentation sharp. It moves
  no voxel, so the channels stay aligned.

The prior channel and the label therefore stay binary.
"""

from __future__ import annotations

import torch
import torchio as tio

PRIOR = "prior"


def default_transform() -> tio.Transform:
    """The paper's "non-aggressive" augmentations, each applied at random to a slice."""
    return tio.Compose(
        [
            tio.RandomFlip(axes=(0, 1), flip_probability=0.5),
            tio.RandomAnisotropy(axes=(0, 1), downsampling=(1.5, 3.0), p=0.2),
            tio.RandomGamma(log_gamma=(-0.3, 0.3), p=0.3),
            tio.RandomBlur(std=(0.0, 1.0), p=0.2),
        ]
    )


class SliceAugmenter:
    """Apply a TorchIO transform to one 2D training sample.

    Shape: image (C, H, W), label (1, H, W) -> the same shapes.
    """

    def __init__(self, channels: tuple[str, ...], transform: tio.Transform | None = None) -> None:
        self.channels = channels
        self.transform = transform or default_transform()
        self.intensity = [i for i, name in enumerate(channels) if name != PRIOR]
        self.prior = [i for i, name in enumerate(channels) if name == PRIOR]

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fields = {"label": tio.LabelMap(tensor=label[..., None].float())}
        if self.intensity:
            fields["intensity"] = tio.ScalarImage(tensor=image[self.intensity][..., None].float())
        if self.prior:
            fields[PRIOR] = tio.LabelMap(tensor=image[self.prior][..., None].float())
        out = self.transform(tio.Subject(**fields))
        result = torch.empty_like(image)
        if self.intensity:
            result[self.intensity] = out["intensity"].data[..., 0].to(image.dtype)
        if self.prior:
            result[self.prior] = out[PRIOR].data[..., 0].to(image.dtype)
        return result, out["label"].data[..., 0].to(label.dtype)
