"""Train the stand-alone ground truth of a ranking benchmark ahead of time (resumable; see _gt.py).

    python benchmarks/ground_truth.py --space nb201 --data fashion-mnist --archs 60 --sample uniform
    python benchmarks/ground_truth.py --space macro --data fashion-mnist --archs 60 --sample uniform
"""

from __future__ import annotations

import argparse

import torch
from _gt import RESULTS, SAMPLES, ground_truth, sample_archs

import optuna_kshot as ok


def make_space(name: str, data: ok.DataSplits, *, width_mult: float, channels: int, cells: int) -> ok.SearchSpace:
    common = {"in_channels": data.in_channels, "num_classes": data.num_classes, "resolution": data.resolution}
    if name == "macro":
        return ok.macro_space(width_mult=width_mult, **common)
    if name == "nb201":
        return ok.nb201_space(channels=channels, cells_per_stage=cells, **common)
    return ok.layerwise_space(width_mult=width_mult, **common)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="macro", choices=("layerwise", "macro", "nb201"))
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--resolution", type=int, default=None, help="default: 14 (chain spaces), 16 (nb201)")
    p.add_argument("--width-mult", type=float, default=0.25)
    p.add_argument("--channels", type=int, default=8, help="NAS-Bench-201 C (default: %(default)s)")
    p.add_argument("--cells", type=int, default=1, help="NAS-Bench-201 N (default: %(default)s)")
    p.add_argument("--archs", type=int, default=60)
    p.add_argument("--sample", default="uniform", choices=SAMPLES)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--gt-dir", default=str(RESULTS))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    resolution = args.resolution or (16 if args.space == "nb201" else 14)
    data = ok.load_data(args.data).resized(resolution)
    space = make_space(args.space, data, width_mult=args.width_mult, channels=args.channels, cells=args.cells)
    archs = sample_archs(space, args.archs, args.sample)
    gt = ground_truth(space, archs, data=args.data, resolution=resolution, epochs=args.epochs,
                      seeds=tuple(int(s) for s in args.seeds.split(",")), sample=args.sample,
                      workers=args.workers, gt_dir=args.gt_dir)
    print(f"{gt['path']}: {len(archs)} archs, ceiling tau {gt['ceiling']:.3f}, {gt['seconds']:.0f} s of training")


if __name__ == "__main__":
    main()
