import optuna
import pytest

from optuna_kshot import SupernetObjective, TableEvaluator
from optuna_kshot.tables import load_macro_table


@pytest.fixture(scope="module")
def macro():
    try:
        return TableEvaluator.macro()
    except FileNotFoundError as e:
        pytest.skip(str(e))


def test_macro_lookup_and_objective(macro):
    table = load_macro_table()
    arch = macro.space.from_key("22212220")
    assert macro.score(arch).accuracy == pytest.approx(table["22212220"]["mean_acc"] / 100)
    objective = SupernetObjective(macro, objectives=("accuracy", "macs"))
    study = objective.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=20)
    for t in study.trials:
        record = table[t.user_attrs["arch_key"]]
        assert t.values == [pytest.approx(record["mean_acc"] / 100), record["flops"]]
        assert "val_loss" not in t.user_attrs


def test_missing_table_path_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="NAS_BENCH_MACRO"):
        load_macro_table(tmp_path / "nowhere")


def test_nb201_lookup():
    try:
        nb = TableEvaluator.nb201()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    score = nb.score(nb.space.from_key("334131"))
    assert 0.9 < score.accuracy < 0.92
