"""optuna-kshot: weight-sharing supernets (one-shot, K-shot, few-shot) as Optuna objectives.

Names are imported lazily (on first use), so ``import optuna_kshot`` and ``optuna-kshot --help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ArchCosts": "costs",
    "ArrayDataset": "data",
    "CheckpointError": "checkpoint",
    "Choice": "searchspace",
    "DataSplits": "data",
    "DatasetSplit": "loaders",
    "EnsembleEvaluator": "evaluation",
    "FairPaths": "paths",
    "FewShotSupernet": "supernets",
    "FixedPath": "paths",
    "FlopsBinPaths": "paths",
    "KShotSupernet": "supernets",
    "OneShotSupernet": "supernets",
    "OpChoice": "choices",
    "RankingMonitor": "monitor",
    "RetrainResult": "retrain",
    "Score": "evaluation",
    "SearchSpace": "searchspace",
    "Skip": "choices",
    "StandaloneResult": "standalone",
    "Supernet": "supernets",
    "SupernetEvaluator": "evaluation",
    "SupernetObjective": "objective",
    "TableEvaluator": "tables",
    "TrainConfig": "training",
    "TrainResult": "training",
    "TrainingDiverged": "training",
    "TrainingPhase": "supernets",
    "UniformPaths": "paths",
    "ValueChoice": "choices",
    "Zero": "choices",
    "as_split": "loaders",
    "build_model": "nn",
    "build_subnet": "nn",
    "count_flops": "spaces",
    "count_macs": "spaces",
    "count_params": "spaces",
    "default_path_sampler": "paths",
    "discover_space": "choices",
    "enn": "supernets",
    "evaluate_model": "evaluation",
    "images_per_run": "training",
    "layerwise_space": "spaces",
    "load_data": "data",
    "load_default": "data",
    "load_fashion_mnist": "data",
    "load_subnet": "export",
    "load_supernet": "supernets",
    "load_torchvision": "data",
    "macro_space": "spaces",
    "make_path_sampler": "paths",
    "make_supernet": "supernets",
    "measure_costs": "costs",
    "nb201_space": "spaces",
    "ranking_metrics": "metrics",
    "recalibrate_bn": "evaluation",
    "reference_arch": "retrain",
    "retrain": "retrain",
    "save_subnet": "export",
    "space_from_config": "spaces",
    "supernet_metadata": "supernets",
    "train_standalone": "standalone",
    "train_supernet": "training",
    "use_arch": "choices",
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
