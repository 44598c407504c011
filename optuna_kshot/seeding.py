"""Seeded weight initialisation without touching the caller's RNG."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

__all__ = ["seeded"]

# torch's default RNG is one per process: seeded blocks of two threads (two models built side by side) must not
# interleave, or each would draw from the other's seed
_LOCK = threading.RLock()


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Seed torch's RNG for weight initialisation inside the block only; the caller's RNG state is restored."""
    if seed is None:
        yield
        return
    with _LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
