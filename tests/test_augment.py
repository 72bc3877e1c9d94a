from __future__ import annotations

import torch
import torchio as tio

from sparseg.augment import SliceAugmenter


def _sample() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    image = torch.rand(3, 32, 40)
    image[2] = (image[2] > 0.7).float()
    label = torch.zeros(1, 32, 40)
    label[0, 5:12, 3:9] = 1
    return image, label


def test_intensity_transforms_leave_prior_and_label_alone() -> None:
    image, label = _sample()
    intensity = tio.Compose([tio.RandomGamma(log_gamma=(0.3, 0.3)), tio.RandomBlur(std=(1, 1))])
    augment = SliceAugmenter(("adc", "z", "prior"), intensity)
    out, out_label = augment(image, label)
    assert not torch.allclose(out[:2], image[:2])
    assert torch.equal(out[2], image[2]) and torch.equal(out_label, label)


def test_spatial_transforms_move_everything_together() -> None:
    image, label = _sample()
    augment = SliceAugmenter(("adc", "z", "prior"), tio.RandomFlip(axes=(0,), flip_probability=1.0))
    out, out_label = augment(image, label)
    assert torch.equal(out, image.flip(1)) and torch.equal(out_label, label.flip(1))


def test_default_augmentation_keeps_binary_maps_binary() -> None:
    image, label = _sample()
    augment = SliceAugmenter(("adc", "z", "prior"))
    for _ in range(30):
        out, out_label = augment(image, label)
        assert out.shape == image.shape and out_label.shape == label.shape
        assert set(out[2].unique().tolist()) <= {0.0, 1.0}
        assert set(out_label.unique().tolist()) <= {0.0, 1.0}


def test_anisotropy_degrades_adc_and_z_only() -> None:
    image, label = _sample()
    anisotropy = tio.RandomAnisotropy(axes=(0, 1), downsampling=(3.0, 3.0), p=1.0)
    out, out_label = SliceAugmenter(("adc", "z", "prior"), anisotropy)(image, label)
    assert not torch.allclose(out[0], image[0]) and not torch.allclose(out[1], image[1])
    assert torch.equal(out[2], image[2]) and torch.equal(out_label, label)
