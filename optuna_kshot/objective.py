"""The Optuna objective: each trial's arch scored by an evaluator (a supernet, or a ground-truth table)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import optuna

from .costs import ArchCosts
from .searchspace import SearchSpace

__all__ = ["SupernetObjective", "Evaluator", "OBJECTIVES", "parse_objectives", "open_study", "pick_trial"]

_logger = logging.getLogger(__name__)

# objective name -> (direction, metric name shown in Optuna/dashboard)
OBJECTIVES: dict[str, tuple[str, str]] = {
    "accuracy": ("maximize", "accuracy"),
    "macs": ("minimize", "MACs"),
    "flops": ("minimize", "FLOPs"),
    "params": ("minimize", "params"),
}


def parse_objectives(objectives: str | Sequence[str]) -> tuple[str, ...]:
    """Objective names from a comma-separated string or a sequence, checked: distinct names of
    :data:`OBJECTIVES`."""
    names = tuple(o.strip() for o in objectives.split(",")) if isinstance(objectives, str) else tuple(objectives)
    names = tuple(n for n in names if n)
    bad = [o for o in names if o not in OBJECTIVES]
    if bad or not names or len(set(names)) != len(names):
        raise ValueError(f"`objectives` must be distinct names from {','.join(OBJECTIVES)}, but got "
                         f"{objectives!r}.")
    return names


def open_study(objectives: str | Sequence[str], *, load_if_exists: bool = True, **kwargs: Any) -> optuna.Study:
    """``optuna.create_study`` (``storage``, ``study_name``, ``sampler``, ... as keywords) with the objectives'
    directions and metric names, loading an existing study of that name by default; a loaded study whose
    directions differ is refused with a ``ValueError``. Pass ``sampler`` explicitly for a search (Optuna 5's
    default multi-objective sampler is TPE)."""
    names = parse_objectives(objectives)
    directions = [OBJECTIVES[o][0] for o in names]
    study = optuna.create_study(directions=directions, load_if_exists=load_if_exists, **kwargs)
    _check_and_name(study, names)
    return study


def _check_and_name(study: optuna.Study, names: Sequence[str]) -> None:
    directions = [OBJECTIVES[o][0] for o in names]
    if [d.name.lower() for d in study.directions] != directions:
        raise ValueError(
            f"The study {study.study_name!r} optimises {[d.name.lower() for d in study.directions]}, but the "
            f"objectives {list(names)!r} need {directions}; use another study (name)."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([OBJECTIVES[o][1] for o in names])


def pick_trial(study: optuna.Study, number: int | None = None) -> optuna.trial.FrozenTrial:
    """The trial to export or retrain: trial ``number``, or by default the most accurate feasible Pareto-optimal
    trial (Optuna keeps infeasible trials out of ``best_trials``). ``ValueError`` when there is none."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if number is not None:
        for t in complete:
            if t.number == number:
                return t
        raise ValueError(f"Study {study.study_name!r} has no completed trial number {number}.")
    best = study.best_trials if complete else []
    if not best:
        raise ValueError(f"Study {study.study_name!r} has no completed feasible trial.")
    return max(best, key=lambda t: t.user_attrs.get("accuracy", t.values[0]))


class Evaluator(Protocol):
    """Anything that scores an arch of its space: ``score(arch)`` returns an object with ``accuracy``,
    ``loss``, ``seconds``, ``key`` and ``extra`` (see :class:`optuna_kshot.evaluation.Score`). An evaluator may
    also offer ``costs`` (arch -> ``{"MACs", "FLOPs", "params"}``, see :class:`optuna_kshot.costs.ArchCosts`);
    without it, the space's analytic counts are used where it has them."""

    space: SearchSpace

    def score(self, arch: Mapping[str, Any]) -> Any: ...


class SupernetObjective:
    """An Optuna objective that suggests an arch with ``trial.suggest_categorical`` and scores it.

    Args:
        evaluator: a :class:`~optuna_kshot.evaluation.SupernetEvaluator` or any :class:`Evaluator`.
        objectives: any of ``accuracy`` (maximised), ``macs``, ``flops`` (= 2 x MACs, as
            ``torch.utils.flop_counter`` counts them) and ``params`` (minimised), in order.
        max_macs, max_flops, max_params: budgets, set as Optuna constraints (``trial.set_constraint``, feasible
            when <= 0, as ``count / budget - 1``), which NSGA-II and TPE honour; infeasible trials never enter
            ``study.best_trials``. They are also stored as user attributes with a ``feasible`` flag.
        user_attrs: constant user attributes for every trial (e.g. the supernet kind).

    Example:
        >>> objective = SupernetObjective(evaluator, objectives=("accuracy", "macs"), max_macs=2e6)
        >>> study = objective.create_study(sampler=optuna.samplers.NSGAIISampler(seed=0))
        >>> study.optimize(objective, n_trials=100)
    """

    def __init__(
        self,
        evaluator: Evaluator,
        *,
        objectives: Sequence[str] = ("accuracy",),
        max_macs: float | None = None,
        max_flops: float | None = None,
        max_params: float | None = None,
        user_attrs: Mapping[str, Any] | None = None,
    ) -> None:
        objectives = parse_objectives(objectives)
        self.budgets: dict[str, float] = {}
        for name, value in (("MACs", max_macs), ("FLOPs", max_flops), ("params", max_params)):
            if value is not None:
                if not value > 0:
                    raise ValueError(f"The {name} budget must be positive, but got {value!r}.")
                self.budgets[name] = float(value)
        self.evaluator = evaluator
        self.space = evaluator.space
        self.objectives = objectives
        self.user_attrs = dict(user_attrs or {})
        costs = getattr(evaluator, "costs", None)
        self.costs: ArchCosts = costs if isinstance(costs, ArchCosts) else ArchCosts(self.space)
        needs = [o for o in objectives if o != "accuracy"] + [f"max_{b}" for b in self.budgets]
        if needs and not self.costs.available:
            raise ValueError(
                f"{needs!r} need the costs of an arch, but this space has no analytic counts and the supernet no "
                "example input to measure them on: pass example_input= to make_supernet, or search with "
                "objectives=('accuracy',) and no budget.")

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o][0] for o in self.objectives]

    @property
    def metric_names(self) -> list[str]:
        return [OBJECTIVES[o][1] for o in self.objectives]

    def create_study(self, **kwargs: Any) -> optuna.Study:
        """``optuna.create_study`` with this objective's directions and metric names. Pass ``sampler``
        explicitly (Optuna 5's default multi-objective sampler is TPE)."""
        return open_study(self.objectives, **{"load_if_exists": False, **kwargs})

    def prepare(self, study: optuna.Study) -> None:
        """Check an existing study's directions and set its metric names."""
        _check_and_name(study, self.objectives)

    # ------------------------------------------------------------------------------------------ trials
    def measures(self, arch: Mapping[str, Any]) -> dict[str, float]:
        """Costs of an arch: ``MACs``, ``FLOPs`` and ``params`` (analytic for built-in spaces, measured and cached
        otherwise); empty when the space has none."""
        return dict(self.costs(arch)) if self.costs.available else {}

    def record(self, trial: optuna.Trial, arch: Mapping[str, Any], score: Any) -> list[float]:
        """Store attributes and constraints of a scored arch on its trial; return the objective values."""
        costs = self.measures(arch)
        attrs: dict[str, Any] = {
            **self.user_attrs, **costs, "arch_key": score.key, "accuracy": score.accuracy,
            "eval_seconds": round(score.seconds, 6), **dict(score.extra),
        }
        if score.loss is not None:
            attrs["val_loss"] = score.loss
        feasible = True
        for name, budget in self.budgets.items():
            violation = costs[name] / budget - 1.0
            trial.set_constraint(name, violation)
            attrs[f"constraint_{name}"] = violation
            feasible &= violation <= 0
        if self.budgets:
            attrs["feasible"] = feasible
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        values = {"accuracy": score.accuracy, "macs": costs.get("MACs"), "flops": costs.get("FLOPs"),
                  "params": costs.get("params")}
        return [float(values[o]) for o in self.objectives]

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        arch = self.space.suggest(trial)
        values = self.record(trial, arch, self.evaluator.score(arch))
        return values[0] if len(values) == 1 else values

    def optimize_batched(self, study: optuna.Study, n_trials: int, *, batch_size: int = 16) -> None:
        """Ask/tell path: ask ``batch_size`` trials at a time, score their archs in one call, tell them."""
        if n_trials < 0 or batch_size < 1:
            raise ValueError(f"Need n_trials >= 0 and batch_size >= 1, but got {n_trials=}, {batch_size=}.")
        score_many = getattr(self.evaluator, "score_many", None)
        done = 0
        while done < n_trials:
            trials = [study.ask() for _ in range(min(batch_size, n_trials - done))]
            archs = [self.space.suggest(t) for t in trials]
            scores = score_many(archs) if score_many is not None else [self.evaluator.score(a) for a in archs]
            for trial, arch, score in zip(trials, archs, scores):
                values = self.record(trial, arch, score)
                study.tell(trial, values[0] if len(values) == 1 else values)
            done += len(trials)
