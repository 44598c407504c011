import threading

import numpy as np
import optuna
import pytest
import torch

from optuna_kshot import (
    SupernetEvaluator,
    SupernetObjective,
    TrainConfig,
    UniformPaths,
    evaluate_model,
    load_subnet,
    make_supernet,
    save_subnet,
    train_supernet,
)


@pytest.fixture(scope="module")
def trained(tiny_space, tiny_data):
    supernet = make_supernet(tiny_space, seed=0)
    train_supernet(supernet, tiny_data.train, TrainConfig(epochs=2, lr=0.1), sampler=UniformPaths(tiny_space),
                   progress=False)
    return supernet


@pytest.fixture
def evaluator(trained, tiny_space, tiny_data):
    return SupernetEvaluator(trained, tiny_space, tiny_data.train, tiny_data.val, calib_batches=2, batch_size=100)


def test_scores_are_deterministic_cached_and_differ_across_archs(evaluator, tiny_space):
    rng = np.random.default_rng(0)
    archs = [tiny_space.sample(rng) for _ in range(6)]
    scores = [evaluator.score(a) for a in archs]
    assert all(0.0 <= s.accuracy <= 1.0 and s.loss > 0 for s in scores)
    assert len({round(s.loss, 6) for s in scores}) > 1
    assert evaluator.score(archs[0]) is scores[0]  # cached
    uncached = SupernetEvaluator(evaluator.supernet, tiny_space, *_splits(evaluator), calib_batches=2,
                                 batch_size=100, cache=False)
    again = uncached.score(archs[0])
    assert (again.accuracy, again.loss) == (scores[0].accuracy, scores[0].loss)


def _splits(evaluator):
    return evaluator.train, evaluator.val


def test_bn_modes(trained, tiny_space, tiny_data):
    arch = tiny_space.sample(1)
    recal = SupernetEvaluator(trained, tiny_space, tiny_data.train, tiny_data.val, calib_batches=2)
    batch = SupernetEvaluator(trained, tiny_space, tiny_data.train, tiny_data.val, bn_mode="batch")
    assert recal.score(arch).loss != batch.score(arch).loss
    with pytest.raises(ValueError, match="bn_mode"):
        SupernetEvaluator(trained, tiny_space, tiny_data.train, tiny_data.val, bn_mode="running")


def test_scoring_leaves_the_supernet_untouched(evaluator, tiny_space):
    before = {k: v.clone() for k, v in evaluator.supernet.state_dict().items()}
    evaluator.score(tiny_space.sample(5))
    after = evaluator.supernet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_cpu_scoring_runs_channels_last_copies_and_the_supernet_keeps_its_layout(evaluator, tiny_space, tiny_data,
                                                                                 tmp_path):
    from optuna_kshot.devices import set_layout

    if evaluator.device.type != "cpu":
        pytest.skip("channels-last scoring is the CPU's layout; CUDA keeps the default")
    arch = tiny_space.sample(11)
    evaluator.score(arch)
    assert all(p.is_contiguous() for p in evaluator.supernet.parameters())  # training's layout, untouched
    subnet = evaluator.subnet(arch, share_weights=True)
    convs = [m.weight for m in subnet.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.stride()[1] == 1 for w in convs)  # channels-last strides, 1-channel stem included
    plain = set_layout(evaluator.subnet(arch), channels_last=False)
    assert all(p.is_contiguous() for p in plain.parameters())
    with torch.no_grad():
        x = tiny_data.val.take(torch.arange(50))[0]
        assert torch.allclose(subnet(x), plain(x), atol=1e-5)
    save_subnet(subnet, tiny_space, arch, tmp_path / "cl")  # files in the default layout
    weights = torch.load(tmp_path / "cl" / "subnet.pt", weights_only=True)
    assert all(t.is_contiguous() for t in weights.values())


def test_export_reproduces_the_supernet_score(evaluator, tiny_space, tiny_data, tmp_path):
    arch = tiny_space.sample(7)
    score = evaluator.score(arch)
    save_subnet(evaluator.subnet(arch), tiny_space, arch, tmp_path / "subnet")
    loaded = load_subnet(tmp_path / "subnet")
    assert type(loaded).__name__ == "ChainNetwork"
    accuracy, loss = evaluate_model(loaded, tiny_data.val)
    assert accuracy == score.accuracy
    assert loss == pytest.approx(score.loss, abs=1e-5)
    spec = (tmp_path / "subnet" / "subnet.json").read_text()
    assert tiny_space.key(arch) in spec


def test_bad_arch_is_a_clear_error(evaluator):
    with pytest.raises(ValueError, match="layer0"):
        evaluator.score({"layer0": "k9e9"})


def test_thread_safety_n_jobs(evaluator, tiny_space):
    """Two threads scoring concurrently give exactly the single-threaded scores."""
    objective = SupernetObjective(evaluator, objectives=("accuracy", "macs"))
    study = objective.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=12, n_jobs=2)
    fresh = SupernetEvaluator(evaluator.supernet, tiny_space, *_splits(evaluator), calib_batches=2, batch_size=100)
    for trial in study.trials:
        score = fresh.score(trial.params)
        assert trial.values[0] == score.accuracy
        assert trial.user_attrs["val_loss"] == pytest.approx(score.loss, abs=1e-6)
    errors = []

    def worker(seed):
        try:
            for a in [tiny_space.sample(seed * 10 + i) for i in range(3)]:
                evaluator.score(a)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_calibration_default_is_one_for_library_and_cli():
    import inspect

    from optuna_kshot.cli import build_parser
    from optuna_kshot.defaults import CALIB_BATCHES

    library = inspect.signature(SupernetEvaluator).parameters["calib_batches"].default
    parser = build_parser()
    for command in ("search", "export", "retrain", "run"):
        argv = [command] if command != "run" else ["run"]
        assert parser.parse_args(argv).calib_batches == library == CALIB_BATCHES, command
