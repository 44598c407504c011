import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from optuna_kshot import load_subnet
from optuna_kshot.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _tiny(tmp_path):
    return ["--space", "macro", "--width-mult", "0.0625", "--budget-images", "1024", "--quiet",
            "--checkpoint", str(tmp_path / "supernet.pt")]


def _storage(tmp_path, checkpoint="supernet.pt"):
    return ["--storage", f"sqlite:///{tmp_path / 'study.db'}", "--study-name", "s", "--quiet",
            "--checkpoint", str(tmp_path / checkpoint), "--calib-batches", "1"]


@pytest.mark.slow
def test_train_search_export(tmp_path, capsys):
    assert main(["train", *_tiny(tmp_path)]) == 0
    assert (tmp_path / "supernet.pt").is_file()
    assert main(["search", *_storage(tmp_path), "--trials", "6", "--sampler", "tpe",
                 "--objectives", "accuracy,params", "--max-params", "1e9"]) == 0
    out = capsys.readouterr().out
    assert "Pareto front" in out and "params" in out
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert len(study.trials) == 6 and study.metric_names == ["accuracy", "params"]
    assert main(["export", *_storage(tmp_path), "--out", str(tmp_path / "subnet")]) == 0
    spec = json.loads((tmp_path / "subnet" / "subnet.json").read_text())
    subnet = load_subnet(tmp_path / "subnet")
    assert subnet.arch == spec["arch"] and len(spec["arch_key"]) == 8
    assert spec["trial"] in {t.number for t in study.best_trials}


@pytest.mark.slow
def test_kshot_from_one_shot_checkpoint(tmp_path):
    assert main(["train", *_tiny(tmp_path)]) == 0
    kshot = ["--space", "macro", "--width-mult", "0.0625", "--budget-images", "512", "--quiet",
             "--checkpoint", str(tmp_path / "kshot.pt")]
    assert main(["train", *kshot, "--supernet", "kshot", "--k", "2",
                 "--init-from", str(tmp_path / "supernet.pt")]) == 0
    from optuna_kshot import load_supernet
    from optuna_kshot.defaults import SIMPLEX_EVERY

    supernet, _, state = load_supernet(tmp_path / "kshot.pt")
    assert state["supernet"]["kind"] == "kshot" and supernet.k == 2
    assert state["supernet"]["options"]["k"] == 2 and state["supernet"]["options"]["simplex_every"] == SIMPLEX_EVERY
    assert main(["search", *_storage(tmp_path, "kshot.pt"), "--trials", "2"]) == 0
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert all(len(t.user_attrs["kshot_code"]) == 2 for t in study.trials)
    assert all(t.user_attrs["supernet_kind"] == "kshot" for t in study.trials)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--data", "fashion-mnist:/nonexistent/dir"], "apt-get install dataset-fashion-mnist"),
        (["train", "--widths", "half"], "--widths takes comma-separated fractions"),
        (["train", "--space", "macro", "--widths", "0.5,1"], "needs --space layerwise"),
        (["train", "--epochs", "0"], "--epochs must be a positive integer, not 0"),
        (["search", "--checkpoint", "/nonexistent.pt"], "No checkpoint at"),
        (["train", "--supernet", "twoshot"], "Unknown supernet kind 'twoshot'"),
        (["train", "--init-from", "x.pt"], "add --supernet kshot"),
        (["train", "--widths", "0.5,1.5"], "`widths` must be fractions in (0, 1]"),
        (["train", "--supernet", "kshot", "--simplex-every", "0"], "--simplex-every must be a positive integer"),
    ],
)
def test_misuse_exits_2_with_one_clear_line(argv, message, capsys, tmp_path):
    assert main([*argv, "--quiet"] if argv[0] == "train" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "--trials", "-5"], "--trials must be a positive integer, not -5"),
        (["run", "--trials", "-5"], "--trials must be a positive integer, not -5"),
        (["run", "--objectives", "accuracy,speed"], "--objectives takes distinct names"),
        (["train", "--monitor", "2"], "--monitor needs at least 3 probe archs"),
        (["run", "--max-macs", "0"], "--max-macs must be positive"),
        (["run", "--retrain-epochs", "-1"], "--retrain-epochs must be 0 or more"),
        (["train", "--warmup", "1.5"], "--warmup is a share of the training steps in [0, 1), not 1.5"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # no study, no checkpoint


@pytest.mark.slow
def test_rerun_says_what_was_reused_and_resumed(tmp_path, capsys):
    argv = ["train", *_tiny(tmp_path), "--monitor", "0"]
    assert main(argv) == 0
    assert "trained oneshot supernet on" in capsys.readouterr().out
    assert main(argv) == 0
    assert "reused the trained oneshot supernet" in capsys.readouterr().out
    longer = [a if a != "1024" else "2048" for a in argv]  # a larger budget: the run continues from its state
    assert main(longer) == 2  # another run's settings: refused, with the reason
    assert "another run" in capsys.readouterr().err


def test_unknown_space_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--space", "resnet"])
    assert info.value.code == 2
    assert "invalid choice: 'resnet'" in capsys.readouterr().err


def test_foreign_checkpoint_is_refused(tmp_path, capsys):
    bad = tmp_path / "supernet.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["search", "--checkpoint", str(bad), "--storage", f"sqlite:///{tmp_path / 's.db'}"]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err


def test_help_is_fast_and_lists_commands():
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "optuna_kshot.cli", "--help"],
                         capture_output=True, text=True, check=True)
    for command in ("train", "search", "export", "run"):
        assert command in out.stdout
    assert "torch" not in {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines()}


@pytest.mark.slow
def test_example_existing_study_smoke():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "existing_study.py"), "--smoke"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "6 trials; best accuracy" in out.stdout


@pytest.mark.slow
def test_example_custom_model_smoke(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "custom_model.py"), "--smoke", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "8 trials; best feasible accuracy" in out.stdout
    assert "reloaded without the model code: (2, 10)" in out.stdout
    assert (tmp_path / "subnet" / "subnet.pt2").is_file()


@pytest.mark.slow
def test_sigkilled_training_resumes_to_the_same_result(tmp_path):
    import signal
    import time

    import torch

    from optuna_kshot.checkpoint import load_checkpoint

    def command(ckpt):
        return [sys.executable, "-m", "optuna_kshot.cli", "train", "--space", "macro", "--width-mult", "0.0625",
                "--epochs", "3", "--quiet", "--checkpoint", str(ckpt), "--checkpoint-every", "5"]

    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command(tmp_path / "full.pt"), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(command(tmp_path / "killed.pt"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (tmp_path / "killed.pt").exists() and load_checkpoint(tmp_path / "killed.pt")["step"] >= 100:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = load_checkpoint(tmp_path / "killed.pt")  # never half-written: atomic rename
    assert 0 < state["step"] < load_checkpoint(tmp_path / "full.pt")["step"]
    resumed_run = subprocess.run(command(tmp_path / "killed.pt"), check=True, env=env, capture_output=True, text=True)
    assert f"resumed {tmp_path / 'killed.pt'} at step {state['step']}" in resumed_run.stdout
    full, resumed = load_checkpoint(tmp_path / "full.pt")["model"], load_checkpoint(tmp_path / "killed.pt")["model"]
    assert all(torch.equal(full[k], resumed[k]) for k in full)


@pytest.mark.slow
def test_unreachable_storage_exits_2(tmp_path, capsys):
    assert main(["train", *_tiny(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["search", "--checkpoint", str(tmp_path / "supernet.pt"), "--storage",
                 "postgresql://nobody@127.0.0.1:1/none", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Cannot use the storage 'postgresql://nobody@127.0.0.1:1/none'" in err and len(err.splitlines()) == 1


def test_nan_loss_exits_2_with_a_clear_message(tmp_path, capsys):
    argv = ["train", "--space", "macro", "--width-mult", "0.0625", "--epochs", "1", "--quiet", "--checkpoint",
            str(tmp_path / "c.pt")]
    assert main([*argv, "--lr", "1e30"]) == 2
    err = capsys.readouterr().err
    assert "became nan" in err or "became inf" in err
    assert "lower the learning rate" in err


@pytest.mark.slow
def test_own_model_and_data_by_name(tmp_path, capsys):
    """train/search/export on a user's model and datasets named package.module:function; search and export take
    the model from the checkpoint; the exported subnet loads as a torch.export program."""
    user = ["--model", "tests.user_models:SmallResNet", "--data", "tests.user_models:small_fashion"]
    ckpt = ["--checkpoint", str(tmp_path / "own.pt")]
    assert main(["train", *user, *ckpt, "--supernet", "kshot", "--k", "2", "--epochs", "1", "--batch-size",
                 "32", "--quiet"]) == 0
    storage = ["--storage", f"sqlite:///{tmp_path / 'own.db'}", "--study-name", "own", "--quiet", *ckpt,
               "--calib-batches", "1", "--data", "tests.user_models:small_fashion"]
    assert main(["search", *storage, "--trials", "4", "--sampler", "nsga2", "--objectives", "accuracy,macs"]) == 0
    study = optuna.load_study(study_name="own", storage=f"sqlite:///{tmp_path / 'own.db'}")
    assert all(t.user_attrs["MACs"] > 0 and "stage1" in t.params for t in study.trials)
    assert main(["export", *storage, "--out", str(tmp_path / "own_subnet")]) == 0
    assert (tmp_path / "own_subnet" / "subnet.pt2").is_file()
    model = load_subnet(tmp_path / "own_subnet")
    import torch

    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    capsys.readouterr()
    assert main(["search", *storage, "--model", "tests.user_models:nothing_here", "--trials", "5"]) == 2
    assert "has no 'nothing_here'" in capsys.readouterr().err


@pytest.mark.slow
def test_monitor_stops_when_stable_warns_and_shows_on_the_study(tmp_path, capsys):
    from optuna_kshot import macro_space

    space = macro_space(width_mult=0.0625, in_channels=1, resolution=28)
    archs = [space.sample(s) for s in range(12)]
    truth = [{"arch": a, "accuracy": space.count_macs(a) / 1e7} for a in archs]  # MACs rank them perfectly
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    storage = f"sqlite:///{tmp_path / 'm.db'}"
    # lr 0.05: at 0.1 this tiny network can die (loss ln 10, every probe tied) on some seeds and float layouts
    argv = ["train", "--space", "macro", "--width-mult", "0.0625", "--epochs", "4", "--lr", "0.05", "--checkpoint",
            str(tmp_path / "m.pt"), "--monitor", "4", "--monitor-every", "1", "--stop-when-stable", "-1",
            "--stable-checks", "1",
            "--truth", str(tmp_path / "truth.json"), "--storage", storage, "--study-name", "m"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "epoch 2: loss" in out and "probe ranking tau vs previous" in out and "epoch 3:" not in out
    assert "stopped early: the probe ranking was stable" in out
    assert "warning: On the 12 archs with stand-alone accuracies" in out and "no better than macs" in out
    study = optuna.load_study(study_name="m", storage=storage)
    assert "supernet-ranking-stability" in study.user_attrs["supernet_training"]["figures"]
    from optuna_dashboard import get_note

    note = get_note(study)
    assert "## Ranking readiness" in note and "no better than macs" in note


@pytest.mark.slow
def test_run_retrains_the_chosen_and_the_reference_arch(tmp_path, capsys):
    """The main job ends with a retrained model's test accuracy beside the reference arch's; `retrain` does the
    same for any trial, from scratch or from the inherited weights."""
    runs = tmp_path / "runs"
    argv = ["run", "--space", "macro", "--width-mult", "0.0625", "--budget-images", "1024", "--quiet",
            "--checkpoint", str(runs / "supernet.pt"), "--storage", f"sqlite:///{runs / 'study.db'}",
            "--out", str(runs / "subnet"), "--trials", "4", "--retrain-epochs", "1", "--max-macs", "3e5",
            "--monitor", "0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "retrained trial" in out and "test accuracy" in out
    assert "reference arch" in out and "under the budget" in out
    assert re.search(r"done in [\d.]+ s \(training \d+ s, search \d+ s, export \d+ s, retraining \d+ s\)", out)
    spec = json.loads((runs / "retrained" / "subnet.json").read_text())
    assert spec["retrained"] and 0 < spec["test_accuracy"] <= 1 and spec["reference"]["test_accuracy"] > 0
    study = optuna.load_study(study_name="optuna-kshot", storage=f"sqlite:///{runs / 'study.db'}")
    assert study.user_attrs["retrained"]["trial"] == spec["trial"]
    model = load_subnet(runs / "retrained")
    assert model.arch == spec["arch"]
    trial = study.best_trials[-1].number
    assert main(["retrain", "--checkpoint", str(runs / "supernet.pt"), "--storage", f"sqlite:///{runs / 'study.db'}",
                 "--trial", str(trial), "--retrain-epochs", "1", "--retrain-init", "inherited", "--no-reference",
                 "--out", str(tmp_path / "again"), "--quiet"]) == 0
    again = json.loads((tmp_path / "again" / "subnet.json").read_text())
    assert again["trial"] == trial and again["init"] == "inherited" and "reference" not in again
