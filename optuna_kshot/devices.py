"""Choosing the torch device, and placing a model on it."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["resolve_device", "place"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` means CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"`device` must name a torch device such as 'cpu' or 'cuda:0', but got {device!r}.") from e


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """Move ``model`` to ``device`` (in place) and return it. On the CPU its 4-D parameters and buffers (conv
    weights) also take the channels-last memory format, which oneDNN's convolutions run 1.2-1.7x faster on the
    built-in spaces (measured on 2 cores, training and scoring); outputs agree with the default format to float
    rounding. On CUDA the layout is left as it is."""
    model.to(device)
    if device.type == "cpu":
        with torch.no_grad():
            for t in (*model.parameters(), *model.buffers()):
                # .to() re-strides even where .contiguous() would see a 1-channel or 1x1 tensor as both formats
                if t.dim() == 4 and not _channels_last_strides(t):
                    t.data = t.data.to(memory_format=torch.channels_last)
    return model


def _channels_last_strides(t: torch.Tensor) -> bool:
    _, c, h, w = t.shape
    return t.stride() == (c * h * w, 1, w * c, c)
