"""Path samplers: which archs a supernet training step trains on its batch.

Every sampler returns, per step, a list of archs; the training loop runs each on the same batch, accumulates
their gradients and steps the optimizer once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from .space import Arch, SearchSpace

__all__ = ["PathSampler", "UniformSampler", "FlopsBinSampler", "FairSampler", "FixedSampler", "make_sampler"]


class PathSampler(Protocol):
    """Returns the archs one training step trains, from the loop's seeded generator."""

    def sample(self, rng: np.random.Generator) -> list[Arch]: ...


class UniformSampler:
    """Single Path One-Shot: one arch per step, uniform over the space."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def sample(self, rng: np.random.Generator) -> list[Arch]:
        return [self.space.sample(rng)]


class FlopsBinSampler:
    """One arch per step, uniform over equal-width MACs bins first, then uniform within the bin (rejection
    sampling), so the whole compute range gets trained, not only the crowded middle.

    Args:
        space: a built-in space (with an analytic MAC count) or any space with ``count_macs``.
        bins: number of bins between the smallest and largest MACs of ``pool_size`` seeded samples.
    """

    def __init__(self, space: SearchSpace, *, bins: int = 5, pool_size: int = 2000, seed: int = 0) -> None:
        if bins < 1:
            raise ValueError(f"`bins` must be >= 1, but got {bins}.")
        count = getattr(space, "count_macs", None)
        if count is None:
            raise TypeError(f"FLOPs-bin sampling needs a space with count_macs; {type(space).__name__} has none.")
        self.space = space
        self._count = count
        rng = np.random.default_rng(seed)
        macs = np.array([count(space.sample(rng)) for _ in range(pool_size)], dtype=float)
        self.edges = np.linspace(macs.min(), macs.max(), bins + 1)
        filled = np.unique(np.clip(np.searchsorted(self.edges, macs, side="right") - 1, 0, bins - 1))
        self._bins = filled

    def _bin(self, macs: float) -> int:
        return int(np.clip(np.searchsorted(self.edges, macs, side="right") - 1, 0, len(self.edges) - 2))

    def sample(self, rng: np.random.Generator) -> list[Arch]:
        target = int(self._bins[rng.integers(len(self._bins))])
        arch = self.space.sample(rng)
        for _ in range(1000):
            if self._bin(self._count(arch)) == target:
                break
            arch = self.space.sample(rng)
        return [arch]


class FairSampler:
    """FairNAS strict fairness: m archs per step (m = the most options of any choice), built from a random
    permutation of every choice's options, so each option of each choice is trained exactly once per step.
    Choices with fewer options cycle through a fresh permutation to fill the m slots."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.m = max(len(c.options) for c in space.choices)

    def sample(self, rng: np.random.Generator) -> list[Arch]:
        columns: dict[str, list[Any]] = {}
        for c in self.space.choices:
            order: list[int] = []
            while len(order) < self.m:
                order.extend(int(i) for i in rng.permutation(len(c.options)))
            columns[c.name] = [c.options[i] for i in order[: self.m]]
        return [{name: values[i] for name, values in columns.items()} for i in range(self.m)]


class FixedSampler:
    """Always the same arch (stand-alone training reuses the supernet loop with it)."""

    def __init__(self, space: SearchSpace, arch: Mapping[str, Any]) -> None:
        self.arch = space.validate(arch)

    def sample(self, rng: np.random.Generator) -> list[Arch]:
        return [dict(self.arch)]


SAMPLERS = ("uniform", "flops-bins", "fair", "balanced")


def make_sampler(name: str, space: SearchSpace, *, seed: int = 0, supernet: Any = None) -> PathSampler:
    """A sampler by name: ``uniform`` (SPOS), ``flops-bins`` (SPOS over MACs bins), ``fair`` (FairNAS) or
    ``balanced`` (few-shot supernet-balanced sampling: one arch per sub-supernet; needs the few-shot supernet)."""
    if name == "uniform":
        return UniformSampler(space)
    if name == "flops-bins":
        return FlopsBinSampler(space, seed=seed)
    if name == "fair":
        return FairSampler(space)
    if name == "balanced":
        balanced = getattr(supernet, "balanced_sampler", None)
        if balanced is None:
            raise ValueError("The 'balanced' path sampler trains one arch per sub-supernet: it needs a few-shot "
                             "supernet (--supernet fewshot).")
        return balanced()
    raise ValueError(f"Unknown path sampler {name!r}; choose one of {list(SAMPLERS)!r}.")
