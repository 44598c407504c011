"""Scoring archs: arch -> validation accuracy and loss under a supernet.

An arch is scored on its own subnet, cut out of the supernet (parameters shared read-only, merged for K-shot; BN
buffers copied), with BN statistics recalibrated on a fixed set of training batches. Scoring neither reads nor
writes shared module state (the arch and the K-shot code travel in context variables), so several threads can
score at once (``study.optimize(n_jobs=4)`` gives the serial scores exactly), and the exported subnet reproduces
the score exactly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .costs import ArchCosts
from .defaults import CALIB_BATCHES
from .devices import place, resolve_device
from .loaders import as_split, on_device
from .scores import Score
from .searchspace import SearchSpace

__all__ = ["Score", "SupernetEvaluator", "EnsembleEvaluator", "recalibrate_bn", "evaluate_model", "BN_MODES"]

_logger = logging.getLogger(__name__)
BN_MODES = ("recalibrate", "batch")


def _bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Reset every BN's running statistics and re-estimate them as the exact average over ``batches``
    (train-mode forwards, cumulative averaging); returns the model in eval mode."""
    layers = _bn_layers(model)
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for x in batches:
        model(x)
    for bn in layers:
        bn.momentum = 0.1
    return model.eval()


@torch.no_grad()
def evaluate_model(
    model: nn.Module, data: Any, *, batch_size: int = 256, device: str | torch.device | None = None,
    batch_stats: bool = False,
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of a plain model on a dataset (an ``ArrayDataset`` or any torch dataset of
    ``(input, label)`` pairs); ``batch_stats`` uses each batch's own BN statistics instead of the running ones."""
    device = resolve_device(device)
    data = as_split(data)
    try:
        model.eval()
    except NotImplementedError:  # a loaded torch.export program: traced in eval mode already
        pass
    if batch_stats:
        for bn in _bn_layers(model):
            bn.train()
            bn.momentum = 0.0
    correct = 0
    loss = 0.0
    for x, y in data.batches(batch_size, device=device):
        logits = model(x)
        loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    n = len(data)
    return correct / n, loss / n


DEFAULT_CALIB_BATCHES = CALIB_BATCHES  # BN recalibration batches of 256 training images (library and CLI)


class SupernetEvaluator:
    """Scores archs with a trained supernet; deterministic, cached by arch key, thread-safe.

    Args:
        supernet: a supernet (:class:`~optuna_kshot.supernets.Supernet`: ``supernet(x, arch)`` and
            ``export(arch)``).
        space: the space archs come from (None: the supernet's).
        train: training split (an ``ArrayDataset``, a torch ``Dataset`` or ``DataLoader``); the first
            ``calib_batches`` batches of a seeded permutation recalibrate BN.
        val: the split scored (validation, never test).
        bn_mode: ``"recalibrate"`` (default) or ``"batch"`` (each validation batch's own statistics).
        cache: keep scores by arch key.
    """

    def __init__(
        self,
        supernet: nn.Module,
        space: SearchSpace | None,
        train: Any,
        val: Any,
        *,
        calib_batches: int = DEFAULT_CALIB_BATCHES,
        batch_size: int = 256,
        bn_mode: str = "recalibrate",
        device: str | torch.device | None = None,
        seed: int = 0,
        cache: bool = True,
    ) -> None:
        if bn_mode not in BN_MODES:
            raise ValueError(f"`bn_mode` must be one of {list(BN_MODES)!r}, but got {bn_mode!r}.")
        if not isinstance(calib_batches, int) or calib_batches < 1:
            raise ValueError(f"`calib_batches` must be a positive int, but got {calib_batches!r}.")
        if not hasattr(supernet, "export"):
            raise TypeError("The supernet needs an export(arch) method that returns the arch's subnet.")
        self.device = resolve_device(device)
        self.supernet = supernet.to(self.device).eval()
        self.space = space if space is not None else supernet.space
        train, val = as_split(train), on_device(as_split(val), self.device)
        self.val = val
        self.batch_size = batch_size
        self.bn_mode = bn_mode
        generator = torch.Generator().manual_seed(seed)
        n = min(len(train), calib_batches * batch_size)
        index = torch.randperm(len(train), generator=generator)[:n]
        calib = train.subset(index)
        self.train = train
        self._calib = [x for x, _ in calib.batches(batch_size, device=self.device)]
        self._cache: dict[str, Score] = {}
        self._lock = threading.Lock()
        self.use_cache = cache
        self.costs = ArchCosts(self.space, supernet)

    @property
    def calibration_batches(self) -> list[torch.Tensor]:
        """The fixed training batches BN is recalibrated on (on this evaluator's device)."""
        return list(self._calib)

    def subnet(self, arch: Mapping[str, Any], *, deploy: bool = False, share_weights: bool = False) -> nn.Module:
        """The arch's subnet with this evaluator's BN calibration (what :meth:`score` evaluates). ``deploy``
        drops SCARLET stabilizers (plain identity skips, loadable by :func:`~optuna_kshot.load_subnet`); BN is
        recalibrated for what the subnet then computes. ``share_weights`` (what scoring uses) aliases the
        supernet's parameters instead of copying them: only for reading."""
        arch = self.space.validate(arch)
        with torch.no_grad():
            # on the CPU the subnet's conv weights become channels-last copies (the supernet keeps its layout)
            subnet = place(self.supernet.export(arch, deploy=deploy, share_weights=share_weights), self.device)
        if self.bn_mode == "recalibrate":
            recalibrate_bn(subnet, self._calib)
        return subnet.eval()

    def score(self, arch: Mapping[str, Any]) -> Score:
        """Accuracy and loss of ``arch`` on the validation split (cached by key)."""
        key = self.space.key(arch)
        if self.use_cache:
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None:
                return hit
        start = time.perf_counter()
        subnet = self.subnet(arch, share_weights=True)
        accuracy, loss = evaluate_model(
            subnet, self.val, batch_size=self.batch_size, device=self.device, batch_stats=self.bn_mode == "batch"
        )
        extra = dict(self.supernet.describe_arch(arch))
        result = Score(accuracy, loss, time.perf_counter() - start, key, extra)
        if self.use_cache:
            with self._lock:
                result = self._cache.setdefault(key, result)
        return result

    __call__ = score

    def score_many(self, archs: Sequence[Mapping[str, Any]]) -> list[Score]:
        """Score several archs in one call (duplicates are scored once)."""
        return [self.score(a) for a in archs]


class EnsembleEvaluator:
    """Scores an arch with several evaluators (supernets trained with other seeds, or late checkpoints of one
    training) and averages their accuracies and losses: a variance reduction for rankings that move with the
    supernet's seed and epoch ("Deeper Insights into Weight Sharing").

    Args:
        evaluators: scorers of one space (e.g. :class:`SupernetEvaluator`\\ s on the same data); costs come from
            the first.
    """

    def __init__(self, evaluators: Sequence[Any]) -> None:
        evaluators = list(evaluators)
        if not evaluators:
            raise ValueError("An ensemble needs at least one evaluator.")
        space = evaluators[0].space
        for e in evaluators[1:]:
            if e.space.to_config() != space.to_config():
                raise ValueError("The evaluators of an ensemble must score archs of one space.")
        self.evaluators = evaluators
        self.space = space
        self.costs = getattr(evaluators[0], "costs", ArchCosts(space))

    def score(self, arch: Mapping[str, Any]) -> Score:
        scores = [e.score(arch) for e in self.evaluators]
        losses = [s.loss for s in scores if s.loss is not None]
        return Score(
            accuracy=sum(s.accuracy for s in scores) / len(scores),
            loss=sum(losses) / len(losses) if len(losses) == len(scores) else None,
            seconds=sum(s.seconds for s in scores), key=scores[0].key,
            extra={**dict(scores[0].extra), "member_accuracies": [s.accuracy for s in scores]},
        )

    __call__ = score

    def score_many(self, archs: Sequence[Mapping[str, Any]]) -> list[Score]:
        return [self.score(a) for a in archs]
