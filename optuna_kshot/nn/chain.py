"""Chain networks (layer-wise MobileNetV2-style and NAS-Bench-Macro spaces), as plain modules with choices.

The supernet model puts an :class:`~optuna_kshot.OpChoice` in every searchable layer (and a width
:class:`~optuna_kshot.ValueChoice` in every MBConv of a space with width choices); a stand-alone subnet holds one
plain op per layer. Both run the same ``forward``, and an exported subnet is the supernet model with each choice
replaced by its chosen (sliced) op.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..choices import OpChoice, Skip, ValueChoice
from ..spaces import ChainSpace, LayerSpec, parse_op
from .ops import ConvBN, MBConv

__all__ = ["ChainNetwork"]


def _build_op(layer: LayerSpec, op: str, width: float, act: str, width_choice: str | None = None) -> nn.Module:
    ke = parse_op(op)
    if ke is None:
        if layer.reshapes:  # already a linear 1x1 projection (+ BN), as NAS-Bench-Macro trains it
            return ConvBN(layer.in_channels, layer.out_channels, 1, layer.stride, act=None)
        return Skip()
    hidden = layer.hidden_channels(op, width)
    if width_choice is None:
        return MBConv(layer.in_channels, layer.out_channels, ke[0], hidden, layer.stride, act, expansion=ke[1])
    return MBConv(layer.in_channels, layer.out_channels, ke[0], hidden, layer.stride, act, expansion=ke[1],
                  width=ValueChoice(width_choice, layer.widths))


class ChainNetwork(nn.Module):
    """Stem, searchable layers, head. ``arch=None`` builds the supernet model (choices in every layer, each op at
    its widest); an arch builds that arch's stand-alone subnet."""

    def __init__(self, space: ChainSpace, arch: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        act = space.activation
        layers: list[nn.Module] = []  # built before the stem: the seeded initialisation order of earlier releases
        if arch is None:
            for i, layer in enumerate(space.layers):
                top = max(layer.widths) if layer.widths else 1.0
                width_choice = f"width{i}" if layer.widths is not None else None
                layers.append(OpChoice(f"layer{i}", {op: _build_op(layer, op, top, act, width_choice)
                                                     for op in layer.ops}))
        else:
            arch = space.validate(arch)
            for layer, (op, width) in zip(space.layers, space.layer_ops(arch)):
                layers.append(_build_op(layer, op, width, act))
        self.space = space
        self.stem = ConvBN(space.in_channels, space.stem_channels, 3, space.stem_stride, act=act)
        self.layers = nn.ModuleList(layers)
        last = space.layers[-1].out_channels if space.layers else space.stem_channels
        self.head = ConvBN(last, space.head_channels, 1, act=act) if space.head_channels else nn.Identity()
        self.classifier = nn.Linear(space.head_channels or last, space.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        x = self.head(x)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
