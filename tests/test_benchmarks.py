"""The benchmark scripts run end to end in their seconds-long --smoke mode (their figures come from full runs)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    stdout, result = _run("ranking.py", tmp_path, "--gt-dir", str(tmp_path))
    assert "ceiling (seed-to-seed Kendall tau)" in stdout
    kinds = {r["kind"] for r in result["kinds"]}
    assert {"oneshot", "fair", "kshot2", "kshot4"} <= kinds
    assert len(result["ground_truth"]["archs"]) == 4
    # the cached ground truth is reused: a second run trains no stand-alone network
    stdout, merged = _run("ranking.py", tmp_path, "--gt-dir", str(tmp_path), "--kinds", "oneshot", "--merge")
    assert "stand-alone runs" not in stdout
    # --merge replaced the one-shot row and kept the others
    assert [r["kind"] for r in merged["kinds"]] == [r["kind"] for r in result["kinds"]]
    assert merged["kinds"][1:] == result["kinds"][1:] and merged["settings"]["kinds"].split(",")[0] == "oneshot"


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
