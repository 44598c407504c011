"""optuna-kshot: weight-sharing supernets (one-shot, K-shot, few-shot) as Optuna objectives.

Names are imported lazily (on first use), so ``import optuna_kshot`` and ``optuna-kshot --help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ArrayDataset": "data",
    "CheckpointError": "checkpoint",
    "Choice": "space",
    "DataSplits": "data",
    "FairSampler": "sampling",
    "FewShotSupernet": "fewshot",
    "FixedSampler": "sampling",
    "FlopsBinSampler": "sampling",
    "Score": "evaluation",
    "SearchSpace": "space",
    "StandaloneResult": "standalone",
    "KShotSupernet": "kshot",
    "SupernetEvaluator": "evaluation",
    "SupernetObjective": "objective",
    "TableEvaluator": "tables",
    "TrainConfig": "training",
    "TrainResult": "training",
    "TrainingDiverged": "training",
    "UniformSampler": "sampling",
    "build_subnet": "nn",
    "build_supernet": "nn",
    "count_flops": "spaces",
    "count_macs": "spaces",
    "count_params": "spaces",
    "enn": "fewshot",
    "evaluate_model": "evaluation",
    "layerwise_space": "spaces",
    "load_data": "data",
    "load_default": "data",
    "load_fashion_mnist": "data",
    "load_subnet": "export",
    "load_supernet": "supernet",
    "load_torchvision": "data",
    "macro_space": "spaces",
    "make_sampler": "sampling",
    "make_supernet": "supernet",
    "nb201_space": "spaces",
    "ranking_metrics": "metrics",
    "recalibrate_bn": "evaluation",
    "save_subnet": "export",
    "space_from_config": "spaces",
    "supernet_metadata": "supernet",
    "train_standalone": "standalone",
    "train_supernet": "training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'optuna_kshot' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
