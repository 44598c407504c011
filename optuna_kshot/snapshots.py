"""Late snapshots of one training: copies of the supernet after its last epochs, to average their scores.

"Deeper Insights into Weight Sharing" shows rankings that move from epoch to epoch; averaging the scores of the
last few epochs' weights (an :class:`~optuna_kshot.evaluation.EnsembleEvaluator` over the snapshots) reduces that
variance at no extra training cost, unlike an ensemble of separately trained supernets.

    snaps = ok.LateSnapshots(keep=3)
    ok.train_supernet(supernet, data.train, config, sampler=sampler, callbacks=[snaps])
    evaluator = snaps.evaluator(space, data.train, data.val)      # averages the 3 snapshots' scores
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

__all__ = ["LateSnapshots"]


class LateSnapshots:
    """A :func:`~optuna_kshot.training.train_supernet` callback that keeps copies of the model after each of the
    last ``keep`` epochs (the final weights included, as the newest).

    A budget in images usually ends with a short tail epoch (a few steps): its weights replace the snapshot
    before it instead of being kept beside a near-copy, so that snapshots stay about an epoch apart. An epoch
    counts as short when it saw under half the images of the longest epoch so far.

    Copies stay on the model's device; each costs one supernet's memory. The callback reads the model and
    changes nothing, so training with it ends with the same weights as training without it.

    Args:
        keep: how many of the latest epochs to keep (>= 1).
    """

    def __init__(self, keep: int = 3) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int):
            raise TypeError(f"`keep` must be an int, but got {type(keep).__name__}.")
        if keep < 1:
            raise ValueError(f"`keep` must be >= 1, but got {keep}.")
        self.keep = keep
        self.models: list[nn.Module] = []
        self.epochs: list[int] = []
        self.images: list[int] = []  # training images seen at each kept snapshot; the newest is the last call's
        self._longest = 0  # images of the longest epoch seen

    def __call__(self, record: Any, model: nn.Module) -> None:
        module = getattr(model, "module", model)  # a DistributedDataParallel wrapper's model
        seen = int(record.images) - (self.images[-1] if self.images else 0)
        if self.models and 2 * seen < self._longest:  # a short tail epoch: replaces the snapshot before it
            del self.models[-1], self.epochs[-1], self.images[-1]
        self._longest = max(self._longest, seen)
        self.models.append(copy.deepcopy(module))
        self.epochs.append(int(record.epoch))
        self.images.append(int(record.images))
        del self.models[: -self.keep], self.epochs[: -self.keep], self.images[: -self.keep]

    def __len__(self) -> int:
        return len(self.models)

    def evaluator(self, space: Any, train: Any, val: Any, **kwargs: Any) -> Any:
        """An :class:`~optuna_kshot.evaluation.EnsembleEvaluator` of one
        :class:`~optuna_kshot.evaluation.SupernetEvaluator` per snapshot (``kwargs`` go to each)."""
        from .evaluation import EnsembleEvaluator, SupernetEvaluator

        if not self.models:
            raise ValueError("No snapshots yet: pass this object in train_supernet(callbacks=[...]) and train first.")
        return EnsembleEvaluator([SupernetEvaluator(m, space, train, val, **kwargs) for m in self.models])
