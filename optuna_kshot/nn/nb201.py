"""NAS-Bench-201 networks: one class is the supernet (``net(x, arch)``) and the stand-alone subnet (``net(x)``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..spaces import NB201_EDGES, NB201_OPS, NB201Space
from ..spaces._nb201 import edge_name
from .ops import AvgPool3x3, ReLUConvBN, ResidualReduction, Stabilizer

__all__ = ["NB201Network", "Cell"]


def _build_op(op: str, c: int) -> nn.Module | None:
    if op == "none":
        return None
    if op == "skip_connect":
        return nn.Identity()
    if op == "avg_pool_3x3":
        return AvgPool3x3()
    return ReLUConvBN(c, c, 1 if op == "nor_conv_1x1" else 3)


class Cell(nn.Module):
    """A cell; each edge holds the ops it may run (``none`` is never stored: it contributes nothing)."""

    def __init__(self, c: int, ops: Mapping[str, tuple[str, ...]]) -> None:
        super().__init__()
        self.channels = c
        self.edges = nn.ModuleDict()
        for j, i in NB201_EDGES:
            name = edge_name(j, i)
            built = {op: _build_op(op, c) for op in ops[name]}
            self.edges[name] = nn.ModuleDict({op: m for op, m in built.items() if m is not None})

    def forward(self, x: torch.Tensor, ops: Mapping[str, str] | None = None) -> torch.Tensor:
        nodes = [x]
        for j in (1, 2, 3):
            total: torch.Tensor | None = None
            for i in range(j):
                name = edge_name(j, i)
                candidates = self.edges[name]
                if ops is None:
                    module = next(iter(candidates.values()), None)
                else:
                    module = candidates[ops[name]] if ops[name] != "none" else None
                if module is not None:
                    y = module(nodes[i])
                    total = y if total is None else total + y
            nodes.append(torch.zeros_like(x) if total is None else total)
        return nodes[3]


class NB201Network(nn.Module):
    """Stem, three stages of cells with residual reductions between them, BN-ReLU-pool-linear."""

    def __init__(self, space: NB201Space, ops: Mapping[str, tuple[str, ...]]) -> None:
        super().__init__()
        self.space = space
        c = space.channels
        self.stem = nn.Sequential(nn.Conv2d(space.in_channels, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
        blocks: list[nn.Module] = []
        for stage in range(3):
            if stage:
                blocks.append(ResidualReduction(c, 2 * c))
                c *= 2
            blocks.extend(Cell(c, ops) for _ in range(space.cells_per_stage))
        self.blocks = nn.ModuleList(blocks)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(c, space.num_classes)
        self._ops = {k: tuple(v) for k, v in ops.items()}
        self.stabilized = False

    def _with_stabilizers(self) -> NB201Network:
        """Forced SCARLET stabilizers on ``skip_connect`` edges (not equivalent here: ops start with ReLU)."""
        for block in self.blocks:
            if isinstance(block, Cell):
                for candidates in block.edges.values():
                    if "skip_connect" in candidates:
                        candidates["skip_connect"] = Stabilizer(block.channels)
        self.stabilized = True
        return self

    @classmethod
    def supernet(cls, space: NB201Space, *, stabilizer: bool = False) -> NB201Network:
        if stabilizer:
            raise ValueError(
                "The SCARLET stabilizer is not equivalent to a skip in NAS-Bench-201, whose ops start with ReLU "
                "(a 1x1 conv before them is not absorbed); pass force_stabilizer=True to use it anyway."
            )
        return cls(space, {c.name: NB201_OPS for c in space.choices})

    @classmethod
    def subnet(cls, space: NB201Space, arch: Mapping[str, Any]) -> NB201Network:
        arch = space.validate(arch)
        return cls(space, {name: (op,) for name, op in arch.items()})

    @property
    def is_subnet(self) -> bool:
        return all(len(v) == 1 for v in self._ops.values())

    def forward(self, x: torch.Tensor, arch: Mapping[str, Any] | None = None) -> torch.Tensor:
        if arch is None and not self.is_subnet:
            raise TypeError("This is a supernet: call it as supernet(x, arch).")
        ops = None if arch is None else self.space.validate(arch)
        x = self.stem(x)
        for block in self.blocks:
            x = block(x, ops) if isinstance(block, Cell) else block(x)
        x = self.lastact(x)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    def op_prefixes(self, arch: Mapping[str, Any] | None = None) -> list[str]:
        """State-dict prefixes of the searchable ops: all of them, or those on ``arch``'s path."""
        ops = None if arch is None else self.space.validate(arch)
        return [
            f"blocks.{b}.edges.{edge}.{op}."
            for b, block in enumerate(self.blocks) if isinstance(block, Cell)
            for edge, candidates in block.edges.items() for op in candidates
            if ops is None or ops[edge] == op
        ]

    @torch.no_grad()
    def export(self, arch: Mapping[str, Any], *, deploy: bool = False) -> NB201Network:
        """The arch's subnet with copies of this supernet's weights (``deploy`` changes nothing here)."""
        arch = self.space.validate(arch)
        out = NB201Network.subnet(self.space, arch)
        if self.stabilized and not deploy:
            out._with_stabilizers()
        out.to(self.classifier.weight.device)
        src = self.state_dict()
        out.load_state_dict({k: src[k] for k in out.state_dict()})
        return out

    def extra_repr(self) -> str:
        return "subnet" if self.is_subnet else "supernet"


