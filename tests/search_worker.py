"""One search worker process for tests/test_workers.py: score trials with a trained supernet until the shared
study has N complete trials."""

import sys

import optuna
import torch

import optuna_kshot as ok
from optuna_kshot.workers import make_storage, run_worker


def main() -> None:
    url, study_name, checkpoint, n_trials = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = ok.load_default()
    supernet, space, _ = ok.load_supernet(checkpoint)
    evaluator = ok.SupernetEvaluator(supernet, space, data.train, data.val, calib_batches=2, batch_size=128)
    objective = ok.SupernetObjective(evaluator, objectives=("accuracy", "macs"))
    storage = make_storage(url, heartbeat_interval=1, grace_period=3)
    study = optuna.create_study(storage=storage, study_name=study_name, directions=objective.directions,
                                sampler=optuna.samplers.RandomSampler(), load_if_exists=True)
    print(run_worker(study, objective, n_trials), flush=True)


if __name__ == "__main__":
    main()
