"""Chain networks (layer-wise MobileNetV2-style and NAS-Bench-Macro spaces).

One class serves as supernet (every op of every layer, called as ``net(x, arch)``) and as stand-alone subnet
(one op per layer, called as ``net(x)``), so an exported subnet is the same code path with fewer modules.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..spaces import ChainSpace, LayerSpec, parse_op
from .ops import ConvBN, MBConv, Stabilizer

__all__ = ["ChainNetwork"]


def _build_op(layer: LayerSpec, op: str, width: float, act: str, stabilizer: bool = False) -> nn.Module:
    ke = parse_op(op)
    if ke is None:
        if layer.reshapes:  # already a linear 1x1 projection (+ BN), as NAS-Bench-Macro trains it
            return ConvBN(layer.in_channels, layer.out_channels, 1, layer.stride, act=None)
        return Stabilizer(layer.in_channels) if stabilizer else nn.Identity()
    return MBConv(layer.in_channels, layer.out_channels, ke[0], layer.hidden_channels(op, width), layer.stride, act)


class ChainNetwork(nn.Module):
    """Stem, searchable layers, head. Build with :meth:`supernet` or :meth:`subnet`."""

    def __init__(self, space: ChainSpace, layers: list[dict[str, nn.Module]]) -> None:
        super().__init__()
        self.space = space
        act = space.activation
        self.stem = ConvBN(space.in_channels, space.stem_channels, 3, space.stem_stride, act=act)
        self.layers = nn.ModuleList(nn.ModuleDict(ops) for ops in layers)
        last = space.layers[-1].out_channels if space.layers else space.stem_channels
        self.head = ConvBN(last, space.head_channels, 1, act=act) if space.head_channels else nn.Identity()
        self.classifier = nn.Linear(space.head_channels or last, space.num_classes)

    @classmethod
    def supernet(cls, space: ChainSpace, *, stabilizer: bool = False) -> ChainNetwork:
        """Every op of every layer at its widest; with ``stabilizer``, identity skips run SCARLET's learnable
        stabilizer (:class:`~optuna_kshot.nn.ops.Stabilizer`) during training and scoring."""
        return cls(space, [
            {op: _build_op(layer, op, max(layer.widths) if layer.widths else 1.0, space.activation, stabilizer)
             for op in layer.ops}
            for layer in space.layers
        ])

    @classmethod
    def subnet(cls, space: ChainSpace, arch: Mapping[str, Any]) -> ChainNetwork:
        """A freshly initialised stand-alone network of one arch."""
        arch = space.validate(arch)
        return cls(space, [
            {op: _build_op(layer, op, width, space.activation)}
            for layer, (op, width) in zip(space.layers, space.layer_ops(arch))
        ])

    @property
    def is_subnet(self) -> bool:
        return all(len(ops) == 1 for ops in self.layers)

    def forward(self, x: torch.Tensor, arch: Mapping[str, Any] | None = None) -> torch.Tensor:
        x = self.stem(x)
        if arch is None:
            if not self.is_subnet:
                raise TypeError("This is a supernet: call it as supernet(x, arch).")
            for ops in self.layers:
                x = next(iter(ops.values()))(x)
        else:
            arch = self.space.validate(arch)
            for ops, spec, (op, width) in zip(self.layers, self.space.layers, self.space.layer_ops(arch)):
                if op not in ops:
                    raise ValueError(f"This network has no op {op!r} in that layer (it holds {list(ops)!r}).")
                module = ops[op]
                x = module(x, spec.hidden_channels(op, width)) if isinstance(module, MBConv) else module(x)
        x = self.head(x)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    def op_prefixes(self, arch: Mapping[str, Any] | None = None) -> list[str]:
        """State-dict prefixes of the searchable ops: all of them, or those on ``arch``'s path."""
        if arch is None:
            return [f"layers.{i}.{op}." for i, ops in enumerate(self.layers) for op in ops]
        arch = self.space.validate(arch)
        return [f"layers.{i}.{op}." for i, (op, _) in enumerate(self.space.layer_ops(arch))]

    @torch.no_grad()
    def export(self, arch: Mapping[str, Any], *, deploy: bool = False) -> ChainNetwork:
        """The arch's subnet with copies of this supernet's weights (sliced to the chosen widths).

        A supernet with stabilizers keeps them (the subnet computes what the supernet scores) unless ``deploy``:
        then skips are plain identities, as in :func:`~optuna_kshot.nn.build_subnet` (loadable without the
        supernet, and what FLOPs/params count)."""
        arch = self.space.validate(arch)
        out = ChainNetwork.__new__(ChainNetwork)
        nn.Module.__init__(out)
        out.space = self.space
        out.stem = copy.deepcopy(self.stem)
        layers = []
        for ops, spec, (op, width) in zip(self.layers, self.space.layers, self.space.layer_ops(arch)):
            module = ops[op]
            if isinstance(module, MBConv):
                static = module.export(spec.hidden_channels(op, width))
            elif isinstance(module, Stabilizer) and deploy:
                static = nn.Identity()
            else:  # fresh module + state copy: real Parameters even when weights were swapped in (K-shot)
                static = _build_op(spec, op, width, self.space.activation, isinstance(module, Stabilizer))
                static = static.to(self.classifier.weight.device)
                static.load_state_dict(module.state_dict())
            layers.append({op: static})
        out.layers = nn.ModuleList(nn.ModuleDict(ops) for ops in layers)
        out.head = copy.deepcopy(self.head)
        out.classifier = copy.deepcopy(self.classifier)
        return out
