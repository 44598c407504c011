"""Add a supernet-scored objective to an existing Optuna study.

You already have a study (here: a SQLite file with NSGA-II over accuracy and MACs). Train a supernet once,
then hand `SupernetObjective` to `study.optimize` as you would any objective.

    python examples/existing_study.py            # ~2 minutes on 2 CPU cores
    python examples/existing_study.py --smoke    # seconds (what the test suite runs)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import optuna
import torch

import optuna_kshot as ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for tests")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default: a temporary SQLite file)")
    args = parser.parse_args()

    data = ok.load_default()
    space = ok.layerwise_space(width_mult=0.25 if args.smoke else 0.5, in_channels=data.in_channels,
                               num_classes=data.num_classes, resolution=data.resolution)
    storage = args.storage or f"sqlite:///{Path(tempfile.mkdtemp()) / 'study.db'}"

    # The user's existing study: created elsewhere, with its own sampler.
    optuna.create_study(storage=storage, study_name="my-nas", directions=["maximize", "minimize"])

    # Train the supernet once (SPOS: one uniformly sampled path per step).
    supernet = ok.make_supernet(space, seed=0)
    config = ok.TrainConfig(epochs=1 if args.smoke else 4, budget_images=512 if args.smoke else None)
    ok.train_supernet(supernet, data.train, config, sampler=ok.UniformPaths(space), progress=not args.smoke)

    # Score the study's trials with it.
    evaluator = ok.SupernetEvaluator(supernet, space, data.train, data.val, calib_batches=2 if args.smoke else 4)
    objective = ok.SupernetObjective(evaluator, objectives=("accuracy", "macs"))
    study = optuna.load_study(study_name="my-nas", storage=storage,
                              sampler=optuna.samplers.NSGAIISampler(seed=0, population_size=10))
    objective.prepare(study)  # checks the directions, names the metrics
    study.optimize(objective, n_trials=6 if args.smoke else 60)

    best = ok.pick_trial(study)  # the most accurate feasible Pareto-optimal trial
    print(f"{len(study.trials)} trials; best accuracy {best.values[0]:.4f} at {best.values[1]:,.0f} MACs")
    print(f"arch: {best.params}")
    subnet = evaluator.subnet(best.params)  # a plain nn.Module with the supernet's weights
    print(f"exported subnet: {sum(p.numel() for p in subnet.parameters()):,} parameters, "
          f"output shape {tuple(subnet(torch.zeros(1, data.in_channels, data.resolution, data.resolution)).shape)}")


if __name__ == "__main__":
    main()
