"""Building blocks shared by supernets and stand-alone subnets.

Each elastic block knows how to cut out its own static version (``to_static``), so exporting a subnet is a walk
over the module tree, and the static version computes exactly what the block computes for that choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..choices import ValueChoice

__all__ = ["ConvBN", "MBConv", "ReLUConvBN", "ResidualReduction", "AvgPool3x3", "activation", "ACTIVATIONS"]


ACTIVATIONS = {"relu6": nn.ReLU6, "relu": nn.ReLU}


def activation(name: str) -> nn.Module:
    """A fresh activation module by name (``relu6`` or ``relu``)."""
    try:
        return ACTIVATIONS[name](inplace=False)
    except KeyError:
        raise ValueError(f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)!r}.") from None


class ConvBN(nn.Sequential):
    """Bias-free conv + BN (+ an activation: ``act="relu6"`` (default), ``"relu"`` or ``None``), 'same' padding
    for odd kernels."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int = 1, *, groups: int = 1, act: str | None = "relu6"
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        if act is not None:
            layers.append(activation(act))
        super().__init__(*layers)


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d, c: int) -> torch.Tensor:
    """BN over the first ``c`` channels of ``bn`` (its running statistics slices are updated in place)."""
    if c == bn.num_features:
        return bn(x)
    training = bn.training or bn.running_mean is None
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.momentum is None and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        momentum = 1.0 / float(bn.num_batches_tracked)
    return F.batch_norm(
        x,
        None if bn.running_mean is None else bn.running_mean[:c],
        None if bn.running_var is None else bn.running_var[:c],
        bn.weight[:c],
        bn.bias[:c],
        training,
        momentum,
        bn.eps,
    )


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand + BN + act, KxK depthwise (stride) + BN + act, 1x1 project + BN, where act is
    ReLU6 (MobileNetV2) or ReLU (NAS-Bench-Macro).

    With a ``width`` value choice (channel search), a forward uses only the first
    ``max(1, round(c_in * expansion * width))`` expanded channels, the width being the current arch's, and
    :meth:`to_static` cuts out that narrower static block.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, hidden: int, stride: int, act: str = "relu6", *,
                 expansion: int | None = None, width: ValueChoice | None = None) -> None:
        super().__init__()
        self.c_in, self.c_out, self.kernel, self.hidden, self.stride = c_in, c_out, kernel, hidden, stride
        self.act = act
        self.expansion = expansion
        self.expand = ConvBN(c_in, hidden, 1, act=act)
        self.depthwise = ConvBN(hidden, hidden, kernel, stride, groups=hidden, act=act)
        self.project = ConvBN(hidden, c_out, 1, act=None)
        self.residual = stride == 1 and c_in == c_out
        if width is not None:
            if expansion is None:
                raise ValueError("An MBConv with a width choice needs its `expansion`.")
            self.width = width

    def hidden_for(self, width: float) -> int:
        """Expanded channels at ``width`` (a fraction of ``c_in * expansion``)."""
        return max(1, int(round(self.c_in * self.expansion * width)))

    def _active_hidden(self) -> int:
        width = self._modules.get("width")
        return self.hidden if width is None else self.hidden_for(width.value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self._active_hidden()
        if hidden == self.hidden:
            out = self.project(self.depthwise(self.expand(x)))
        else:
            out = self._sliced(x, hidden)
        return out + x if self.residual else out

    def _sliced(self, x: torch.Tensor, c: int) -> torch.Tensor:
        if not 1 <= c <= self.hidden:
            raise ValueError(f"MBConv has {self.hidden} hidden channels, so it cannot use {c}.")
        conv, bn, act = self.expand[0], self.expand[1], self.expand[2]
        y = act(_bn(F.conv2d(x, conv.weight[:c]), bn, c))
        conv, bn, act = self.depthwise[0], self.depthwise[1], self.depthwise[2]
        y = F.conv2d(y, conv.weight[:c], None, self.stride, self.kernel // 2, 1, c)
        y = act(_bn(y, bn, c))
        conv, bn = self.project[0], self.project[1]
        return bn(F.conv2d(y, conv.weight[:, :c]))

    @torch.no_grad()
    def to_static(self, arch: Mapping[str, Any] | None = None) -> MBConv:
        """A static MBConv with the arch's expanded channels and copies of their (effective) weights."""
        width = self._modules.get("width")
        c = self.hidden if width is None or arch is None else self.hidden_for(arch[width.choice_name])
        ref = self.project[1].running_mean
        out = MBConv(self.c_in, self.c_out, self.kernel, c, self.stride, self.act).to(ref.device)
        out.train(self.training)
        from ..supernets.walk import effective_tensors

        src = effective_tensors(self)
        for name, value in out.state_dict().items():
            s = src[name]
            if s.dim() == 0:
                value.copy_(s)
            elif name.startswith("project.0."):
                value.copy_(s[:, :c])
            elif name.startswith("project."):
                value.copy_(s)
            else:
                value.copy_(s[:c])
        return out


class ReLUConvBN(nn.Sequential):
    """NAS-Bench-201's conv op: ReLU, bias-free conv, BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class AvgPool3x3(nn.AvgPool2d):
    def __init__(self) -> None:
        super().__init__(3, stride=1, padding=1, count_include_pad=False)


class ResidualReduction(nn.Module):
    """NAS-Bench-201's reduction block: two ReLUConvBN 3x3 (the first with stride 2) plus a
    2x2 average pool + 1x1 conv shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))
