"""Path samplers: which archs a supernet training step trains on its batch.

Every sampler returns, per step, a list of archs; the training loop runs each on the same batch, accumulates
their gradients and steps the optimizer once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from .searchspace import Arch, SearchSpace

__all__ = ["PathSampler", "UniformPaths", "FlopsBinPaths", "FairPaths", "SandwichPaths", "FixedPath",
           "make_path_sampler", "default_path_sampler", "PATH_SAMPLERS"]


class PathSampler(Protocol):
    """Returns the archs one training step trains, from the loop's seeded generator."""

    def sample(self, rng: np.random.Generator) -> list[Arch]: ...


class UniformPaths:
    """Single Path One-Shot: one arch per step, uniform over the space."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def sample(self, rng: np.random.Generator) -> list[Arch]:
        return [self.space.sample(rng)]


class FlopsBinPaths:
    """One arch per step: a MACs bin uniformly, then an arch uniformly within that bin, so the whole compute range
    gets trained, not only the crowded middle. Every arch it returns lies in the bin it drew.

    The bins split ``[min, max]`` of the archs' MACs into ``bins`` equal widths. The archs are every arch of the
    space when it has at most 100,000 (enumerated), otherwise the distinct archs among ``pool_size`` seeded samples
    (then the choice within a bin is among those, so a larger ``pool_size`` trains more distinct archs).

    Args:
        space: a built-in space (with an analytic MAC count) or any space with ``count_macs``.
        bins: number of equal-width MACs bins; each must hold at least one arch, else ``ValueError`` (it names how
            many hold one and the most bins that all would).
        pool_size: seeded samples the bins are built from when the space is too large to enumerate.
        seed: seed of that pool.
    """

    ENUMERATE_LIMIT = 100_000

    def __init__(self, space: SearchSpace, *, bins: int = 5, pool_size: int = 2000, seed: int = 0) -> None:
        for name, value in (("bins", bins), ("pool_size", pool_size)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"`{name}` must be an int, but got {value!r} of type {type(value).__name__}.")
            if value < 1:
                raise ValueError(f"`{name}` must be >= 1, but got {value}.")
        count = getattr(space, "count_macs", None)
        if not callable(count):
            raise TypeError(f"FLOPs-bin sampling needs a space with count_macs; {type(space).__name__} has none.")
        self.space = space
        self._count = count
        if space.size <= self.ENUMERATE_LIMIT:
            archs = list(space.enumerate())
        else:
            rng = np.random.default_rng(seed)
            distinct: dict[str, Arch] = {}
            for _ in range(pool_size):
                arch = space.sample(rng)
                distinct.setdefault(space.key(arch), arch)
            archs = list(distinct.values())
        macs = np.array([count(arch) for arch in archs], dtype=float)
        self.edges = np.linspace(macs.min(), macs.max(), bins + 1)
        index = self._bins_of(macs, self.edges)
        sizes = np.bincount(index, minlength=bins)
        if (sizes == 0).any():
            fits = max(b for b in range(1, bins + 1) if np.bincount(
                self._bins_of(macs, np.linspace(macs.min(), macs.max(), b + 1)), minlength=b).all())
            raise ValueError(
                f"Only {int((sizes > 0).sum())} of the {bins} equal-width MACs bins between {macs.min():,.0f} and "
                f"{macs.max():,.0f} hold an arch (of {len(archs):,} distinct archs); an empty bin cannot be "
                f"sampled. The most bins that all hold an arch is {fits}: pass bins={fits}."
            )
        self.pools: tuple[tuple[Arch, ...], ...] = tuple(
            tuple(arch for arch, i in zip(archs, index) if i == b) for b in range(bins)
        )

    @staticmethod
    def _bins_of(macs: np.ndarray, edges: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(edges, macs, side="right") - 1, 0, len(edges) - 2)

    def _bin(self, macs: float) -> int:
        """The bin of a MAC count (the last bin includes the maximum)."""
        return int(self._bins_of(np.array([macs], dtype=float), self.edges)[0])

    def sample_bin(self, rng: np.random.Generator) -> tuple[int, Arch]:
        """One draw: a bin uniformly, then one of its archs uniformly; returns the bin's index and the arch."""
        b = int(rng.integers(len(self.pools)))
        pool = self.pools[b]
        return b, dict(pool[int(rng.integers(len(pool)))])

    def sample(self, rng: np.random.Generator) -> list[Arch]:
        return [self.sample_bin(rng)[1]]


class FairPaths:
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


class SandwichPaths:
    """The sandwich rule with in-place distillation (BigNAS, OFA): per step the largest arch (most MACs), the
    smallest, and ``n_random`` uniform archs; the largest learns from the labels and the others from its
    predictions (``distill = True`` tells the training loop). The largest and smallest archs start from the extremes
    among every arch (spaces of at most 100,000) or among ``pool_size`` seeded samples, then climb one choice at a
    time while that adds (removes) MACs.

    Args:
        space: a space with MAC counts (built-in, or a user's space with ``count_macs``).
        n_random: uniform archs per step besides the two ends (each counts toward the image budget).
        distill: in-place distillation from the largest arch; ``False`` trains every path on the labels.
    """

    def __init__(self, space: SearchSpace, *, n_random: int = 2, distill: bool = True, pool_size: int = 2000,
                 seed: int = 0) -> None:
        if not isinstance(n_random, (int, np.integer)) or isinstance(n_random, bool) or n_random < 0:
            raise ValueError(f"`n_random` must be an int >= 0, but got {n_random!r}.")
        pools = FlopsBinPaths(space, bins=1, pool_size=pool_size, seed=seed).pools[0]
        count = space.count_macs  # FlopsBinPaths checked that the space has one
        macs = [count(a) for a in pools]
        self.space, self.n_random, self.distill = space, int(n_random), bool(distill)
        self.largest = _climb(space, count, dict(pools[int(np.argmax(macs))]), 1)
        self.smallest = _climb(space, count, dict(pools[int(np.argmin(macs))]), -1)

    def sample(self, rng: np.random.Generator) -> list[Arch]:
        return [dict(self.largest), dict(self.smallest)] + [self.space.sample(rng) for _ in range(self.n_random)]


def _climb(space: SearchSpace, count: Any, arch: Arch, sign: int) -> Arch:
    """From ``arch``, change one choice at a time to the option with the most (``sign=1``) or fewest (``-1``)
    MACs until no single change helps (a sampled pool rarely holds the true end of a large space)."""
    best = sign * count(arch)
    improved = True
    while improved:
        improved = False
        for c in space.choices:
            for option in c.options:
                try:
                    trial = space.validate({**arch, c.name: option})
                except ValueError:  # an option the space's constraints rule out here
                    continue
                value = sign * count(trial)
                if value > best:
                    arch, best, improved = dict(trial), value, True
    return arch


class FixedPath:
    """Always the same arch (stand-alone training reuses the supernet loop with it)."""

    def __init__(self, space: SearchSpace, arch: Mapping[str, Any]) -> None:
        self.arch = space.validate(arch)

    def sample(self, rng: np.random.Generator) -> list[Arch]:
        return [dict(self.arch)]


PATH_SAMPLERS = ("uniform", "flops-bins", "fair", "sandwich", "balanced")


def make_path_sampler(name: str, space: SearchSpace, *, seed: int = 0, supernet: Any = None) -> PathSampler:
    """A sampler by name: ``uniform`` (SPOS), ``flops-bins`` (SPOS over MACs bins), ``fair`` (FairNAS),
    ``sandwich`` (largest, smallest and 2 random archs per step, in-place distillation; BigNAS) or
    ``balanced`` (few-shot supernet-balanced sampling: one arch per sub-supernet; needs the few-shot supernet)."""
    if name == "uniform":
        return UniformPaths(space)
    if name == "flops-bins":
        return FlopsBinPaths(space, seed=seed)
    if name == "fair":
        return FairPaths(space)
    if name == "sandwich":
        return SandwichPaths(space, seed=seed)
    if name == "balanced":
        balanced = getattr(supernet, "balanced_sampler", None)
        if balanced is None:
            raise ValueError("The 'balanced' path sampler trains one arch per sub-supernet: it needs a few-shot "
                             "supernet (--supernet fewshot).")
        return balanced()
    raise ValueError(f"Unknown path sampler {name!r}; choose one of {list(PATH_SAMPLERS)!r}.")


def default_path_sampler(supernet: Any) -> str:
    """The path sampler a supernet kind trains with by default: supernet-balanced sampling for a few-shot
    supernet (one arch per sub-supernet per step), uniform single paths (SPOS) otherwise."""
    return "balanced" if callable(getattr(supernet, "balanced_sampler", None)) else "uniform"
