"""Torch networks of the built-in spaces: supernets and stand-alone subnets."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ..space import SearchSpace
from ..spaces import ChainSpace, NB201Space
from .chain import ChainNetwork
from .nb201 import NB201Network

__all__ = ["ChainNetwork", "NB201Network", "build_supernet", "build_subnet", "seeded"]


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Seed torch's RNG for weight initialisation inside the block only; the caller's RNG state is restored."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _network_class(space: SearchSpace) -> type[ChainNetwork] | type[NB201Network]:
    if isinstance(space, ChainSpace):
        return ChainNetwork
    if isinstance(space, NB201Space):
        return NB201Network
    raise TypeError(
        f"No built-in network for {type(space).__name__}; pass your own supernet module "
        "(called as supernet(x, arch), with an export(arch) method) instead."
    )


def build_supernet(
    space: SearchSpace, *, seed: int | None = None, stabilizer: bool = False, force_stabilizer: bool = False
) -> nn.Module:
    """A one-shot supernet of a built-in space: one weight set per (layer, op), initialised from ``seed``.

    ``stabilizer`` runs SCARLET's learnable stabilizer on identity skips (chain spaces); NAS-Bench-201 refuses it
    unless ``force_stabilizer``, which then puts a stabilizer on its ``skip_connect`` edges.
    """
    with seeded(seed):
        if force_stabilizer and isinstance(space, NB201Space):
            return NB201Network.supernet(space, stabilizer=False)._with_stabilizers()
        if stabilizer or force_stabilizer:
            return _network_class(space).supernet(space, stabilizer=True)
        return _network_class(space).supernet(space)


def build_subnet(space: SearchSpace, arch: Mapping[str, Any], *, seed: int | None = None) -> nn.Module:
    """A freshly initialised stand-alone ``nn.Module`` of one arch, initialised from ``seed``."""
    with seeded(seed):
        return _network_class(space).subnet(space, arch)
