"""Making supernets by kind and loading trained ones from checkpoints."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import nn

from .checkpoint import CheckpointError, load_checkpoint
from .nn import build_supernet
from .space import SearchSpace
from .spaces import space_from_config

__all__ = ["make_supernet", "supernet_metadata", "load_supernet", "SUPERNET_KINDS"]

SUPERNET_KINDS = ("oneshot", "kshot", "fewshot")


def make_supernet(
    space: SearchSpace, kind: str = "oneshot", *, seed: int | None = 0, base: nn.Module | None = None, **options: Any
) -> nn.Module:
    """A fresh supernet of ``kind`` over a built-in space, initialised from ``seed``.

    Kinds:
    - ``oneshot``: one weight set per op (SPOS/FairNAS training);
    - ``kshot``: K copies per op mixed by a simplex-net (options of :class:`~optuna_kshot.kshot.KShotSupernet`
      such as ``k=4``; ``base`` is a trained one-shot supernet to start from);
    - ``fewshot``: sub-supernets by ``split="enn"`` or ``"op:CHOICE"`` (options of
      :class:`~optuna_kshot.fewshot.FewShotSupernet`; ``base`` for weight transfer).

    Every kind takes ``stabilizer=True`` (SCARLET's learnable stabilizer on skips; ``force_stabilizer`` for
    NAS-Bench-201 with one-shot and K-shot).
    """
    if kind not in SUPERNET_KINDS:
        raise ValueError(f"Unknown supernet kind {kind!r}; choose one of {list(SUPERNET_KINDS)!r}.")
    if kind == "kshot":
        from .kshot import KShotSupernet

        return KShotSupernet(space, seed=seed, base=base, **options)
    if kind == "fewshot":
        from .fewshot import FewShotSupernet

        return FewShotSupernet(space, seed=seed, base=base, **options)
    unknown = sorted(set(options) - {"stabilizer", "force_stabilizer"})
    if unknown or base is not None:
        raise TypeError(f"The {kind} supernet takes only stabilizer options, but got {unknown or ['base']!r}.")
    return build_supernet(space, seed=seed, **options)


def supernet_metadata(space: SearchSpace, kind: str = "oneshot", **options: Any) -> dict[str, Any]:
    """What a checkpoint records so that the supernet can be rebuilt: space, kind, options."""
    return {"space": space.to_config(), "supernet": {"kind": kind, "options": dict(options)}}


def load_supernet(
    path: str | os.PathLike[str], *, space: SearchSpace | None = None, map_location: Any = "cpu"
) -> tuple[nn.Module, SearchSpace, dict[str, Any]]:
    """Rebuild a trained supernet from its checkpoint: ``(supernet, space, checkpoint)``.

    Raises:
        CheckpointError: the checkpoint is truncated, foreign, or (when ``space`` is given) of another space.
    """
    state = load_checkpoint(path, space_config=None if space is None else space.to_config(),
                            map_location=map_location)
    if "space" not in state or "supernet" not in state:
        raise CheckpointError(f"{str(path)!r} is a checkpoint of a stand-alone model, not of a supernet.")
    space = space_from_config(state["space"]) if space is None else space
    spec: Mapping[str, Any] = state["supernet"]
    supernet = make_supernet(space, spec["kind"], seed=None, **spec.get("options", {}))
    supernet.load_state_dict(state["model"])
    return supernet.eval(), space, state
