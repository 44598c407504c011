"""The supernet contract suite over every kind x the built-in spaces x two models of a user's own."""

import pytest
import torch

import optuna_kshot as ok
from optuna_kshot.testing import SupernetContractSuite

from .user_models import MLP, FlatImages, SmallResNet

pytestmark = pytest.mark.slow  # 170 tests of every kind x 5 sources: CI runs them all


@pytest.fixture(scope="module")
def small(default_data):
    return default_data.train.subset(torch.arange(96)), default_data.val.subset(torch.arange(48))


class TestLayerwise(SupernetContractSuite):
    @pytest.fixture
    def source(self):
        return ok.layerwise_space(width_mult=0.25, stages=((16, 1, 2), (24, 2, 2)), head_channels=32,
                                  kernels=(3, 5), expansions=(2, 4), widths=(0.5, 1.0), in_channels=1,
                                  resolution=14)

    @pytest.fixture
    def data(self, small):
        return small[0].resized(14), small[1].resized(14)


class TestMacro(SupernetContractSuite):
    @pytest.fixture
    def source(self):
        return ok.macro_space(width_mult=0.125, in_channels=1, resolution=14)

    @pytest.fixture
    def data(self, small):
        return small[0].resized(14), small[1].resized(14)


class TestNB201(SupernetContractSuite):
    kinds = ("oneshot", "kshot", "fewshot")  # the stabilizer is refused on NB201 unless forced

    @pytest.fixture
    def source(self):
        return ok.nb201_space(channels=4, cells_per_stage=1, in_channels=1, resolution=12)

    @pytest.fixture
    def data(self, small):
        return small[0].resized(12), small[1].resized(12)


class TestUserResNet(SupernetContractSuite):
    @pytest.fixture
    def source(self):
        torch.manual_seed(0)
        return SmallResNet()

    @pytest.fixture
    def example_input(self):
        return torch.zeros(2, 1, 28, 28)

    @pytest.fixture
    def data(self, small):
        return small


class TestUserMLP(SupernetContractSuite):
    @pytest.fixture
    def source(self):
        torch.manual_seed(0)
        return MLP()

    @pytest.fixture
    def example_input(self):
        return torch.zeros(2, 196)

    @pytest.fixture
    def data(self, small):
        return FlatImages(small[0]), FlatImages(small[1])
