import numpy as np
import optuna
import pytest

from optuna_kshot import Choice, SearchSpace
from optuna_kshot.spaces import space_from_config


@pytest.fixture
def space():
    return SearchSpace([Choice("op", ("conv3", "conv5", "skip")), Choice("depth", (1, 2)), Choice("se", (True, False))])


def test_validate_returns_ordered_copy(space):
    arch = {"se": False, "depth": 2, "op": "conv5"}
    assert list(space.validate(arch)) == ["op", "depth", "se"]


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ({"op": "conv7", "depth": 1, "se": True}, "'op' got 'conv7', which is not one of its options"),
        ({"op": "conv3", "depth": 1}, "misses choices ['se']"),
        ({"op": "conv3", "depth": 1, "se": True, "width": 2}, "Unknown choices ['width']"),
        ({"op": "conv3", "depth": 3, "se": True}, "[1, 2]"),
    ],
)
def test_validate_errors_name_the_problem(space, arch, message):
    with pytest.raises(ValueError) as info:
        space.validate(arch)
    assert message in str(info.value)


def test_validate_type_errors(space):
    with pytest.raises(TypeError, match="must be a dict"):
        space.validate(["conv3", 1, True])
    with pytest.raises(ValueError, match="distinct"):
        Choice("x", (1, "1"))
    with pytest.raises(ValueError, match="unique"):
        SearchSpace([Choice("a", (1,)), Choice("a", (2,))])
    with pytest.raises(TypeError, match="bool/int/float/str"):
        Choice("x", ([1],))


def test_bool_is_not_int(space):
    with pytest.raises(ValueError):
        SearchSpace([Choice("n", (0, 1))]).validate({"n": True})


def test_suggest_equals_trial_params(space):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    archs = []

    def objective(trial):
        arch = space.suggest(trial)
        archs.append(arch)
        return 0.0

    study.optimize(objective, n_trials=5)
    assert [t.params for t in study.trials] == [space.validate(a) for a in archs]


def test_sample_is_seeded_and_uniform(space):
    assert space.sample(3) == space.sample(3)
    rng = np.random.default_rng(0)
    ops = [space.sample(rng)["op"] for _ in range(3000)]
    counts = np.array([ops.count(o) for o in ("conv3", "conv5", "skip")])
    assert np.all(np.abs(counts / 3000 - 1 / 3) < 0.04)


def test_enumerate_size_key_roundtrip_one_hot(space):
    archs = list(space.enumerate())
    assert len(archs) == space.size == 12
    keys = {space.key(a) for a in archs}
    assert len(keys) == 12
    for a in archs:
        assert space.from_key(space.key(a)) == a
        code = space.one_hot(a)
        assert code.shape == (space.encoding_size,) and code.sum() == len(space)
    assert len({tuple(space.one_hot(a)) for a in archs}) == 12
    with pytest.raises(ValueError, match="limit"):
        list(space.enumerate(limit=5))
    with pytest.raises(ValueError, match="not an option"):
        space.from_key("op=conv9,depth=1,se=True")


def test_config_roundtrip(space):
    assert space_from_config(space.to_config()) == space


def test_validated_archs_are_read_only_and_not_validated_again():
    space = SearchSpace([Choice("op", ("a", "b")), Choice("n", (1, 2))])
    arch = space.validate({"op": "a", "n": 1})
    assert arch == {"op": "a", "n": 1} and space.validate(arch) is arch  # passed inward as it is
    with pytest.raises(TypeError, match="read-only"):
        arch["op"] = "b"
    changed = {**arch, "op": "b"}
    assert space.validate(changed) == {"op": "b", "n": 1}
    other = SearchSpace([Choice("op", ("a", "b")), Choice("n", (1, 2))])
    assert other.validate(arch) is not arch  # another space checks it itself
    assert space.sample(0) == space.validate(space.sample(0))
    import pickle

    assert type(pickle.loads(pickle.dumps(arch))) is dict
