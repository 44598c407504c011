"""Run by tests/test_distributed.py under torchrun: train a tiny supernet with DDP and save rank 0's weights."""

import os
import sys

import torch

import optuna_kshot as ok
from optuna_kshot.training import close_distributed, init_distributed_from_env


def tiny_setup(kind: str):
    data = ok.load_default()
    train = data.train.subset(torch.arange(512))
    space = ok.layerwise_space(width_mult=0.25, stages=((16, 1, 2), (24, 2, 2)), head_channels=64, kernels=(3, 5),
                               expansions=(2, 4), in_channels=1, num_classes=10, resolution=28)
    # K-shot: a quarter of the steps in warm-up, then simplex-net turns after every step (each rank splits its
    # half batch into chunks, one arch per chunk; the test mirrors that on each half).
    options = {"kshot": {"k": 2, "warmup_fraction": 0.25, "simplex_chunks": 2, "simplex_every": 1},
               "fewshot": {"split": "enn", "thresholds": [6]}}.get(kind, {})
    supernet = ok.make_supernet(space, kind, seed=0, **options)
    sampler = ok.make_path_sampler("balanced" if kind == "fewshot" else "uniform", space, supernet=supernet)
    config = ok.TrainConfig(budget_images=64 * int(os.environ.get("DDP_STEPS", "8")), batch_size=64, lr=0.05, seed=0,
                            label_smoothing=0.0)
    return supernet, train, config, sampler


def main() -> None:
    kind, out, checkpoint = sys.argv[1], sys.argv[2], sys.argv[3]
    torch.set_num_threads(1)
    rank, world = init_distributed_from_env("cpu")
    supernet, train, config, sampler = tiny_setup(kind)
    result = ok.train_supernet(supernet, train, config, sampler=sampler, device="cpu", checkpoint=checkpoint,
                               progress=False)
    if rank == 0:
        warm = sum(1 for s in range(result.steps) if s < 0.25 * result.steps) if kind == "kshot" else 0
        torch.save({"state": supernet.state_dict(), "world": world, "images": result.images, "warm_steps": warm},
                   out)
    close_distributed()


if __name__ == "__main__":
    main()
