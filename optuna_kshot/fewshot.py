"""Few-shot supernets: several sub-supernets, each owning a part of the space; every arch is routed to exactly one.

Splits (GUIDE section 3):
- by the option of a named choice (few-shot NAS; "Deeper Insights into Weight Sharing"): ``split="op:layer0"``,
  one sub-supernet per option, each initialised from a trained one-shot supernet (weight transfer);
- by the effective number of nonlinearities (EFS-NAS): ``split="enn"``, ENN values grouped by thresholds;
- by a user function ``arch -> group`` (``split=fn, n_groups=K``).

Sub-supernets can be narrower (``width_ratio``, default about 1/K for ENN splits so that K of them cost about
one). Supernet-balanced sampling (:meth:`FewShotSupernet.balanced_sampler`) trains one arch per sub-supernet per
step on the same batch; archs whose output is disconnected (NAS-Bench-201 ``none`` edges) are never trained.

Scores of different sub-supernets are comparable in a study because they are the same quantity measured the same
way: validation accuracy of the arch's calibrated subnet on the same validation split with the same calibration
batches. Whether the sub-supernets' scales agree is measured by the ranking benchmark (tau across vs within groups).
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .nn import build_supernet
from .space import Arch, SearchSpace
from .spaces import ChainSpace, NB201Space, parse_op, scaled_space
from .spaces._nb201 import edge_name

__all__ = ["enn", "FewShotSupernet", "BalancedSampler", "make_router", "default_thresholds"]

_NB201_PATHS = (((1, 0), (3, 1)), ((2, 0), (3, 2)), ((1, 0), (2, 1), (3, 2)), ((3, 0),))
_NB201_NONLINEAR = {"nor_conv_1x1", "nor_conv_3x3"}


def enn(space: SearchSpace, arch: Mapping[str, Any]) -> int:
    """Effective number of nonlinearities of an arch.

    Chain spaces: each MBConv holds 2 (after its expansion and its depthwise conv), a skip 0 (a reshaping skip
    is a linear projection), so ENN = 2 x the number of non-skip layers. NAS-Bench-201: only the two conv ops
    hold one; for each input-to-output path of the cell (0-3, 0-1-3, 0-2-3, 0-1-2-3) count its conv ops (0 when
    an edge on it is ``none``); ENN is the maximum over paths, in {0, 1, 2, 3}.
    """
    arch = space.validate(arch)
    if isinstance(space, ChainSpace):
        return 2 * sum(parse_op(op) is not None for op, _ in space.layer_ops(arch))
    if isinstance(space, NB201Space):
        best = 0
        for path in _NB201_PATHS:
            ops = [arch[edge_name(j, i)] for j, i in path]
            if "none" not in ops:
                best = max(best, sum(op in _NB201_NONLINEAR for op in ops))
        return best
    raise TypeError(f"ENN is defined for the built-in spaces, not for {type(space).__name__}; "
                    "split by a function of your own (split=fn, n_groups=K) instead.")


def default_thresholds(space: SearchSpace) -> list[float]:
    """NAS-Bench-201: one group per ENN value (thresholds 1, 2, 3). Chain spaces: two groups split at the median
    ENN of 4,000 seeded uniform samples."""
    if isinstance(space, NB201Space):
        return [1.0, 2.0, 3.0]
    rng = np.random.default_rng(0)
    values = np.array([enn(space, space.sample(rng)) for _ in range(4000)])
    return [float(np.median(values))]


Router = Callable[[Mapping[str, Any]], int]


def make_router(
    space: SearchSpace, split: str | Router, *, thresholds: Sequence[float] | None = None, n_groups: int | None = None
) -> tuple[Router, int, dict[str, Any]]:
    """``(router, number of groups, description)`` for a split spec: ``"enn"``, ``"op:CHOICE"`` or a function."""
    if callable(split):
        if not isinstance(n_groups, int) or n_groups < 1:
            raise ValueError("A split function needs `n_groups`, the number of groups it returns (0 .. n_groups-1).")

        def by_function(arch: Mapping[str, Any]) -> int:
            group = split(arch)
            if not isinstance(group, (int, np.integer)) or not 0 <= group < n_groups:
                raise ValueError(f"The split function returned {group!r} for {dict(arch)!r}; "
                                 f"it must return an int in [0, {n_groups - 1}].")
            return int(group)

        return by_function, n_groups, {"split": "function"}
    if split == "enn":
        bounds = sorted(float(t) for t in (thresholds if thresholds is not None else default_thresholds(space)))
        return (lambda arch: bisect.bisect_right(bounds, enn(space, arch))), len(bounds) + 1, \
            {"split": "enn", "thresholds": bounds}
    if isinstance(split, str) and split.startswith("op:"):
        choice = space[split[3:]]  # KeyError names the choices
        return (lambda arch: choice.index(arch[choice.name])), len(choice.options), \
            {"split": split, "options": list(choice.options)}
    raise ValueError(f"Unknown split {split!r}: use 'enn', 'op:<choice name>' (e.g. 'op:{space.names[0]}') or a "
                     "function arch -> group with n_groups.")


class FewShotSupernet(nn.Module):
    """Several sub-supernets over one space, called as ``supernet(x, arch)``; ``arch`` runs on its group's.

    Args:
        space: the search space.
        split: ``"enn"``, ``"op:CHOICE"`` or a function ``arch -> group`` (then ``n_groups``).
        thresholds: ENN group boundaries (group = number of thresholds <= ENN); default per space.
        width_ratio: width of each sub-supernet relative to the space (default 1/K for ENN and function splits,
            1 for op splits, whose sub-supernets start from a one-shot supernet).
        base: a (trained) one-shot supernet over ``space``; every sub-supernet starts as a copy (weight
            transfer; needs ``width_ratio=1``).
        stabilizer: SCARLET stabilizer on skips in every sub-supernet.
    """

    def __init__(
        self,
        space: SearchSpace,
        split: str | Router = "enn",
        *,
        thresholds: Sequence[float] | None = None,
        n_groups: int | None = None,
        width_ratio: float | None = None,
        base: nn.Module | None = None,
        seed: int | None = 0,
        stabilizer: bool = False,
    ) -> None:
        super().__init__()
        self.space = space
        self.route, self.n_groups, self.split_info = make_router(space, split, thresholds=thresholds,
                                                                 n_groups=n_groups)
        if width_ratio is None:
            width_ratio = 1.0 if (isinstance(split, str) and split.startswith("op:")) else 1.0 / self.n_groups
        if not 0 < width_ratio <= 1:
            raise ValueError(f"`width_ratio` must be in (0, 1], but got {width_ratio!r}.")
        if base is not None and width_ratio != 1:
            raise ValueError("Weight transfer copies a full-width one-shot supernet: use width_ratio=1 with `base`.")
        self.width_ratio = width_ratio
        self.subspace = scaled_space(space, width_ratio)
        if base is not None:
            self.supernets = nn.ModuleList(copy.deepcopy(base) for _ in range(self.n_groups))
        else:
            self.supernets = nn.ModuleList(
                build_supernet(self.subspace, seed=None if seed is None else seed + g, stabilizer=stabilizer)
                for g in range(self.n_groups)
            )

    def group(self, arch: Mapping[str, Any]) -> int:
        """The sub-supernet id of an arch."""
        return self.route(self.space.validate(arch))

    def forward(self, x: torch.Tensor, arch: Mapping[str, Any]) -> torch.Tensor:
        return self.supernets[self.group(arch)](x, arch)

    @torch.no_grad()
    def export(self, arch: Mapping[str, Any], *, deploy: bool = False) -> nn.Module:
        """The arch's subnet from its sub-supernet (at the sub-supernet's width: ``subnet.space`` says which)."""
        return self.supernets[self.group(arch)].export(arch, deploy=deploy)

    def describe_arch(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """What a trial stores about the arch: its sub-supernet id."""
        return {"subsupernet": self.group(arch)}

    def balanced_sampler(self) -> BalancedSampler:
        return BalancedSampler(self.space, self.route, self.n_groups)


def _trainable(space: SearchSpace, arch: Arch) -> bool:
    return not isinstance(space, NB201Space) or space.is_connected(arch)


class BalancedSampler:
    """Supernet-balanced sampling: every step one arch per group (rejection sampling inside the group), so small
    groups are not starved; archs with a disconnected output are excluded."""

    def __init__(self, space: SearchSpace, route: Router, n_groups: int, *, max_tries: int = 20_000) -> None:
        self.space, self.route, self.n_groups, self.max_tries = space, route, n_groups, max_tries

    def sample(self, rng: np.random.Generator) -> list[Arch]:
        out = []
        for group in range(self.n_groups):
            for _ in range(self.max_tries):
                arch = self.space.sample(rng)
                if self.route(arch) == group and _trainable(self.space, arch):
                    out.append(arch)
                    break
            else:
                raise ValueError(f"No trainable arch of group {group} found in {self.max_tries} samples; "
                                 "is the group empty? Check the split's thresholds.")
        return out
