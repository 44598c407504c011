"""Costs of an arch: MACs, FLOPs (= 2 x MACs, as ``torch.utils.flop_counter.FlopCounterMode`` counts them) and
parameters.

Built-in spaces count them analytically. For any other supernet (your own model) they are measured: the arch's
deployable subnet is exported and run once on the supernet's example input under ``FlopCounterMode``; parameters
are the subnet's. Measurements are cached by arch key. The two agree on the built-in spaces (tested).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from .searchspace import SearchSpace

__all__ = ["ArchCosts", "measure_costs", "COST_NAMES"]

COST_NAMES = ("MACs", "FLOPs", "params")


def measure_costs(subnet: Any, example_input: Any) -> dict[str, int]:
    """MACs, FLOPs and parameters of a plain module (``nn.Module``) for one sample of ``example_input`` (eval
    mode)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = subnet.training
    subnet.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            subnet(example_input[:1])
    finally:
        subnet.train(was_training)
    flops = int(counter.get_total_flops())
    return {"MACs": flops // 2, "FLOPs": flops, "params": int(sum(p.numel() for p in subnet.parameters()))}


class ArchCosts:
    """``costs(arch) -> {"MACs", "FLOPs", "params"}`` for a space (analytic) or a supernet (measured, cached).

    Args:
        space: the searched space.
        supernet: measures archs of spaces without analytic counts (needs its ``example_input``).
    """

    def __init__(self, space: SearchSpace, supernet: Any = None) -> None:
        self.space = space
        self.supernet = supernet
        self._cache: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()
        self.analytic = callable(getattr(space, "count_macs", None)) and callable(getattr(space, "count_params", None))

    @property
    def available(self) -> bool:
        """Whether archs of this space have costs (analytic, or measurable on the supernet's example input)."""
        if self.analytic:
            return True
        example = getattr(self.supernet, "example_input", None)
        return callable(example) and example() is not None

    def __call__(self, arch: Mapping[str, Any]) -> dict[str, int]:
        if self.analytic:
            macs = int(self.space.count_macs(arch))
            return {"MACs": macs, "FLOPs": 2 * macs, "params": int(self.space.count_params(arch))}
        key = self.space.key(arch)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return dict(hit)
        if not self.available:
            raise ValueError("This space has no analytic costs and the supernet no example input to measure them "
                             "on: pass example_input= to make_supernet, or search on accuracy alone.")
        subnet = self.supernet.export(arch, deploy=True)
        costs = measure_costs(subnet, self.supernet.example_input())
        with self._lock:
            self._cache.setdefault(key, costs)
        return dict(costs)
