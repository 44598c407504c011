"""Defaults shared by the library and the command line (no torch import here, so ``--help`` stays fast)."""

CALIB_BATCHES = 4
"""BN recalibration batches (of 256 training images) per scored arch."""

KSHOT_K = 2
"""K-shot weight copies per op. On the NAS-Bench-201 space at 1M images (3 seeds) K=2 ranked at 0.60 [0.48, 0.68]
with a simplex-net turn every 8th step (0.97 of the ceiling; one-shot 0.55); K=4 was never measured better and costs
more per image (1.44x a one-shot image vs 1.29x)."""

SIMPLEX_EVERY = 8
"""A K-shot simplex-net turn after every this many supernet steps. At 200,000 images on NAS-Bench-201 (3 seeds each)
a turn every step, every 4th and every 8th step ranked alike (tau 0.35, 0.40, 0.36; every 8th - every 4th -0.03
[-0.09, +0.02], - every step +0.02 [-0.05, +0.08]; all within -0.05..0.00 of one-shot), so the default is the
cheapest: a K=2 step then costs about 1.2x a one-shot step instead of 1.35x (every 4th) or 2.2x (every step). At 1M
images (3 seeds) every 8th ranked at 0.60 and every step at 0.57."""
