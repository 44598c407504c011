"""Few-shot supernets: several one-shot sub-supernets, each owning a part of the space; every arch is routed to
exactly one.

Splits:
- by the option of a named choice (few-shot NAS; "Deeper Insights into Weight Sharing"): ``split="op:CHOICE"``,
  one sub-supernet per option, each a copy of a trained one-shot supernet (weight transfer, the method's defining
  step: without a trained ``base`` this split is refused unless ``from_scratch=True``);
- by the effective number of nonlinearities (EFS-NAS): ``split="enn"``, ENN values grouped by thresholds. The
  built-in spaces count it analytically (NAS-Bench-201 over the cell's paths); on your own model it is the number
  of nonlinear activation modules on the arch's chosen candidates, which is the ENN of a *chain* of choices (for a
  DAG of choices, pass a function);
- by a function ``arch -> group`` (``split=fn, n_groups=K``).

Sub-supernets of a built-in space can be narrower (``width_ratio``, default about 1/K for ENN and function splits,
so that K of them cost about one). Supernet-balanced sampling (:meth:`FewShotSupernet.balanced_sampler`) trains one
arch per sub-supernet per step on the same batch; archs whose output is disconnected (NAS-Bench-201 ``none``
edges) are never trained.

Scores of different sub-supernets are comparable in a study because they are the same quantity measured the same
way: validation accuracy of the arch's calibrated subnet on the same validation split with the same calibration
batches.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..choices import OpChoice
from ..searchspace import Arch, SearchSpace
from ..spaces import ChainSpace, NB201Space, parse_op
from .contract import SupernetDefaults
from .oneshot import OneShotSupernet

__all__ = ["enn", "path_enn", "FewShotSupernet", "BalancedSampler", "make_router", "default_thresholds",
           "NONLINEAR"]

_NB201_PATHS = (((1, 0), (3, 1)), ((2, 0), (3, 2)), ((1, 0), (2, 1), (3, 2)), ((3, 0),))
_NB201_NONLINEAR = {"nor_conv_1x1", "nor_conv_3x3"}
NONLINEAR = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
             nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Hardtanh, nn.LogSigmoid,
             nn.Softsign, nn.Tanhshrink, nn.GLU, nn.Threshold)


def path_enn(model: nn.Module, arch: Mapping[str, Any]) -> int:
    """Nonlinear activation modules (:data:`NONLINEAR`) inside the chosen candidates of ``model``'s choices for
    ``arch`` (nested choices follow the arch; activations outside every choice are the same for all archs and
    not counted). Functional activations (``F.relu`` in a ``forward``) are invisible to it."""

    def count(module: nn.Module, inside: bool) -> int:
        if isinstance(module, OpChoice):
            return count(module[str(arch[module.choice_name])], True)
        own = int(inside and isinstance(module, NONLINEAR))
        return own + sum(count(child, inside) for child in module.children())

    return count(model, False)


def enn(space: SearchSpace, arch: Mapping[str, Any], model: nn.Module | None = None) -> int:
    """Effective number of nonlinearities of an arch.

    Chain spaces: each MBConv holds 2 (after its expansion and its depthwise conv), a skip 0 (a reshaping skip
    is a linear projection), so ENN = 2 x the number of non-skip layers. NAS-Bench-201: only the two conv ops
    hold one; for each input-to-output path of the cell (0-3, 0-1-3, 0-2-3, 0-1-2-3) count its conv ops (0 when
    an edge on it is ``none``); ENN is the maximum over paths, in {0, 1, 2, 3}. Any other space: the
    :func:`path_enn` of ``model`` (a chain of choices).
    """
    arch = space.validate(arch)
    if isinstance(space, ChainSpace):
        return 2 * sum(parse_op(op) is not None for op, _ in space.layer_ops(arch))
    if isinstance(space, NB201Space):
        best = 0
        for path in _NB201_PATHS:
            ops = [arch[f"edge_{j}_{i}"] for j, i in path]
            if "none" not in ops:
                best = max(best, sum(op in _NB201_NONLINEAR for op in ops))
        return best
    if model is None:
        raise TypeError(f"ENN of a {type(space).__name__} needs the model whose activations it counts; or split by "
                        "a function of your own (split=fn, n_groups=K).")
    return path_enn(model, arch)


def default_thresholds(space: SearchSpace, model: nn.Module | None = None) -> list[float]:
    """NAS-Bench-201: one group per ENN value (thresholds 1, 2, 3). Otherwise two groups split at the median ENN
    of 4,000 seeded uniform samples."""
    if isinstance(space, NB201Space):
        return [1.0, 2.0, 3.0]
    rng = np.random.default_rng(0)
    values = np.array([enn(space, space.sample(rng), model) for _ in range(4000)])
    return [float(np.median(values))]


Router = Callable[[Mapping[str, Any]], int]


def make_router(
    space: SearchSpace, split: str | Router, *, thresholds: Sequence[float] | None = None,
    n_groups: int | None = None, model: nn.Module | None = None,
) -> tuple[Router, int, dict[str, Any]]:
    """``(router, number of groups, description)`` for a split spec: ``"enn"``, ``"op:CHOICE"`` or a function."""
    if callable(split):
        if not isinstance(n_groups, int) or isinstance(n_groups, bool) or n_groups < 1:
            raise ValueError("A split function needs `n_groups`, the number of groups it returns (0 .. n_groups-1).")

        def by_function(arch: Mapping[str, Any]) -> int:
            group = split(arch)
            if not isinstance(group, (int, np.integer)) or not 0 <= group < n_groups:
                raise ValueError(f"The split function returned {group!r} for {dict(arch)!r}; "
                                 f"it must return an int in [0, {n_groups - 1}].")
            return int(group)

        return by_function, n_groups, {"split": "function", "n_groups": n_groups}
    if split == "enn":
        bounds = sorted(float(t) for t in (thresholds if thresholds is not None
                                           else default_thresholds(space, model)))
        return (lambda arch: bisect.bisect_right(bounds, enn(space, arch, model))), len(bounds) + 1, \
            {"split": "enn", "thresholds": bounds}
    if isinstance(split, str) and split.startswith("op:"):
        choice = space[split[3:]]  # KeyError names the choices
        return (lambda arch: choice.index(arch[choice.name])), len(choice.options), \
            {"split": split, "options": list(choice.options)}
    raise ValueError(f"Unknown split {split!r}: use 'enn', 'op:<choice name>' (e.g. 'op:{space.names[0]}') or a "
                     "function arch -> group with n_groups.")


class FewShotSupernet(SupernetDefaults, nn.Module):
    """Several one-shot sub-supernets over one space, called as ``supernet(x, arch)``; ``arch`` runs on its group's.

    Build it with :func:`~optuna_kshot.make_supernet` (``kind="fewshot"``), which makes the sub-supernets.

    Args:
        supernets: one one-shot supernet per group (of the same choices; possibly narrower than the space).
        space: the searched space.
        route: arch -> group id.
        info: the split's description (stored in checkpoints).
        width_ratio: how much narrower the sub-supernets are than the space.
    """

    kind = "fewshot"

    def __init__(self, supernets: Sequence[OneShotSupernet], space: SearchSpace, route: Router, *,
                 info: Mapping[str, Any], width_ratio: float = 1.0) -> None:
        super().__init__()
        if not supernets:
            raise ValueError("A few-shot supernet needs at least one sub-supernet.")
        self.supernets = nn.ModuleList(supernets)
        self.space = space
        self.route = route
        self.n_groups = len(supernets)
        self.split_info = dict(info)
        self.width_ratio = width_ratio

    @property
    def subspace(self) -> SearchSpace:
        return self.supernets[0].space

    def group(self, arch: Mapping[str, Any]) -> int:
        """The sub-supernet id of an arch."""
        return self.route(self.space.validate(arch))

    def forward(self, x: torch.Tensor, arch: Mapping[str, Any]) -> torch.Tensor:
        arch = self.space.validate(arch)
        return self.supernets[self.route(arch)].run(x, arch)

    @torch.no_grad()
    def export(self, arch: Mapping[str, Any], *, deploy: bool = False, share_weights: bool = False) -> nn.Module:
        """The arch's subnet from its sub-supernet (at the sub-supernet's width: ``subnet.space`` says which,
        for built-in spaces)."""
        return self.supernets[self.group(arch)].export(arch, deploy=deploy, share_weights=share_weights)

    def example_input(self) -> torch.Tensor | None:
        return self.supernets[0].example_input()

    def describe_arch(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """What a trial stores about the arch: its sub-supernet id."""
        return {"subsupernet": self.group(arch)}

    def config(self) -> dict[str, Any]:
        options = {"split": self.split_info["split"], "width_ratio": self.width_ratio,
                   "stabilizer": self.supernets[0].stabilized}
        if "thresholds" in self.split_info:
            options["thresholds"] = list(self.split_info["thresholds"])
        if "n_groups" in self.split_info:
            options["n_groups"] = self.split_info["n_groups"]
        return {"kind": self.kind, "options": options}

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
