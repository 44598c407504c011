"""The benchmark scripts run end to end in their seconds-long --smoke mode (their figures come from full runs)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _run(script, tmp_path, *extra):
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    png = out.with_suffix(".png")  # each script also draws its result
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    return proc.stdout, json.loads(out.read_text())


def test_speed_smoke(tmp_path):
    stdout, result = _run("speed.py", tmp_path)
    assert "evaluation / bare forwards" in stdout
    assert result["settings"]["threads"] == 1
    assert result["eval_over_bare_median"] > 0 and result["study_trials_per_second"] > 0


def test_ranking_smoke(tmp_path):
    cache = ["--gt-dir", str(tmp_path), "--cache-dir", str(tmp_path / "runs")]
    stdout, result = _run("ranking.py", tmp_path, *cache)
    assert "ceiling (seed-to-seed Kendall tau)" in stdout and "kshot2 - oneshot: " in stdout
    n = len(result["ground_truth"]["archs"])
    assert n == 6 and len(result["ground_truth"]["per_seed"]) == 2
    # free predictors ranked against the same ground truth, each with an interval
    assert [r["kind"] for r in result["baselines"]] == ["macs", "params", "depth", "enn"]
    assert result["best_free"] in {"macs", "params", "depth", "enn"}
    rows = {r["kind"]: r for r in result["kinds"]}
    # one-shot's trainings are also scored by their last epochs' weights (one epoch here: the final weights)
    assert list(rows) == ["oneshot", "oneshot-snap3", "kshot2", "oneshot-ens3"]
    snap = rows["oneshot-snap3"]
    assert snap["snapshot_of"] == "oneshot" and snap["images"] == rows["oneshot"]["images"]
    assert snap["snapshot_images"] == [[i] for i in rows["oneshot"]["images"]]
    assert snap["scores"] == rows["oneshot"]["scores"] and snap["diff_snapshot_of"]["point"] == 0
    for r in result["kinds"] + result["baselines"]:
        lo, hi = r["tau_ci"]
        assert -1 <= lo <= hi <= 1
        assert r["diff_oneshot"]["point"] == pytest.approx(r["tau_mean"] - rows["oneshot"]["tau_mean"])
        assert r["diff_best_free"]["against"] == result["best_free"] and len(r["diff_best_free"]["ci"]) == 2
    for r in rows.values():  # every kind with each supernet seed, at one budget
        assert r["seeds"] == [0, 1] and len(r["tau_per_seed"]) == 2 and [len(s) for s in r["scores"]] == [n, n]
        assert r["tau_mean"] == pytest.approx(sum(r["tau_per_seed"]) / 2)
        assert all(512 <= i <= 576 for i in r["images"])  # the ensemble's 3 members share the budget
    assert rows["oneshot"]["diff_oneshot"]["ci"] == [0.0, 0.0]
    # the vectorised tau-b of the bootstrap agrees with scipy's, ties and duplicated archs included
    stats = _module("_stats")
    x, y = [[3, 1, 2, 2, 5, 1]], [[0.1, 0.4, 0.3, 0.3, 0.2, 0.4]]
    assert stats.tau_b_rows(x, y)[0] == pytest.approx(stats.tau_b(x[0], y[0]))
    # the cached ground truth is reused; --merge replaces the one-shot row and keeps the others; --search runs
    gt_file = Path(result["ground_truth"]["path"])
    before = gt_file.read_bytes()
    stdout, merged = _run("ranking.py", tmp_path, *cache, "--kinds", "oneshot", "--merge", "--search")
    assert gt_file.read_bytes() == before
    assert [r["kind"] for r in merged["kinds"]] == list(rows)
    assert merged["kinds"][0]["scores"] == rows["oneshot"]["scores"]  # seeded: the same scores again
    assert merged["kinds"][2]["scores"] == rows["kshot2"]["scores"]
    # each finished (kind, seed) run is kept: the same command again trains nothing
    stdout, again = _run("ranking.py", tmp_path, *cache)
    assert "6 of 6 (kind, seed) runs reused" in stdout and again["kinds"][2]["scores"] == rows["kshot2"]["scores"]
    picks = merged["search"]["picks"]
    assert {p["kind"] for p in picks} == {"oneshot"} and all(0 <= p["gt_accuracy"] <= 1 for p in picks)
    assert all(p["macs"] <= p["max_macs"] for p in picks) and len(merged["search"]["reference"]) == 2
    # the statistics recomputed from the saved scores (no training) give the same figures back
    saved = json.loads((tmp_path / "result.json").read_text())
    stdout, again = _run_plain("ranking.py", "--reanalyse", str(tmp_path / "result.json"))
    assert "analysed_by" in again and [r["tau_ci"] for r in again["kinds"]] == [r["tau_ci"] for r in saved["kinds"]]
    assert all(set(r["diff_oneshot_within"]) == {"depth", "macs_bin"} for r in again["kinds"])
    # blending with MACs, measured on the saved result (no training)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "blend.py"), str(tmp_path / "result.json"),
                           "--out", str(tmp_path / "blend.json")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    blend = json.loads((tmp_path / "blend.json").read_text())["rows"]
    assert {r["kind"] for r in blend} == set(rows) and all(len(r["vs_free"]["ci"]) == 2 for r in blend)


def _run_plain(script, *args):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, json.loads(Path(args[-1]).read_text())


def test_in_group_bootstrap_resamples_inside_each_group():
    stats = _module("_stats")
    rng = np.random.default_rng(0)
    truth = rng.normal(size=40)
    groups = np.repeat([0, 1, 2, 3], 10)
    groups[:3] = 9  # a group of 3 archs: too small, left out
    index = stats.group_bootstrap_index(groups, 300, seed=1)
    assert len(index) == 4 and [i.shape for i in index] == [(300, 7), (300, 10), (300, 10), (300, 10)]
    assert all(len(np.unique(groups[i])) == 1 for i in index)  # every resample stays inside its group
    perfect = stats.resampled_within([truth], truth, index)
    assert np.allclose(perfect, 1.0)
    noisy = truth + rng.normal(scale=0.7, size=40)
    boot = stats.resampled_within([noisy], truth, index)
    low, high = stats.interval(boot)
    assert low < stats.within_groups(noisy, truth, groups) < high < 1.0
    # two seeds: the mean of their in-group taus, resample by resample
    both = stats.resampled_within([noisy, truth], truth, index)
    assert np.allclose(both, (boot + perfect) / 2)


def _module(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tabular_smoke(tmp_path):
    stdout, result = _run("tabular.py", tmp_path)
    assert "macro  accuracy,macs" in stdout
    rows = [r for r in result["rows"] if r["objectives"] == "accuracy,macs"]
    assert {r["sampler"] for r in rows} == {"nsga2", "tpe", "random"}
    assert all(0 < r["hv_frac@20"] <= 1 and r["hv_frac@10"] <= r["hv_frac@20"] for r in rows)


def test_hypervolume_2d_by_hand():
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("tabular", ROOT / "benchmarks" / "tabular.py")
    tabular = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tabular)
    acc, cost = np.array([0.9, 0.8, 0.7, 0.95]), np.array([3.0, 1.0, 0.5, 9.0])
    # reference (0.6, 10): boxes [0.5,1)x0.1 + [1,3)x0.2 + [3,9)x0.3 + [9,10)x0.35
    assert tabular.hypervolume_2d(acc, cost, 0.6, 10.0) == pytest.approx(0.05 + 0.4 + 1.8 + 0.35)
    assert tabular.hypervolume_2d(acc, cost, 0.99, 10.0) == 0.0


def test_budget_curve_smoke(tmp_path):
    stdout, result = _run("budget.py", tmp_path)
    assert "stop rule fires at" in stdout
    assert {r["budget"] for r in result["runs"]} == {1024, 2048}
    for run in result["runs"]:
        assert run["monitor"] and -1 <= run["kendall_tau"] <= 1 and set(run["stop_images"]) == {"0.7", "0.8", "0.9"}
        assert run["monitor"][0]["tau_prev"] is None and "tau_macs" in run["monitor"][0]
    assert set(result["free_predictors"]) >= {"macs", "params", "enn"}


def test_recipe_smoke(tmp_path):
    """Training recipes at equal images: the ranking table plus inherited vs stand-alone accuracy."""
    out = tmp_path / "recipe.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "recipe.py"), "--smoke", "--out", str(out),
                           "--cache-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = {r["recipe"]: r for r in result["recipes"]}
    assert list(rows) == ["oneshot", "oneshot-warmup", "sandwich"] and "inherited" in proc.stdout
    kinds = {k["kind"]: k for k in result["kinds"]}
    for name, row in rows.items():
        kind = kinds[name]
        assert row["inherited_mean"] == pytest.approx(float(np.mean(kind["scores"])))
        assert row["gap"] == pytest.approx(row["standalone_mean"] - row["inherited_mean"])
    assert all(i == 512 for i in kinds["sandwich"]["images"])  # 4 paths per sandwich step, all counted
