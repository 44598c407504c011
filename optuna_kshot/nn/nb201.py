"""NAS-Bench-201 networks as plain modules: every cell edge is an :class:`~optuna_kshot.OpChoice` in the
supernet model, or one plain op in a stand-alone subnet (``none`` is :class:`~optuna_kshot.Zero`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..choices import OpChoice, Skip, Zero
from ..spaces import NB201_EDGES, NB201_OPS, NB201Space
from .ops import AvgPool3x3, ReLUConvBN, ResidualReduction

__all__ = ["NB201Network", "Cell"]


def edge_choice_name(j: int, i: int) -> str:
    """The choice name of the edge from node i to node j (as :class:`~optuna_kshot.spaces.NB201Space` names it)."""
    return f"edge_{j}_{i}"


def _build_op(op: str, c: int) -> nn.Module:
    if op == "none":
        return Zero()
    if op == "skip_connect":
        return Skip()
    if op == "avg_pool_3x3":
        return AvgPool3x3()
    return ReLUConvBN(c, c, 1 if op == "nor_conv_1x1" else 3)


class Cell(nn.Module):
    """A cell: node j is the sum of its incoming edges; node 3 is the output."""

    def __init__(self, c: int, arch: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.channels = c
        self.edges = nn.ModuleDict()
        for j, i in NB201_EDGES:
            name = edge_choice_name(j, i)
            if arch is None:
                self.edges[name] = OpChoice(name, {op: _build_op(op, c) for op in NB201_OPS})
            else:
                self.edges[name] = _build_op(arch[name], c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in (1, 2, 3):
            total = self.edges[edge_choice_name(j, 0)](nodes[0])
            for i in range(1, j):
                total = total + self.edges[edge_choice_name(j, i)](nodes[i])
            nodes.append(total)
        return nodes[3]


class NB201Network(nn.Module):
    """Stem, three stages of cells with residual reductions between them, BN-ReLU-pool-linear. ``arch=None``
    builds the supernet model, an arch its stand-alone subnet."""

    def __init__(self, space: NB201Space, arch: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        arch = None if arch is None else space.validate(arch)
        self.space = space
        c = space.channels
        self.stem = nn.Sequential(nn.Conv2d(space.in_channels, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
        blocks: list[nn.Module] = []
        for stage in range(3):
            if stage:
                blocks.append(ResidualReduction(c, 2 * c))
                c *= 2
            blocks.extend(Cell(c, arch) for _ in range(space.cells_per_stage))
        self.blocks = nn.ModuleList(blocks)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(c, space.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        x = self.lastact(x)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
