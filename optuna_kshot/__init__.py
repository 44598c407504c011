"""optuna-kshot: weight-sharing supernets (one-shot, K-shot, few-shot) as Optuna objectives."""

from __future__ import annotations

from .checkpoint import CheckpointError
from .data import ArrayDataset, DataSplits, load_data, load_default, load_fashion_mnist, load_torchvision
from .evaluation import Score, SupernetEvaluator, evaluate_model, recalibrate_bn
from .export import load_subnet, save_subnet
from .nn import build_subnet, build_supernet
from .objective import SupernetObjective
from .sampling import FairSampler, FixedSampler, FlopsBinSampler, UniformSampler, make_sampler
from .space import Choice, SearchSpace
from .spaces import (
    count_flops,
    count_macs,
    count_params,
    layerwise_space,
    macro_space,
    nb201_space,
    space_from_config,
)
from .standalone import StandaloneResult, train_standalone
from .supernet import load_supernet, make_supernet, supernet_metadata
from .training import TrainConfig, TrainingDiverged, TrainResult, train_supernet

__version__ = "0.1.0"

__all__ = [
    "ArrayDataset", "CheckpointError", "Choice", "DataSplits", "FairSampler", "FixedSampler", "FlopsBinSampler",
    "Score", "SearchSpace", "StandaloneResult", "SupernetEvaluator", "SupernetObjective", "TrainConfig",
    "TrainResult", "TrainingDiverged", "UniformSampler", "build_subnet", "build_supernet", "count_flops",
    "count_macs", "count_params", "evaluate_model", "layerwise_space", "load_data", "load_default",
    "load_fashion_mnist", "load_subnet", "load_supernet", "load_torchvision", "macro_space", "make_sampler",
    "make_supernet", "nb201_space", "recalibrate_bn", "save_subnet", "space_from_config", "supernet_metadata",
    "train_standalone", "train_supernet",
]
