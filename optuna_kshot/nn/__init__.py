"""Torch networks of the built-in spaces: the supernet model (with choices) and stand-alone subnets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..searchspace import SearchSpace
from ..seeding import seeded
from ..spaces import ChainSpace, NB201Space
from .chain import ChainNetwork
from .nb201 import NB201Network

__all__ = ["ChainNetwork", "NB201Network", "build_model", "build_subnet", "has_network"]


def has_network(space: SearchSpace) -> bool:
    """Whether ``space`` is a built-in space with a network of its own."""
    return isinstance(space, (ChainSpace, NB201Space))


def _network_class(space: SearchSpace) -> type[ChainNetwork] | type[NB201Network]:
    if isinstance(space, ChainSpace):
        return ChainNetwork
    if isinstance(space, NB201Space):
        return NB201Network
    raise TypeError(
        f"No built-in network for {type(space).__name__}: mark the choices in your own nn.Module with "
        "optuna_kshot.OpChoice and pass the module to make_supernet."
    )


def build_model(space: SearchSpace, *, seed: int | None = None) -> nn.Module:
    """The supernet model of a built-in space (a plain module whose layers are choices), initialised from
    ``seed``; :func:`~optuna_kshot.make_supernet` makes a supernet of it."""
    cls = _network_class(space)
    with seeded(seed):
        return cls(space)


def build_subnet(space: SearchSpace, arch: Mapping[str, Any], *, seed: int | None = None) -> nn.Module:
    """A freshly initialised stand-alone ``nn.Module`` of one arch of a built-in space, initialised from ``seed``."""
    cls = _network_class(space)
    with seeded(seed):
        return cls(space, arch)
