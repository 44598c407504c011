"""Several `optuna-kshot search` processes on one study (journal file, PostgreSQL), one killed with SIGKILL
mid-trial."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

import optuna_kshot as ok
from optuna_kshot.workers import make_storage, run_worker

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
PG_URL = os.environ.get("OPTUNA_KSHOT_PG_URL", "postgresql://optuna:optuna@127.0.0.1:5432/optuna_kshot_test")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_space, tiny_data):
    path = tmp_path_factory.mktemp("ckpt") / "supernet.pt"
    supernet = ok.make_supernet(tiny_space, seed=0)
    ok.train_supernet(supernet, tiny_data.train, ok.TrainConfig(epochs=1), sampler=ok.UniformPaths(tiny_space),
                      checkpoint=path, metadata=ok.supernet_metadata(supernet), progress=False)
    return path


def _kill_test(url, checkpoint, report_dir, n_trials=16, workers=4):
    name = f"kill-{time.time_ns()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "optuna_kshot.cli", "search", "--checkpoint", str(checkpoint), "--storage", url,
               "--study-name", name, "--trials", str(n_trials), "--sampler", "random", "--calib-batches", "2",
               "--heartbeat", "1", "--quiet", "--report-dir", str(report_dir)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(workers)]
    victim = procs[0]
    storage = make_storage(url, heartbeat_interval=1, grace_period=3)
    deadline = time.time() + 120
    killed_trial = None
    while time.time() < deadline and killed_trial is None:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            time.sleep(0.1)
            continue
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("worker_pid") == victim.pid:
                victim.send_signal(signal.SIGKILL)
                killed_trial = t.number
                break
        time.sleep(0.02)
    assert killed_trial is not None, "the victim never ran a trial"
    outputs = [p.communicate(timeout=300) for p in procs[1:]]
    assert all(p.returncode == 0 for p in procs[1:]), [o[1][-2000:] for o in outputs]
    assert victim.wait() == -signal.SIGKILL
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n_trials  # together exactly the requested number
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]  # nothing stuck
    killed = trials[killed_trial]
    assert killed.state == TrialState.FAIL
    retry_of = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number
    retried = [t for t in complete if killed_trial in (t.user_attrs.get("retry_of"), retry_of(t))]
    assert len(retried) == 1, "the killed trial is retried exactly once"
    assert killed.params.items() <= retried[0].params.items()  # with what the killed trial had suggested
    assert all("Pareto front" in o[0] for o in outputs)
    return {"requested": n_trials, "completed": len(complete),
            "failed": sum(t.state == TrialState.FAIL for t in trials),
            "pruned_surplus": sum(t.state == TrialState.PRUNED for t in trials)}


def test_journal_file_workers_with_one_killed(checkpoint, tmp_path):
    counts = _kill_test(f"journal:{tmp_path / 'study.log'}", checkpoint, tmp_path / "reports")
    print("journal kill test:", counts)


def _postgres_available() -> bool:
    try:
        make_storage(PG_URL)
        return True
    except ValueError:
        return False


def test_postgresql_workers_with_one_killed(checkpoint, tmp_path):
    if not _postgres_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL} in CI (.ci/run should start it).")
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}; .ci/run installs and starts it.")
    counts = _kill_test(PG_URL, checkpoint, tmp_path / "reports")
    print("postgresql kill test:", counts)


def test_single_process_sqlite_exact_count(checkpoint, tmp_path, tiny_data):
    supernet, space, _ = ok.load_supernet(checkpoint)
    evaluator = ok.SupernetEvaluator(supernet, space, tiny_data.train, tiny_data.val, calib_batches=1)
    objective = ok.SupernetObjective(evaluator)
    study = optuna.create_study(storage=make_storage(f"sqlite:///{tmp_path / 's.db'}"), direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    assert run_worker(study, objective, 5) == 5
    assert run_worker(study, objective, 5) == 0  # already done
    assert len(study.trials) == 5


def test_unreachable_storage_is_a_clear_error():
    with pytest.raises(ValueError, match="Cannot use the storage 'postgresql://nobody@127.0.0.1:1/none'"):
        make_storage("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(ValueError, match="journal:PATH"):
        make_storage("journal:")
    assert torch.get_num_threads() >= 1
