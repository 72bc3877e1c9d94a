"""Predict lesion probabilities for whole volumes with a trained network.

The same preprocessing as training (`sparseg.preprocessing.to_slices`), all
slices of a case in as few forward passes as `batch_size` allows, mixed
precision on CUDA, and the probabilities mapped back to the case's grid.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from sparseg.config import RunConfig
from sparseg.preprocessing import from_slices, to_slices


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA GPUs that have it, fp16 on others, nothing on the CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@torch.inference_mode()
def predict_slices(model: nn.Module, slices: np.ndarray, device: torch.device, batch_size: int = 16) -> np.ndarray:
    """Sigmoid probabilities of preprocessed slices. Shape: (D, C, S, S) -> (D, S, S) float32."""
    model.eval()
    out = np.empty((slices.shape[0], *slices.shape[2:]), dtype=np.float32)
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    for start in range(0, len(slices), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(slices[start : start + batch_size], dtype=np.float32))
        batch = batch.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        with autocast(device):
            logits = model(batch)
        out[start : start + len(batch)] = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
    return out


def predict_volume(
    model: nn.Module, config: RunConfig, adc: np.ndarray, z: np.ndarray, device: torch.device, batch_size: int = 16
) -> np.ndarray:
    """Lesion probabilities on the volume's own grid. Shape: (D, H, W) ADC and Z_ADC -> (D, H, W) float32."""
    probabilities = predict_slices(model, to_slices(adc, z, config.preprocessing), device, batch_size)
    return from_slices(probabilities, adc.shape[1:])
