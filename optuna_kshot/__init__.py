"""optuna-kshot: weight-sharing supernets (one-shot, K-shot, few-shot) as Optuna objectives.

Names are imported lazily (on first use), so ``import optuna_kshot`` and ``optuna-kshot --help`` stay fast; type
checkers see the real imports (``if TYPE_CHECKING``), so ``ok.make_supernet`` and friends are typed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ArchCosts": "costs",
    "ArrayDataset": "data",
    "CheckpointError": "checkpoint",
    "Choice": "searchspace",
    "DataSplits": "data",
    "DatasetSplit": "loaders",
    "EnsembleEvaluator": "evaluation",
    "Evaluator": "objective",
    "FairPaths": "paths",
    "SandwichPaths": "paths",
    "FewShotSupernet": "supernets",
    "FixedPath": "paths",
    "FlopsBinPaths": "paths",
    "LateSnapshots": "snapshots",
    "KShotSupernet": "supernets",
    "OneShotSupernet": "supernets",
    "OpChoice": "choices",
    "PathSampler": "paths",
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
    "pick_trial": "objective",
    "open_study": "objective",
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

if TYPE_CHECKING:  # the real names for type checkers (mypy, pyright); at run time they load lazily
    from .checkpoint import CheckpointError as CheckpointError
    from .choices import OpChoice as OpChoice
    from .choices import Skip as Skip
    from .choices import ValueChoice as ValueChoice
    from .choices import Zero as Zero
    from .choices import discover_space as discover_space
    from .choices import use_arch as use_arch
    from .costs import ArchCosts as ArchCosts
    from .costs import measure_costs as measure_costs
    from .data import ArrayDataset as ArrayDataset
    from .data import DataSplits as DataSplits
    from .data import load_data as load_data
    from .data import load_default as load_default
    from .data import load_fashion_mnist as load_fashion_mnist
    from .data import load_torchvision as load_torchvision
    from .evaluation import EnsembleEvaluator as EnsembleEvaluator
    from .evaluation import Score as Score
    from .evaluation import SupernetEvaluator as SupernetEvaluator
    from .evaluation import evaluate_model as evaluate_model
    from .evaluation import recalibrate_bn as recalibrate_bn
    from .export import load_subnet as load_subnet
    from .export import save_subnet as save_subnet
    from .loaders import DatasetSplit as DatasetSplit
    from .loaders import as_split as as_split
    from .metrics import ranking_metrics as ranking_metrics
    from .monitor import RankingMonitor as RankingMonitor
    from .nn import build_model as build_model
    from .nn import build_subnet as build_subnet
    from .objective import Evaluator as Evaluator
    from .objective import SupernetObjective as SupernetObjective
    from .objective import open_study as open_study
    from .objective import pick_trial as pick_trial
    from .paths import FairPaths as FairPaths
    from .paths import FixedPath as FixedPath
    from .paths import FlopsBinPaths as FlopsBinPaths
    from .paths import PathSampler as PathSampler
    from .paths import SandwichPaths as SandwichPaths
    from .paths import UniformPaths as UniformPaths
    from .paths import default_path_sampler as default_path_sampler
    from .paths import make_path_sampler as make_path_sampler
    from .retrain import RetrainResult as RetrainResult
    from .retrain import reference_arch as reference_arch
    from .retrain import retrain as retrain
    from .searchspace import Choice as Choice
    from .searchspace import SearchSpace as SearchSpace
    from .snapshots import LateSnapshots as LateSnapshots
    from .spaces import count_flops as count_flops
    from .spaces import count_macs as count_macs
    from .spaces import count_params as count_params
    from .spaces import layerwise_space as layerwise_space
    from .spaces import macro_space as macro_space
    from .spaces import nb201_space as nb201_space
    from .spaces import space_from_config as space_from_config
    from .standalone import StandaloneResult as StandaloneResult
    from .standalone import train_standalone as train_standalone
    from .supernets import FewShotSupernet as FewShotSupernet
    from .supernets import KShotSupernet as KShotSupernet
    from .supernets import OneShotSupernet as OneShotSupernet
    from .supernets import Supernet as Supernet
    from .supernets import TrainingPhase as TrainingPhase
    from .supernets import enn as enn
    from .supernets import load_supernet as load_supernet
    from .supernets import make_supernet as make_supernet
    from .supernets import supernet_metadata as supernet_metadata
    from .tables import TableEvaluator as TableEvaluator
    from .training import TrainConfig as TrainConfig
    from .training import TrainingDiverged as TrainingDiverged
    from .training import TrainResult as TrainResult
    from .training import images_per_run as images_per_run
    from .training import train_supernet as train_supernet

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
