"""SCARLET's learnable stabilizer: in training and scoring, a ``Skip`` candidate runs a linear map initialised to
the identity (a bias-free 1x1 convolution on conv features, a bias-free linear map on the last dimension of other
features), with no normalisation and no activation. In front of an op that starts with a linear map it is
linearly equivalent to the identity, so it adds no representational power; exported subnets for deployment drop it
(plain identity) and it counts zero FLOPs there.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..choices import OpChoice, Skip, probe_forwards

__all__ = ["Stabilizer", "add_stabilizers", "skip_input_shapes"]


class Stabilizer(nn.Module):
    """Identity-initialised bias-free linear map over channels (dim 1) of conv features, or over the last dim."""

    def __init__(self, channels: int, *, conv: bool = True) -> None:
        super().__init__()
        self.conv = conv
        self.weight = nn.Parameter(torch.eye(channels).reshape(channels, channels, *((1, 1) if conv else ())))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv:
            return nn.functional.conv2d(x, self.weight)
        return nn.functional.linear(x, self.weight)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, conv={self.conv}"


@torch.no_grad()
def skip_input_shapes(model: nn.Module, space: Any, example_input: torch.Tensor) -> dict[int, torch.Size]:
    """Input shape of every OpChoice holding a :class:`~optuna_kshot.choices.Skip` candidate (keyed by the
    choice module's ``id``), from probe forwards that reach every option."""
    shapes: dict[int, torch.Size] = {}
    targets = [m for m in model.modules() if isinstance(m, OpChoice) and any(isinstance(c, Skip) for c in m.values())]

    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        if args and isinstance(args[0], torch.Tensor):
            shapes.setdefault(id(module), args[0].shape)

    handles = [t.register_forward_pre_hook(hook) for t in targets]
    try:
        probe_forwards(model, space, example_input)
    finally:
        for h in handles:
            h.remove()
    missing = [t.choice_name for t in targets if id(t) not in shapes]
    if missing:
        raise ValueError(f"The probe forward never reached the choices {missing!r}, so their stabilizers cannot be "
                         "shaped; is the example input right?")
    return shapes


def add_stabilizers(model: nn.Module, space: Any, example_input: torch.Tensor) -> int:
    """Replace every ``Skip`` candidate in ``model`` by a :class:`Stabilizer` shaped by a probe forward;
    returns how many were added. The model is changed in place."""
    shapes = skip_input_shapes(model, space, example_input)
    added = 0
    for module in model.modules():
        if not isinstance(module, OpChoice) or id(module) not in shapes:
            continue
        shape = shapes[id(module)]
        conv = len(shape) == 4
        channels = int(shape[1] if conv else shape[-1])
        for key, candidate in list(module.items()):
            if isinstance(candidate, Skip):
                ref = next(model.parameters(), None)
                stab = Stabilizer(channels, conv=conv)
                module[key] = stab.to(ref.device) if ref is not None else stab
                added += 1
    return added
