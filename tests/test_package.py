"""The package as users import it: lazy, typed, exporting what they implement and receive."""

import subprocess
import sys
from pathlib import Path

import pytest

import optuna_kshot as ok

ROOT = Path(__file__).resolve().parents[1]


def test_every_exported_name_resolves():
    for name in ok.__all__:
        assert getattr(ok, name) is not None, name
    for protocol in ("Supernet", "Evaluator", "PathSampler", "TrainingPhase", "Score", "TrainResult"):
        assert protocol in ok.__all__, protocol


def test_import_is_lazy():
    out = subprocess.run([sys.executable, "-c", "import optuna_kshot, sys; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_public_api_is_typed_for_type_checkers(tmp_path):
    """mypy sees the real signatures behind the lazy names (not Any)."""
    snippet = ROOT / "_typed_snippet.py"
    snippet.write_text("import optuna_kshot as ok\nreveal_type(ok.make_supernet)\nreveal_type(ok.layerwise_space())\n"
                       "reveal_type(ok.SupernetEvaluator)\n")
    try:
        out = subprocess.run([sys.executable, "-m", "mypy", snippet.name, "--ignore-missing-imports",
                              "--follow-imports=silent", "--cache-dir", str(tmp_path / "mypy")],
                             capture_output=True, text=True, cwd=ROOT, timeout=600)
    finally:
        snippet.unlink()
    notes = [line for line in out.stdout.splitlines() if "Revealed type" in line]
    assert len(notes) == 3, out.stdout + out.stderr
    assert not any('"Any"' in line for line in notes), notes
    assert "ChainSpace" in notes[1] and "KShotSupernet" in notes[0]
