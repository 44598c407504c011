"""One-shot supernets (Single Path One-Shot, FairNAS): one weight set per candidate, shared by every arch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..choices import OpChoice, chosen, discover_space, probe_forwards, use_arch
from ..searchspace import Arch, SearchSpace
from .contract import SupernetDefaults
from .stabilizer import add_stabilizers
from .walk import export_path

__all__ = ["OneShotSupernet", "check_output_shapes"]


def _same_choices(space: SearchSpace, discovered: SearchSpace) -> None:
    mine = {c.name: tuple(str(o) for o in c.options) for c in space.choices}
    found = {c.name: tuple(str(o) for o in c.options) for c in discovered.choices}
    if mine != found:
        diff = sorted(set(mine.items()) ^ set(found.items()))
        raise ValueError(f"The model's choices differ from the space's: {diff!r}.")


@torch.no_grad()
def check_output_shapes(model: nn.Module, space: SearchSpace, example_input: torch.Tensor) -> None:
    """Probe forwards that reach every option of every choice; a choice whose options give outputs of different
    shapes is refused with a ``ValueError`` naming it (a supernet needs interchangeable candidates)."""
    outputs: dict[int, dict[str, tuple[int, ...]]] = {}
    names: dict[int, str] = {}

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            outputs.setdefault(id(module), {})[str(chosen(module.choice_name))] = tuple(output.shape)

    handles = []
    for m in model.modules():
        if isinstance(m, OpChoice):
            names[id(m)] = m.choice_name
            handles.append(m.register_forward_hook(hook))
    try:
        probe_forwards(model, space, example_input)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"A probe forward of the model failed ({e}); do the options of each choice take and give "
                         "tensors of the same shape?") from e
    finally:
        for h in handles:
            h.remove()
    for key, shapes in outputs.items():
        if len(set(shapes.values())) > 1:
            raise ValueError(f"The options of choice {names[key]!r} give outputs of different shapes "
                             f"{shapes!r}; every option of a choice must give the same shape.")


class OneShotSupernet(SupernetDefaults, nn.Module):
    """A one-shot supernet over a model with choices: ``supernet(x, arch)`` runs ``model(x)`` with ``arch`` in
    context; every arch shares the candidates' weights.

    Args:
        model: an ``nn.Module`` with :class:`~optuna_kshot.OpChoice`/:class:`~optuna_kshot.ValueChoice` inside
            (the supernet uses it as is: pass a copy to keep yours).
        space: the search space (default: discovered from the model; a built-in space must match it).
        example_input: a batch the model takes (one sample is enough); checks that the options of every choice
            give outputs of one shape (unless ``check_shapes=False``), shapes the stabilizers and lets costs be
            measured for any model.
        stabilizer: SCARLET's learnable stabilizer in place of every ``Skip`` candidate (needs ``example_input``).
    """

    kind = "oneshot"

    def __init__(self, model: nn.Module, space: SearchSpace | None = None, *,
                 example_input: torch.Tensor | None = None, stabilizer: bool = False,
                 check_shapes: bool = True) -> None:
        super().__init__()
        discovered = discover_space(model)
        if space is None:
            space = discovered
        else:
            _same_choices(space, discovered)
        self.model = model
        self.space = space
        self.example_shape: tuple[int, ...] | None = None
        self.example_dtype: torch.dtype = torch.float32
        if example_input is not None:
            if not isinstance(example_input, torch.Tensor):
                raise TypeError(f"`example_input` must be a tensor, but got {type(example_input).__name__}.")
            self.example_shape = (1, *example_input.shape[1:])
            self.example_dtype = example_input.dtype
            if check_shapes:
                check_output_shapes(model, space, example_input[:1])
        self.stabilized = False
        if stabilizer:
            if example_input is None:
                raise ValueError("The SCARLET stabilizer is shaped by a probe forward: pass `example_input`.")
            if not add_stabilizers(model, space, example_input[:1]):
                raise ValueError("stabilizer=True, but the model has no Skip candidate to stabilize.")
            self.stabilized = True

    def example_input(self) -> torch.Tensor | None:
        """A one-sample input of the example's shape on the supernet's device (zeros), or None."""
        if self.example_shape is None:
            return None
        ref = next(iter(self.parameters()), None)
        return torch.zeros(self.example_shape, dtype=self.example_dtype,
                           device=ref.device if ref is not None else "cpu")

    def forward(self, x: torch.Tensor, arch: Mapping[str, Any]) -> torch.Tensor:
        arch = self.space.validate(arch)
        with use_arch(arch):
            return self.model(x)

    def run(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        """``forward`` for an arch validated already (inside the library)."""
        with use_arch(arch):
            return self.model(x)

    @torch.no_grad()
    def export(self, arch: Mapping[str, Any], *, deploy: bool = False, share_weights: bool = False) -> nn.Module:
        """The arch's plain subnet with copies of its weights; ``deploy`` drops stabilizers (plain identities);
        ``share_weights`` aliases the supernet's parameters instead of copying them (read-only use, e.g.
        scoring)."""
        arch = self.space.validate(arch)
        with use_arch(arch):
            return export_path(self.model, arch, deploy=deploy, share_weights=share_weights)

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "options": {"stabilizer": self.stabilized}}
