"""The benchmark scripts run end to end in their seconds-long --smoke mode (their figures come from full runs)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(script, tmp_path, *extra):
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
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
    stdout, _ = _run("ranking.py", tmp_path, "--gt-dir", str(tmp_path), "--kinds", "oneshot")
    assert "stand-alone runs" not in stdout
