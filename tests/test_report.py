"""The search report: summary numbers and its files."""

import csv
import warnings

import optuna
import pytest

from optuna_kshot.report import search_summary, write_report

from .helpers import new_study


def _searched(tmp_path):
    """A study as a search leaves it: accuracy and MACs, a MACs budget of 300."""
    study = new_study(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["accuracy", "MACs"])
    points = [(0.5, 100), (0.6, 200), (0.55, 250), (0.7, 400), (0.4, 150)]
    for i, (acc, macs) in enumerate(points):
        trial = study.ask()
        attrs = {"accuracy": acc, "MACs": macs, "params": 10 * macs, "arch_key": f"k{i}", "feasible": macs <= 300,
                 "constraint_MACs": macs / 300 - 1}
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        trial.set_constraint("MACs", macs / 300 - 1)
        study.tell(trial, [acc, macs])
    return study


def test_write_report(tmp_path):
    study = _searched(tmp_path)
    truth = {"k0": 0.9, "k1": 0.92, "k2": 0.91, "k3": 0.95, "k4": 0.8}
    paths = write_report(study, tmp_path / "report", truth=truth)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = paths["html"].read_text()
    assert "Pareto front" in html and "plotly.min.js" in html and (tmp_path / "report" / "plotly.min.js").is_file()
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == sorted(  # nothing left over
        ["pareto.png", "pareto.html", "plotly.min.js", "trials.csv", "summary.md"])
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["trial"] for r in rows] == ["0", "1", "2", "3", "4"]
    front = {int(r["trial"]) for r in rows if r["pareto"] == "True"}
    assert front == {t.number for t in study.best_trials} == {0, 1}  # trial 3 is the most accurate, but over budget
    md = paths["md"].read_text()
    assert "5 complete trials, 4 feasible" in md and "| 1 | 0.6000 | 200 | 2,000 | k1 |" in md
    assert "Ranking quality against ground truth on 5 searched archs: Kendall tau 1.000" in md
    # the free predictors on the same archs, against the same truth (MACs order k0 k4 k1 k2 k3: 2 of 10 pairs swapped)
    assert "Free predictors on the same archs: MACs 0.600, params 0.600; the supernet ranks +0.400 tau" in md
    assert search_summary(study, truth=truth)["ground_truth"]["free_predictors"] == pytest.approx(
        {"MACs": 0.6, "params": 0.6})

    summary = search_summary(study)
    assert summary["best"] == {"trial": 3, "accuracy": 0.7, "arch_key": "k3"} and "ground_truth" not in summary


def test_write_report_needs_trials(tmp_path):
    with pytest.raises(ValueError, match="no complete trial"):
        write_report(new_study(tmp_path), tmp_path / "report")
