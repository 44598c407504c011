"""Defaults shared by the library and the command line (no torch import here, so ``--help`` stays fast)."""

CALIB_BATCHES = 4
"""BN recalibration batches (of 256 training images) per scored arch."""
