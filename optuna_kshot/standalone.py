"""Stand-alone training of one arch from scratch (ground truth), through the shared training loop."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .data import DataSplits
from .evaluation import evaluate_model
from .nn import build_subnet
from .paths import FixedPath
from .searchspace import SearchSpace
from .training import EpochRecord, TrainConfig, train_supernet

__all__ = ["StandaloneResult", "train_standalone"]


@dataclass
class StandaloneResult:
    arch: dict[str, Any]
    key: str
    val_accuracy: float
    val_loss: float
    test_accuracy: float
    seconds: float
    history: list[EpochRecord]
    model: nn.Module | None = None


def train_standalone(
    space: SearchSpace,
    arch: Mapping[str, Any],
    data: DataSplits,
    config: TrainConfig = TrainConfig(),
    *,
    device: str | torch.device | None = None,
    progress: bool = False,
    keep_model: bool = False,
) -> StandaloneResult:
    """Train ``arch`` from scratch with ``config`` (its budget and seed) and report validation and test
    accuracy (BN running statistics of its own training, as for any plain network)."""
    arch = space.validate(arch)
    model = build_subnet(space, arch, seed=config.seed)
    result = train_supernet(model, data.train, config, sampler=FixedPath(space, arch), device=device,
                            progress=progress)  # a plain model: the loop ignores the (fixed) arch
    val_acc, val_loss = evaluate_model(model, data.val, device=device)
    test_acc, _ = evaluate_model(model, data.test, device=device)
    return StandaloneResult(arch, space.key(arch), val_acc, val_loss, test_acc, result.seconds, result.history,
                            model if keep_model else None)
