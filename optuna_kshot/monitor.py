"""Knowing when a supernet is ready: a ranking-stability monitor during training, a stop rule, and a verdict.

Rankings by a weight-sharing supernet move with training, not steadily up ("Deeper Insights into Weight Sharing"),
and may be worth no more than counting MACs. The :class:`RankingMonitor` scores a fixed, seeded set of *probe*
archs (spread over ENN and MACs) at the end of every ``every``-th epoch, on a small validation subset with BN
calibration, and records:

- ``probe_tau_prev``: Kendall tau between this and the previous check's probe scores (stability);
- ``probe_tau_macs``, ``probe_tau_params``, ``probe_tau_enn``: Kendall tau of the probe scores with each free
  predictor (a supernet whose ranking equals MACs' adds nothing to MACs).

Its history is kept in the checkpoint (a resumed run continues it), on the epoch records (so optuna-dashboard draws
it beside the loss curves) and in the CLI's progress. With ``stop_tau``, training stops once ``probe_tau_prev``
has been at least ``stop_tau`` for ``stop_checks`` checks in a row (or at the end of the budget, whichever first).
:func:`verdict` says, with the numbers, when the ranking agrees with MACs almost perfectly, is unstable, or (given
stand-alone accuracies of some archs) ranks them no better than a free predictor.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats

from .searchspace import Arch, SearchSpace

__all__ = ["RankingMonitor", "ProbeCheck", "verdict", "free_predictors", "arch_enn", "kendall"]

_logger = logging.getLogger(__name__)


def kendall(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Kendall tau-b, or None when either side is constant (undefined)."""
    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(stats.kendalltau(a, b).statistic)


def arch_enn(supernet: Any, arch: Mapping[str, Any]) -> int:
    """ENN of an arch of any supernet's space: analytic for built-in spaces, counted on the model otherwise."""
    from .supernets import enn

    model = getattr(supernet, "model", None)
    if model is None and hasattr(supernet, "base"):
        model = supernet.base.model
    if model is None and hasattr(supernet, "supernets"):
        model = supernet.supernets[0].model
    return enn(supernet.space, arch, model)


def free_predictors(supernet: Any, archs: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """MACs, params and ENN of ``archs`` (the free predictors a supernet must beat), where available."""
    from .costs import ArchCosts

    out: dict[str, list[float]] = {}
    costs = ArchCosts(supernet.space, supernet)
    if costs.available:
        measured = [costs(a) for a in archs]
        out["macs"] = [float(c["MACs"]) for c in measured]
        out["params"] = [float(c["params"]) for c in measured]
    try:
        out["enn"] = [float(arch_enn(supernet, a)) for a in archs]
    except TypeError:
        pass
    return out


def probe_archs(supernet: Any, n: int, seed: int = 0) -> list[Arch]:
    """``n`` distinct archs spread over ENN and, within it, MACs: evenly spaced in a seeded uniform pool of
    ``8 n`` archs sorted by (ENN, MACs)."""
    space: SearchSpace = supernet.space
    rng = np.random.default_rng(seed)
    pool: dict[str, Arch] = {}
    for _ in range(80 * n):
        if len(pool) >= 8 * n:
            break
        arch = space.sample(rng)
        pool.setdefault(space.key(arch), arch)
    archs = list(pool.values())
    predictors = free_predictors(supernet, archs)
    order = sorted(range(len(archs)), key=lambda i: tuple(predictors[k][i] for k in ("enn", "macs") if k in predictors)
                   + (space.key(archs[i]),))
    picks = np.unique(np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(int))
    return [archs[order[i]] for i in picks]


@dataclass
class ProbeCheck:
    """One check of the probe ranking."""

    epoch: int
    images: int
    scores: list[float]
    tau_prev: float | None
    tau_free: dict[str, float | None]
    seconds: float

    def extra(self) -> dict[str, float]:
        """What goes on the epoch's record (numbers only)."""
        out = {f"probe_tau_{k}": v for k, v in self.tau_free.items() if v is not None}
        if self.tau_prev is not None:
            out["probe_tau_prev"] = self.tau_prev
        out["probe_seconds"] = self.seconds
        return out


@dataclass
class RankingMonitor:
    """Scores ``probes`` fixed archs every ``every`` epochs during :func:`~optuna_kshot.train_supernet`.

    Args:
        train: the training split (BN calibration batches come from it).
        val: the validation split (its first ``val_images`` of a seeded permutation are scored).
        probes: number of probe archs (spread over ENN and MACs).
        val_images, calib_images: validation images scored and training images BN is calibrated on, per probe.
        every: check after every this many epochs (and after the last); None picks the smallest interval whose
            checks cost at most ``overhead`` of the training's forward and backward passes (about 3 forward
            passes per training image), so that small data sets are not checked more than they are trained.
        overhead: the share of training compute the checks may take when ``every`` is None.
        stop_tau, stop_checks: stop training once the tau between consecutive checks is at least ``stop_tau``
            for ``stop_checks`` checks in a row (None: never stop early).
        seed: seeds the probe set and the subsets.
    """

    train: Any
    val: Any
    probes: int = 8
    val_images: int = 256
    calib_images: int = 128
    every: int | None = None
    overhead: float = 0.05
    stop_tau: float | None = None
    stop_checks: int = 2
    seed: int = 0
    history: list[ProbeCheck] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("probes", "val_images", "calib_images", "every", "stop_checks"):
            value = getattr(self, name)
            if value is None and name == "every":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, but got {value!r}.")
        if self.probes < 3:
            raise ValueError(f"`probes` must be at least 3 for a ranking, but got {self.probes}.")
        if self.stop_tau is not None and not -1 <= self.stop_tau <= 1:
            raise ValueError(f"`stop_tau` must be in [-1, 1] (a Kendall tau), but got {self.stop_tau!r}.")
        from .loaders import as_split

        self.train, self.val = as_split(self.train), as_split(self.val)
        generator = torch.Generator().manual_seed(self.seed)
        self._val = self.val.subset(torch.randperm(len(self.val), generator=generator)[: self.val_images])
        if self.every is None:
            check = self.probes * (self.calib_images + min(self.val_images, len(self.val)))
            epoch = 3 * len(self.train)  # forward + backward of every training image, in forward-pass units
            self.every = max(1, math.ceil(check / (self.overhead * epoch)))
        self._archs: list[Arch] | None = None
        self._free: dict[str, list[float]] = {}

    # ------------------------------------------------------------------------------------------- checks
    def due(self, epoch: int, last_epoch: int) -> bool:
        return (epoch + 1) % self.every == 0 or epoch == last_epoch

    @torch.no_grad()
    def check(self, supernet: Any, epoch: int, images: int) -> ProbeCheck:
        """Score the probes now; returns (and keeps) the check."""
        from .evaluation import SupernetEvaluator

        start = time.perf_counter()
        if self._archs is None:
            self._archs = probe_archs(supernet, self.probes, self.seed)
            self._free = free_predictors(supernet, self._archs)
        was_training = supernet.training
        device = next(iter(supernet.parameters())).device
        evaluator = SupernetEvaluator(supernet, None, self.train, self._val, calib_batches=1,
                                      batch_size=self.calib_images, cache=False, seed=self.seed, device=device)
        scores = [evaluator.score(a).accuracy for a in self._archs]
        supernet.train(was_training)
        prev = self._reference(images)
        check = ProbeCheck(epoch=epoch, images=images, scores=scores,
                           tau_prev=None if prev is None else kendall(prev, scores),
                           tau_free={k: kendall(v, scores) for k, v in self._free.items()},
                           seconds=round(time.perf_counter() - start, 3))
        self.history.append(check)
        _logger.info("epoch %d probe ranking: tau vs previous %s, vs MACs %s", epoch,
                     check.tau_prev, check.tau_free.get("macs"))
        return check

    def _reference(self, images: int) -> list[float] | None:
        """The scores a new check at ``images`` is compared with: the last check's, unless that came less than half
        an interval before (a budget's short last epoch), when the check before it is the one to compare with: a
        few steps barely move any ranking, and a tau near 1 there would read as a stable one."""
        if not self.history:
            return None
        last = self.history[-1]
        if len(self.history) >= 2 and images - last.images < 0.5 * (last.images - self.history[-2].images):
            return self.history[-2].scores
        return last.scores

    @property
    def stable_checks(self) -> int:
        """Consecutive latest checks whose tau with the previous check reached ``stop_tau``."""
        if self.stop_tau is None:
            return 0
        count = 0
        for c in reversed(self.history):
            if c.tau_prev is None or c.tau_prev < self.stop_tau:
                break
            count += 1
        return count

    @property
    def should_stop(self) -> bool:
        return self.stop_tau is not None and self.stable_checks >= self.stop_checks

    # ---------------------------------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        return {"history": [asdict(c) for c in self.history],
                "settings": {"probes": self.probes, "val_images": self.val_images, "calib_images": self.calib_images,
                             "every": self.every, "seed": self.seed}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history = [ProbeCheck(**c) for c in state.get("history", [])]


def verdict(history: Sequence[ProbeCheck | Mapping[str, Any]], *, truth: Mapping[str, float] | None = None,
            supernet_scores: Mapping[str, float] | None = None, free: Mapping[str, Mapping[str, float]] | None = None,
            macs_agreement: float = 0.9, stable_tau: float = 0.6) -> list[str]:
    """Warnings, with their numbers, when the supernet's ranking is worth no more than a free predictor.

    Args:
        history: the monitor's checks.
        truth: stand-alone accuracy by arch key for some archs (e.g. a user's own file), with the supernet's
            ``supernet_scores`` and each free predictor's values (``free[name][key]``) for the same keys.
        macs_agreement: the probe tau with MACs at or above which the ranking is "MACs again".
        stable_tau: the tau between the last two checks below which the ranking is "still moving".
    """
    lines: list[str] = []
    checks = [c if isinstance(c, Mapping) else asdict(c) for c in history]
    if checks:
        last = checks[-1]
        macs = last["tau_free"].get("macs")
        if macs is not None and macs >= macs_agreement:
            lines.append(f"The supernet ranks the probe archs almost exactly as MACs do (Kendall tau {macs:.2f}): "
                         "it adds little to counting MACs.")
        if last["tau_prev"] is not None and last["tau_prev"] < stable_tau:
            lines.append(f"The probe ranking is still moving: Kendall tau {last['tau_prev']:.2f} between the last "
                         f"two checks (below {stable_tau}); train longer, or average several supernets.")
    if truth:
        keys = [k for k in truth if supernet_scores is not None and k in supernet_scores]
        if len(keys) >= 3:
            mine = kendall([supernet_scores[k] for k in keys], [truth[k] for k in keys])
            best_name, best = None, None
            for name, values in (free or {}).items():
                tau = kendall([values[k] for k in keys], [truth[k] for k in keys])
                if tau is not None and (best is None or tau > best):
                    best_name, best = name, tau
            if mine is not None and best is not None and mine <= best:
                lines.append(f"On the {len(keys)} archs with stand-alone accuracies, the supernet's Kendall tau is "
                             f"{mine:.2f}, no better than {best_name} alone ({best:.2f}).")
    return lines
