"""The supernet contract: what every supernet kind offers, over a built-in space or a user's own model.

One training loop (:func:`~optuna_kshot.training.train_supernet`), one evaluator and one export path serve every
kind because each kind implements this protocol; ``optuna_kshot.testing`` checks it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from ..searchspace import SearchSpace

__all__ = ["Supernet", "Trainable", "TrainingPhase", "SupernetDefaults", "default_parameter_groups"]


@dataclass
class TrainingPhase:
    """An extra optimisation turn the training loop runs after some supernet steps (e.g. K-shot's simplex-net).

    The loop owns the phase's optimiser (Adam with ``lr``, cosine-decayed over the whole training) and stores its
    state in the checkpoint. From step ``ceil(start_fraction * total_steps) - 1`` on, every ``every`` steps, it
    calls ``loss(x, y, rng)`` on the step's batch, differentiates it with respect to ``params`` only (nothing else
    gets a gradient) and steps. A turn forwards the step's batch once (split as the phase likes), so it counts as
that many training images in the budget.
    """

    name: str
    params: list[nn.Parameter]
    loss: Callable[[torch.Tensor, torch.Tensor, np.random.Generator], torch.Tensor]
    lr: float
    every: int = 1
    start_fraction: float = 0.0

    def first_step(self, total_steps: int) -> int:
        """0-based index of the first step after which this phase may run."""
        return max(0, math.ceil(self.start_fraction * total_steps) - 1)

    def active(self, step: int, total_steps: int) -> bool:
        """Whether the phase runs after (0-based) ``step``."""
        return step >= self.first_step(total_steps) and (step + 1) % self.every == 0

    def turns(self, total_steps: int) -> int:
        """How many times it runs in ``total_steps`` steps."""
        first = self.first_step(total_steps)
        return max(0, total_steps // self.every - first // self.every)


@runtime_checkable
class Trainable(Protocol):
    """What the training loop needs of a model (the training half of :class:`Supernet`): called as
    ``model(x, arch)``; ``parameter_groups(weight_decay)`` (the optimiser's groups), ``phases()`` (extra turns),
    ``on_step(step, total_steps)``, ``training_stats()`` (numbers logged per epoch), ``group(arch)`` and
    ``n_groups`` (sub-supernets whose losses are logged apart)."""

    n_groups: int

    def __call__(self, x: torch.Tensor, arch: Mapping[str, Any]) -> torch.Tensor: ...

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]: ...

    def phases(self) -> list[TrainingPhase]: ...

    def on_step(self, step: int, total_steps: int) -> None: ...

    def training_stats(self) -> dict[str, float]: ...

    def group(self, arch: Mapping[str, Any]) -> int: ...


@runtime_checkable
class Supernet(Trainable, Protocol):
    """What every supernet kind offers.

    - ``space``: the search space (choices and options as ``trial.params`` holds them);
    - ``forward(x, arch)``: logits of ``arch``; stateless with respect to the arch (thread-safe scoring);
    - ``export(arch, deploy=False, share_weights=False)``: the arch's plain ``nn.Module`` with inherited (merged)
      weights, computing exactly what ``forward(x, arch)`` computes; ``deploy`` drops training-only parts
      (SCARLET stabilizers); ``share_weights`` aliases the supernet's parameters (read-only use: scoring);
    - ``example_input()``: a one-sample input of the model's (for costs), or None;
    - ``config()``: plain data (kind and options) that, with the model, rebuilds the supernet from a checkpoint;
    - ``describe_arch(arch)``: what a trial stores about the arch (e.g. its K-shot code or sub-supernet);
    - and the training half, :class:`Trainable`.
    """

    space: SearchSpace

    def export(self, arch: Mapping[str, Any], *, deploy: bool = False, share_weights: bool = False) -> nn.Module: ...

    def example_input(self) -> torch.Tensor | None: ...

    def config(self) -> dict[str, Any]: ...

    def describe_arch(self, arch: Mapping[str, Any]) -> dict[str, Any]: ...


class SupernetDefaults:
    """The contract's training methods for a supernet that needs nothing special: every parameter trained
    (weight decay on matrices and kernels only), no extra phase, nothing to do per step, no statistics, one group.
    Kinds override what differs."""

    n_groups = 1

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        return default_parameter_groups(list(self.parameters()), weight_decay)  # type: ignore[attr-defined]

    def phases(self) -> list[TrainingPhase]:
        return []

    def on_step(self, step: int, total_steps: int) -> None:
        pass

    def training_stats(self) -> dict[str, float]:
        return {}

    def group(self, arch: Mapping[str, Any]) -> int:
        return 0

    def describe_arch(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        return {}


def default_parameter_groups(params: list[nn.Parameter], weight_decay: float,
                             per_copy_ndim: Mapping[int, int] | None = None) -> list[dict[str, Any]]:
    """Weight decay on weight matrices and kernels, none on biases and norm affines (tensors of <= 1 dim per copy;
    ``per_copy_ndim`` maps ``id(param)`` to the ndim of one copy for stacked K-shot copies)."""
    per_copy_ndim = per_copy_ndim or {}
    decay, no_decay = [], []
    for p in params:
        (decay if per_copy_ndim.get(id(p), p.ndim) > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
