import optuna
import pytest

from optuna_kshot import SupernetObjective, count_macs
from optuna_kshot.evaluation import Score


class AccuracyByMacs:
    """A real, deterministic evaluator without a supernet: accuracy rises with MACs (saturating), so a MACs
    budget is binding and the constraint handling can be checked over many trials quickly."""

    def __init__(self, space):
        self.space = space
        self.calls = 0

    def score(self, arch):
        self.calls += 1
        macs = count_macs(self.space, arch)
        return Score(accuracy=macs / (macs + 2e5), loss=1.0, seconds=0.0, key=self.space.key(arch), extra={})


@pytest.mark.parametrize("sampler_cls", [optuna.samplers.NSGAIISampler, optuna.samplers.TPESampler])
def test_constraint_is_honoured(tiny_space, sampler_cls):
    budget = sorted(count_macs(tiny_space, tiny_space.sample(s)) for s in range(200))[100]  # the median
    objective = SupernetObjective(AccuracyByMacs(tiny_space), objectives=("accuracy", "macs"), max_macs=budget)
    study = objective.create_study(sampler=sampler_cls(seed=0))
    study.optimize(objective, n_trials=60)
    assert study.metric_names == ["accuracy", "MACs"]
    infeasible = [t for t in study.trials if t.user_attrs["MACs"] > budget]
    assert infeasible, "the budget should bind for some sampled archs"
    assert all(not t.user_attrs["feasible"] and t.user_attrs["constraint_MACs"] > 0 for t in infeasible)
    assert study.best_trials
    assert all(t.user_attrs["MACs"] <= budget and t.user_attrs["feasible"] for t in study.best_trials)
    assert all(t.constraints["MACs"] <= 0 for t in study.best_trials)


def test_single_objective_and_attributes(tiny_space, tmp_path):
    evaluator = AccuracyByMacs(tiny_space)
    objective = SupernetObjective(evaluator, user_attrs={"supernet_kind": "oneshot"})
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    objective.prepare(study)
    study.optimize(objective, n_trials=5)
    loaded = optuna.load_study(study_name="s", storage=storage)
    trial = loaded.best_trial
    for key in ("MACs", "FLOPs", "params", "arch_key", "eval_seconds", "val_loss", "supernet_kind"):
        assert key in trial.user_attrs
    assert trial.user_attrs["FLOPs"] == 2 * trial.user_attrs["MACs"]
    assert trial.user_attrs["arch_key"] == tiny_space.key(trial.params)
    assert loaded.metric_names == ["accuracy"]


def test_prepare_refuses_wrong_directions(tiny_space):
    objective = SupernetObjective(AccuracyByMacs(tiny_space), objectives=("accuracy", "params"))
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=optuna.samplers.RandomSampler())
    with pytest.raises(ValueError, match="need \\['maximize', 'minimize'\\]"):
        objective.prepare(study)


def test_bad_objective_and_budget(tiny_space):
    with pytest.raises(ValueError, match="objectives"):
        SupernetObjective(AccuracyByMacs(tiny_space), objectives=("accuracy", "latency"))
    with pytest.raises(ValueError, match="MACs budget"):
        SupernetObjective(AccuracyByMacs(tiny_space), max_macs=-1)


def test_ask_tell_batches(tiny_space):
    evaluator = AccuracyByMacs(tiny_space)
    objective = SupernetObjective(evaluator, objectives=("accuracy", "params"), max_params=1e9)
    study = objective.create_study(sampler=optuna.samplers.NSGAIISampler(seed=1, population_size=8))
    objective.optimize_batched(study, 20, batch_size=8)
    assert len(study.trials) == 20
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert evaluator.calls == 20
