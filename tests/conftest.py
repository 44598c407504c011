import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def default_data():
    from optuna_kshot import load_default

    return load_default()


@pytest.fixture(scope="session")
def tiny_data(default_data):
    """A small slice of the built-in data, for tests that train."""
    from optuna_kshot import DataSplits

    return DataSplits(
        train=default_data.train.subset(torch.arange(512)),
        val=default_data.val.subset(torch.arange(200)),
        test=default_data.test.subset(torch.arange(200)),
        num_classes=default_data.num_classes,
        name="tiny",
    )


@pytest.fixture(scope="session")
def tiny_space(default_data):
    from optuna_kshot import layerwise_space

    return layerwise_space(
        width_mult=0.25, stages=((16, 1, 2), (24, 2, 2)), head_channels=64, kernels=(3, 5), expansions=(2, 4),
        in_channels=default_data.in_channels, num_classes=default_data.num_classes,
        resolution=default_data.resolution,
    )
