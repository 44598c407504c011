"""Many workers on one study: storages with heartbeats, and a worker loop that stops at exactly N trials.

Storages (:func:`make_storage`):
- ``sqlite:///path.db``: one process;
- ``journal:path.log`` (``JournalStorage`` with a file backend): several processes on one host;
- ``postgresql://...`` (or any RDB URL): several hosts.

RDB storages get heartbeats and :class:`optuna.storages.RetryHeartbeatStaleTrialCallback`: a worker killed
mid-trial leaves a RUNNING trial whose heartbeat stops; the next worker to look fails it and enqueues a retry with
the same params. The journal backend has no heartbeats, so the worker loop fails the RUNNING trials of dead
processes on this host itself (each trial records its worker's host and pid) and enqueues their retries.

:func:`run_worker` runs trials until the study holds ``n_trials`` COMPLETE trials. A trial that would exceed the
count (several workers asked at once) is pruned as surplus before it is scored, so together the workers finish
exactly ``n_trials`` trials, none lost or duplicated.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

__all__ = ["make_storage", "run_worker", "run_workers", "recover_dead_workers"]

_logger = logging.getLogger(__name__)
_LIVE = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)


def make_storage(url: str, *, heartbeat_interval: int = 5, grace_period: int = 20,
                 max_retry: int = 3) -> optuna.storages.BaseStorage:
    """A storage for ``url``; RDB URLs other than SQLite get heartbeats and stale-trial retries.

    Raises:
        ValueError: the URL is malformed or the database cannot be reached (naming the URL and the reason).
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f"A storage URL must be a non-empty str, but got {url!r}.")
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = url[len("journal:"):]
        if not path:
            raise ValueError("A journal storage URL is 'journal:PATH', e.g. journal:runs/study.log.")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        os.makedirs(os.path.dirname(os.path.abspath(url[len("sqlite:///"):])), exist_ok=True)
    kwargs: dict[str, Any] = {}
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since v2.8, and the way to go
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if not url.startswith("sqlite"):
                retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
                kwargs = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
                          "heartbeat_stale_trial_callback": retry}
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, **kwargs)
    except Exception as e:  # sqlalchemy raises many types for bad URLs and unreachable servers
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"Cannot use the storage {url!r}: {reason}") from e


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process not yet reaped by its parent is a zombie: dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def recover_dead_workers(study: optuna.Study) -> int:
    """Fail the RUNNING trials of dead worker processes on this host and enqueue a retry of each (for storages
    without heartbeats); returns how many were recovered."""
    host = socket.gethostname()
    recovered = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get("worker_host") != host or "worker_pid" not in attrs or _pid_alive(int(attrs["worker_pid"])):
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError):  # another worker got there first
            continue
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)
        recovered += 1
        _logger.warning("Trial %d of dead worker %s:%s failed and retried.", trial.number, host,
                        attrs["worker_pid"])
    return recovered


def _recover(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # RDB storages with heartbeats; a no-op for the others
    recover_dead_workers(study)


def run_worker(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    n_trials: int,
    *,
    poll_seconds: float = 1.0,
    timeout: float | None = None,
    show_progress_bar: bool = False,
) -> int:
    """Run trials of ``objective`` until ``study`` has ``n_trials`` COMPLETE trials (counting every worker's);
    returns how many this worker completed."""
    if not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"`n_trials` must be a positive int, but got {n_trials!r}.")
    identity = {"worker_host": socket.gethostname(), "worker_pid": os.getpid()}
    start = time.monotonic()
    done = 0

    def guarded(trial: optuna.Trial) -> Any:
        for key, value in identity.items():
            trial.set_user_attr(key, value)
        earlier = study.get_trials(deepcopy=False, states=_LIVE)
        if sum(t.number < trial.number for t in earlier) >= n_trials:
            trial.set_user_attr("surplus", True)
            raise optuna.TrialPruned("surplus: the study already has its trials")
        values = objective(trial)
        nonlocal done
        done += 1
        return values

    from tqdm.auto import tqdm

    bar = tqdm(total=n_trials, disable=not show_progress_bar, desc="trials", unit="trial")
    try:
        while timeout is None or time.monotonic() - start < timeout:
            _recover(study)
            trials = study.get_trials(deepcopy=False)
            complete = sum(t.state == TrialState.COMPLETE for t in trials)
            bar.n = min(complete, n_trials)
            bar.refresh()
            if complete >= n_trials:
                break
            waiting = any(t.state == TrialState.WAITING for t in trials)
            if sum(t.state in _LIVE for t in trials) >= n_trials and not waiting:
                time.sleep(poll_seconds)  # the rest are running elsewhere; one may die and come back
                continue
            study.optimize(guarded, n_trials=1)
    finally:
        bar.close()
    return done


def run_workers(study: optuna.Study, objective: Callable[[optuna.Trial], Any], n_trials: int, *, n_jobs: int = 1,
                show_progress_bar: bool = False) -> int:
    """:func:`run_worker` in ``n_jobs`` threads of this process (scoring is thread-safe); together with workers in
    other processes on the same storage they finish ``n_trials`` COMPLETE trials. Returns how many these threads
    completed."""
    if not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"`n_jobs` must be a positive int, but got {n_jobs!r}.")
    if n_jobs == 1:
        return run_worker(study, objective, n_trials, show_progress_bar=show_progress_bar)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(n_jobs) as pool:
        done = pool.map(lambda i: run_worker(study, objective, n_trials,
                                             show_progress_bar=show_progress_bar and i == 0), range(n_jobs))
        return sum(done)
