import re

import numpy as np
import pytest

import optuna_kshot
from optuna_kshot.paths import FlopsBinPaths, make_path_sampler
from optuna_kshot.searchspace import Choice, SearchSpace


def builtin_spaces():
    return [
        optuna_kshot.layerwise_space(width_mult=0.5, in_channels=1, resolution=28),  # 3.6M archs: seeded pool
        optuna_kshot.macro_space(width_mult=0.25, in_channels=1, resolution=14),  # 6,561 archs: enumerated
        optuna_kshot.nb201_space(channels=8, cells_per_stage=1, in_channels=1, resolution=16),  # 15,625: enumerated
    ]


class BitsSpace(SearchSpace):
    """``n`` on/off choices; MACs = 1 + the number of choices on, so the extreme bins are rare (1 arch in 2**n)."""

    def __init__(self, n: int) -> None:
        super().__init__([Choice(f"b{i}", (0, 1)) for i in range(n)])

    def count_macs(self, arch):
        return 1 + sum(arch.values())


def _check_in_bins(sampler, space, draws, seed=0):
    rng = np.random.default_rng(seed)
    n = len(sampler.pools)
    counts = np.zeros(n, dtype=int)
    for _ in range(draws):
        b, arch = sampler.sample_bin(rng)
        macs = space.count_macs(arch)
        low, high = sampler.edges[b], sampler.edges[b + 1]
        assert low <= macs <= high and (macs < high or b == n - 1), (b, macs, low, high)
        assert sampler._bin(macs) == b
        counts[b] += 1
    return counts


@pytest.mark.parametrize("space", builtin_spaces(), ids=lambda s: s.kind)
def test_flops_bins_sample_inside_the_drawn_bin_uniformly_over_bins(space):
    """Default bins=5 fill on every built-in space; each arch lies in its bin and the bins are hit about equally."""
    sampler = FlopsBinPaths(space)
    assert len(sampler.pools) == 5 and all(sampler.pools)
    draws = 2500
    counts = _check_in_bins(sampler, space, draws)
    assert np.abs(counts - draws / 5).max() < 0.2 * draws / 5, counts  # ~5 standard deviations
    # sample() is the same draw without the bin
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    assert sampler.sample(rng_a) == [sampler.sample_bin(rng_b)[1]]


def test_flops_bins_reach_rare_extreme_bins_exactly():
    """16 on/off choices, MACs 1..17 in 16 bins of width 1: the top bin holds the 17 archs with 15 or 16 choices on,
    1 in 3,855 under uniform sampling (1,000 rejection tries find one 23% of the time); the pools reach it always."""
    space = BitsSpace(16)
    sampler = FlopsBinPaths(space, bins=16)
    assert len(sampler.pools[-1]) == 17 and len(sampler.pools[0]) == 1
    rng = np.random.default_rng(0)
    macs = np.array([space.count_macs(sampler.sample(rng)[0]) for _ in range(1600)])
    counts = np.bincount(sampler._bins_of(macs, sampler.edges), minlength=16)
    assert np.abs(counts - 100).max() < 45, counts
    assert (macs >= 16).sum() == counts[-1] and (macs == 1).sum() == counts[0]
    _check_in_bins(sampler, space, 800)


def test_flops_bins_that_cannot_be_hit_raise_and_name_what_fits():
    # MACs 1..4 (3 on/off choices) in 5 bins of width 0.6: [1, 1.6) [1.6, 2.2) [2.2, 2.8) [2.8, 3.4) [3.4, 4]
    space = BitsSpace(3)
    with pytest.raises(ValueError, match="Only 4 of the 5 equal-width MACs bins") as info:
        FlopsBinPaths(space, bins=5)
    fits = int(re.search(r"pass bins=(\d+)", str(info.value)).group(1))
    assert fits == 4
    sampler = FlopsBinPaths(space, bins=fits)
    assert [len(p) for p in sampler.pools] == [1, 3, 3, 1]
    _check_in_bins(sampler, space, 200)
    # more bins than distinct MAC counts can never all be filled
    nb201 = optuna_kshot.nb201_space(channels=8, cells_per_stage=1, in_channels=1, resolution=16)
    with pytest.raises(ValueError, match="hold an arch"):
        FlopsBinPaths(nb201, bins=100)
    # one MAC count: a single bin, uniform over the space
    flat = SearchSpace([Choice("act", ("relu", "gelu"))])
    flat.count_macs = lambda arch: 10
    with pytest.raises(ValueError, match="Only 1 of the 2 .* pass bins=1"):
        FlopsBinPaths(flat, bins=2)
    assert [len(p) for p in FlopsBinPaths(flat, bins=1).pools] == [2]


def test_flops_bins_validates_arguments():
    space = BitsSpace(3)
    with pytest.raises(ValueError, match="`bins` must be >= 1, but got 0"):
        FlopsBinPaths(space, bins=0)
    with pytest.raises(TypeError, match="`bins` must be an int"):
        FlopsBinPaths(space, bins=2.5)
    with pytest.raises(ValueError, match="`pool_size` must be >= 1"):
        FlopsBinPaths(space, pool_size=0)
    with pytest.raises(TypeError, match="count_macs"):
        FlopsBinPaths(SearchSpace([Choice("a", (1, 2))]))


def test_flops_bins_pool_of_a_large_space_is_seeded():
    space = builtin_spaces()[0]
    assert space.size > FlopsBinPaths.ENUMERATE_LIMIT
    a, b = FlopsBinPaths(space, pool_size=300, seed=1), FlopsBinPaths(space, pool_size=300, seed=1)
    assert a.pools == b.pools and sum(len(p) for p in a.pools) <= 300
    assert isinstance(make_path_sampler("flops-bins", space, seed=1), FlopsBinPaths)
