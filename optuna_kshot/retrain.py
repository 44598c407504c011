"""Retraining the chosen architecture: every NAS pipeline ends by training the arch it found.

:func:`retrain` trains one arch as a plain network, from scratch (``init="scratch"``, the default: what the
measurements favour at equal epochs) or fine-tuned from its inherited, BN-calibrated supernet weights
(``init="inherited"``), and reports validation and test accuracy. :func:`reference_arch` picks the arch a user
would take without a search (the most MACs under the budget among seeded samples), so that a search's worth is
its retrained test accuracy beside the reference's, at the same training budget.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .costs import ArchCosts
from .devices import set_layout
from .evaluation import evaluate_model
from .paths import FixedPath
from .searchspace import Arch, SearchSpace
from .training import EpochRecord, TrainConfig, train_supernet

__all__ = ["RetrainResult", "retrain", "reference_arch", "INITS"]

INITS = ("scratch", "inherited")


@dataclass
class RetrainResult:
    """A retrained arch: its accuracies, training history and the trained plain model."""

    arch: dict[str, Any]
    key: str
    init: str
    val_accuracy: float
    val_loss: float
    test_accuracy: float | None
    seconds: float
    history: list[EpochRecord]
    model: nn.Module


def _fresh_subnet(supernet: Any, arch: Arch, seed: int) -> nn.Module:
    """A freshly initialised plain network of ``arch``: the built-in space's subnet, or the user's exported
    subnet with every module's ``reset_parameters()`` called (seeded)."""
    from .nn import build_subnet, has_network
    from .seeding import seeded

    space: SearchSpace = supernet.space
    if has_network(space):
        return build_subnet(space, arch, seed=seed)
    subnet = supernet.export(arch, deploy=True)
    with seeded(seed):
        for m in subnet.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
    return subnet


def retrain(
    supernet: Any,
    arch: Mapping[str, Any],
    data: Any,
    config: TrainConfig = TrainConfig(epochs=10, lr=0.1),
    *,
    init: str = "scratch",
    evaluator: Any = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    callbacks: Sequence[Any] = (),
) -> RetrainResult:
    """Train ``arch`` of ``supernet``'s space as a plain network and score it on validation and test.

    Args:
        supernet: the supernet the arch comes from (for its space, and with ``init="inherited"`` its weights).
        data: :class:`~optuna_kshot.data.DataSplits` (``train``, ``val``, ``test``).
        config: the training budget and optimiser (cosine schedule, as every training here).
        init: ``"scratch"`` (fresh initialisation from ``config.seed``) or ``"inherited"`` (the supernet's
            weights, BN calibrated by ``evaluator``; use a smaller ``lr`` then).
        evaluator: a :class:`~optuna_kshot.evaluation.SupernetEvaluator` of the supernet (``inherited`` only;
            default: one on ``data``).
    """
    if init not in INITS:
        raise ValueError(f"`init` must be one of {list(INITS)!r}, but got {init!r}.")
    space: SearchSpace = supernet.space
    arch = space.validate(arch)
    if init == "scratch":
        model = _fresh_subnet(supernet, arch, config.seed)
    else:
        if evaluator is None:
            from .evaluation import SupernetEvaluator

            evaluator = SupernetEvaluator(supernet, None, data.train, data.val, device=device)
        # trained in the default layout, as every training here (scoring's subnets are channels-last on the CPU)
        model = set_layout(copy.deepcopy(evaluator.subnet(arch, deploy=True)), channels_last=False)
    result = train_supernet(model, data.train, config, sampler=FixedPath(space, arch), device=device,
                            progress=progress, callbacks=callbacks)
    val_accuracy, val_loss = evaluate_model(model, data.val, device=device)
    test = getattr(data, "test", None)
    test_accuracy = evaluate_model(model, test, device=device)[0] if test is not None and len(test) else None
    return RetrainResult(arch, space.key(arch), init, val_accuracy, val_loss, test_accuracy, result.seconds,
                         result.history, model.eval())


def reference_arch(space: SearchSpace, costs: ArchCosts | None = None, *, max_macs: float | None = None,
                   pool: int = 2000, seed: int = 0) -> Arch:
    """The arch with the most MACs (under ``max_macs``, if given) among ``pool`` seeded samples: what one would
    train without a search ("the biggest network that fits")."""
    costs = costs if costs is not None else ArchCosts(space)
    if not costs.available:
        raise ValueError("A reference arch is the one with the most MACs: the space needs costs.")
    rng = np.random.default_rng(seed)
    best: tuple[int, str, Arch] | None = None
    for _ in range(pool):
        arch = space.sample(rng)
        macs = costs(arch)["MACs"]
        if max_macs is not None and macs > max_macs:
            continue
        key = space.key(arch)
        if best is None or (macs, key) > best[:2]:
            best = (macs, key, arch)
    if best is None:
        raise ValueError(f"No sampled arch fits max_macs={max_macs:,.0f}; raise the budget.")
    return best[2]
