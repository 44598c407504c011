"""The NAS-Bench-201 cell space. Pure data.

A cell is a DAG over nodes 0..3 with six edges (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2), named ``edge_j_i``; each
edge picks one of :data:`NB201_OPS`; node j sums its incoming edges and node 3 is the cell's output.
The network: 3x3 stem conv + BN; N cells at C channels; a residual reduction block to 2C; N cells; a reduction
block to 4C; N cells; BN, ReLU, global average pool, linear. All cells share the arch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..searchspace import Arch, Choice, SearchSpace

__all__ = ["NB201Space", "nb201_space", "NB201_OPS", "NB201_EDGES"]

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
_KERNEL = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}


def edge_name(j: int, i: int) -> str:
    return f"edge_{j}_{i}"


class NB201Space(SearchSpace):
    """NAS-Bench-201's 15,625 cells; keys are six op indices in edge order, e.g. ``"334131"``."""

    kind = "nb201"

    def __init__(
        self, *, channels: int = 16, cells_per_stage: int = 5, in_channels: int = 3, num_classes: int = 10,
        resolution: int = 32,
    ) -> None:
        for name, value in (
            ("channels", channels), ("cells_per_stage", cells_per_stage), ("in_channels", in_channels),
            ("num_classes", num_classes), ("resolution", resolution),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, but got {value!r}.")
        if resolution % 4:
            raise ValueError(
                f"NAS-Bench-201 halves the resolution twice, so it must be divisible by 4, but got {resolution}."
            )
        self.channels = channels
        self.cells_per_stage = cells_per_stage
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.resolution = resolution
        super().__init__([Choice(edge_name(j, i), NB201_OPS) for j, i in NB201_EDGES])

    def to_config(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "channels": self.channels, "cells_per_stage": self.cells_per_stage,
            "in_channels": self.in_channels, "num_classes": self.num_classes, "resolution": self.resolution,
        }

    def key(self, arch: Mapping[str, Any]) -> str:
        arch = self.validate(arch)
        return "".join(str(NB201_OPS.index(arch[edge_name(j, i)])) for j, i in NB201_EDGES)

    def from_key(self, key: str) -> Arch:
        if not isinstance(key, str) or len(key) != 6 or any(ch not in "01234" for ch in key):
            raise ValueError(f"A NAS-Bench-201 key is 6 digits from 0-4 such as '334131', but got {key!r}.")
        return {edge_name(j, i): NB201_OPS[int(ch)] for (j, i), ch in zip(NB201_EDGES, key)}

    def edge_ops(self, arch: Mapping[str, Any]) -> dict[tuple[int, int], str]:
        arch = self.validate(arch)
        return {(j, i): arch[edge_name(j, i)] for j, i in NB201_EDGES}

    def is_connected(self, arch: Mapping[str, Any]) -> bool:
        """Whether some input-to-output path avoids ``none`` (otherwise the cell outputs zeros)."""
        ops = self.edge_ops(arch)
        reach = {0}
        for j in (1, 2, 3):
            if any(i in reach and ops[(j, i)] != "none" for i in range(j)):
                reach.add(j)
        return 3 in reach

    # ------------------------------------------------------------------------------- analytic counts
    def _counts(self, arch: Mapping[str, Any]) -> tuple[int, int]:
        ops = self.edge_ops(arch)
        c, r = self.channels, self.resolution
        params = self.in_channels * c * 9 + 2 * c
        macs = r * r * c * self.in_channels * 9
        for stage in range(3):
            if stage:
                c_in, c, r = c, 2 * c, r // 2
                params += c * c_in * 9 + 2 * c + c * c * 9 + 2 * c + c * c_in
                macs += r * r * (c * c_in * 9 + c * c * 9 + c * c_in)
            for op in ops.values():
                k = _KERNEL.get(op)
                if k is not None:
                    params += self.cells_per_stage * (c * c * k * k + 2 * c)
                    macs += self.cells_per_stage * r * r * c * c * k * k
        params += 2 * c + c * self.num_classes + self.num_classes
        macs += c * self.num_classes
        return macs, params

    def count_macs(self, arch: Mapping[str, Any]) -> int:
        """Multiply-accumulates of convolutions and the classifier for one image. FLOPs as
        ``torch.utils.flop_counter`` counts them are ``2 * MACs``."""
        return self._counts(arch)[0]

    def count_params(self, arch: Mapping[str, Any]) -> int:
        """Trainable parameters of the stand-alone subnet."""
        return self._counts(arch)[1]


def nb201_space(
    *, channels: int = 16, cells_per_stage: int = 5, in_channels: int = 3, num_classes: int = 10,
    resolution: int = 32,
) -> NB201Space:
    """The NAS-Bench-201 space (paper: ``channels=16, cells_per_stage=5`` on 3x32x32 input)."""
    return NB201Space(
        channels=channels, cells_per_stage=cells_per_stage, in_channels=in_channels, num_classes=num_classes,
        resolution=resolution,
    )
