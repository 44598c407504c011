"""Supernet kinds behind one contract (:class:`~optuna_kshot.supernets.contract.Supernet`), over a built-in space
or a user's own model with choices: one-shot, K-shot, few-shot, each optionally with SCARLET's stabilizer."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..checkpoint import CheckpointError, load_checkpoint
from ..choices import discover_space
from ..searchspace import SearchSpace
from .contract import Supernet, TrainingPhase
from .fewshot import FewShotSupernet, enn, make_router, path_enn
from .kshot import KShotSupernet, SimplexNet, code_stats
from .oneshot import OneShotSupernet
from .stabilizer import Stabilizer

__all__ = [
    "Supernet", "TrainingPhase", "OneShotSupernet", "KShotSupernet", "FewShotSupernet", "SimplexNet", "Stabilizer",
    "make_supernet", "load_supernet", "supernet_metadata", "SUPERNET_KINDS", "enn", "path_enn", "code_stats",
]

SUPERNET_KINDS = ("oneshot", "kshot", "fewshot")
_FEWSHOT_OPTIONS = {"split", "thresholds", "n_groups", "width_ratio", "from_scratch"}


def _builtin_example(space: SearchSpace) -> torch.Tensor:
    return torch.zeros(1, space.in_channels, space.resolution, space.resolution)


def make_supernet(
    source: SearchSpace | nn.Module,
    kind: str = "oneshot",
    *,
    seed: int | None = 0,
    base: OneShotSupernet | None = None,
    example_input: torch.Tensor | None = None,
    stabilizer: bool = False,
    force_stabilizer: bool = False,
    **options: Any,
) -> OneShotSupernet | KShotSupernet | FewShotSupernet:
    """A fresh supernet of ``kind`` over a built-in space or over your own model with choices.

    Args:
        source: a built-in space (``layerwise_space()``, ``macro_space()``, ``nb201_space()``) or an ``nn.Module``
            with :class:`~optuna_kshot.OpChoice`/:class:`~optuna_kshot.ValueChoice` inside (copied: yours stays
            as it is). Its search space is ``supernet.space``.
        kind: ``oneshot`` (SPOS/FairNAS training), ``kshot`` (options of
            :class:`~optuna_kshot.supernets.KShotSupernet`, e.g. ``k=4``) or ``fewshot`` (``split="enn"``,
            ``"op:CHOICE"`` or a function with ``n_groups``; ``thresholds``, ``width_ratio``).
        seed: initialisation seed of a built-in network, of K-shot copies and the simplex-net.
        base: a trained one-shot supernet (K-shot: copy 0 of every parameter; few-shot: weight transfer into every
            sub-supernet). It is copied, never trained in place.
        example_input: a batch your model takes (one sample is enough): checks that the options of every choice
            give outputs of one shape, shapes stabilizers and lets costs (MACs, params) be measured. Built-in
            spaces make their own.
        stabilizer: SCARLET's learnable stabilizer on ``Skip`` candidates; NAS-Bench-201 refuses it (its ops start
            with ReLU, so it is not equivalent to a skip there) unless ``force_stabilizer``.
    """
    if kind not in SUPERNET_KINDS:
        raise ValueError(f"Unknown supernet kind {kind!r}; choose one of {list(SUPERNET_KINDS)!r}.")
    if base is not None and not isinstance(base, OneShotSupernet):
        raise TypeError(f"`base` must be a trained one-shot supernet, but got {type(base).__name__}.")
    if isinstance(source, SearchSpace):
        from ..nn import build_model, has_network
        from ..spaces import NB201Space

        space = source
        if not has_network(space):
            raise TypeError(f"No built-in network for {type(space).__name__}: mark the choices in your own nn.Module "
                            "with optuna_kshot.OpChoice and pass the module to make_supernet.")
        if stabilizer and isinstance(space, NB201Space) and not force_stabilizer:
            raise ValueError(
                "The SCARLET stabilizer is not equivalent to a skip in NAS-Bench-201, whose ops start with ReLU "
                "(a 1x1 conv before them is not absorbed); pass force_stabilizer=True to use it anyway.")
        stab = stabilizer or force_stabilizer
        example = _builtin_example(space) if example_input is None else example_input

        def one_shot(sp: SearchSpace, s: int | None) -> OneShotSupernet:
            return OneShotSupernet(build_model(sp, seed=s), sp, example_input=example, stabilizer=stab,
                                   check_shapes=False)

        def fresh() -> nn.Module:
            return build_model(space)

        user_model = None
    elif isinstance(source, nn.Module):
        user_model = source
        space = discover_space(user_model)
        stab = stabilizer or force_stabilizer
        checked: list[bool] = []

        def one_shot(sp: SearchSpace, s: int | None) -> OneShotSupernet:
            net = OneShotSupernet(copy.deepcopy(user_model), sp, example_input=example_input, stabilizer=stab,
                                  check_shapes=not checked)
            checked.append(True)
            return net

        fresh = None  # type: ignore[assignment]
    else:
        raise TypeError(f"make_supernet takes a built-in space or an nn.Module with choices, but got "
                        f"{type(source).__name__}.")
    if base is not None and [c.name for c in base.space.choices] != [c.name for c in space.choices]:
        raise ValueError("`base` is a supernet of another space (its choices differ).")

    if kind == "oneshot":
        if options or base is not None:
            raise TypeError(f"The oneshot supernet takes no options {sorted(options) or ['base']!r}.")
        return one_shot(space, seed)
    if kind == "kshot":
        unknown = set(options) - {"k", "perturb", "temperature", "hidden", "warmup_fraction", "simplex_every",
                                  "simplex_chunks", "simplex_lr", "width_separation"}
        if unknown:
            raise TypeError(f"Unknown K-shot options {sorted(unknown)!r}.")
        if base is not None:
            if stab and not base.stabilized:
                raise ValueError("`base` has no stabilizers, but stabilizer=True was asked for.")
            return KShotSupernet(base, trained=True, seed=seed, **options)
        return KShotSupernet(one_shot(space, seed), trained=False, fresh=fresh, seed=seed, **options)
    unknown = set(options) - _FEWSHOT_OPTIONS
    if unknown:
        raise TypeError(f"Unknown few-shot options {sorted(unknown)!r}.")
    split = options.get("split", "enn")
    route, n_groups, info = make_router(space, split, thresholds=options.get("thresholds"),
                                        n_groups=options.get("n_groups"),
                                        model=None if user_model is None else copy.deepcopy(user_model))
    width_ratio = options.get("width_ratio")
    if width_ratio is None:
        by_op = isinstance(split, str) and split.startswith("op:")
        width_ratio = 1.0 if by_op or user_model is not None else 1.0 / n_groups
    if not 0 < width_ratio <= 1:
        raise ValueError(f"`width_ratio` must be in (0, 1], but got {width_ratio!r}.")
    if user_model is not None and width_ratio != 1:
        raise ValueError("Narrower sub-supernets (width_ratio < 1) are made for built-in spaces only; your own "
                         "model's sub-supernets have its width.")
    if base is not None:
        if width_ratio != 1:
            raise ValueError("Weight transfer copies a full-width one-shot supernet: use width_ratio=1 with `base`.")
        subs = [copy.deepcopy(base) for _ in range(n_groups)]
    else:
        if isinstance(split, str) and split.startswith("op:") and not options.get("from_scratch"):
            raise ValueError(
                "Few-shot by an op split starts every sub-supernet from a trained one-shot supernet (weight "
                "transfer): train a one-shot supernet first and pass it as `base` (CLI: --init-from), or pass "
                "from_scratch=True to train the sub-supernets from scratch.")
        if user_model is not None:
            subs = [one_shot(space, None) for _ in range(n_groups)]
        else:
            from ..spaces import scaled_space

            subspace = scaled_space(space, width_ratio)
            subs = [one_shot(subspace, None if seed is None else seed + g) for g in range(n_groups)]
    return FewShotSupernet(subs, space, route, info=info, width_ratio=width_ratio)


def supernet_metadata(supernet: nn.Module, **extra: Any) -> dict[str, Any]:
    """What a checkpoint records so that the supernet can be rebuilt: the space, the kind and its options, and the
    model's example input shape; plain data only."""
    config = supernet.config()
    builtin = _is_builtin(supernet)
    example = supernet.example_input()
    return {
        "space": supernet.space.to_config(), "supernet": config,
        "network": {"builtin": builtin, "example_shape": None if example is None else list(example.shape),
                  "example_dtype": None if example is None else str(example.dtype).replace("torch.", "")},
        **extra,
    }


def _is_builtin(supernet: nn.Module) -> bool:
    from ..nn import has_network

    return has_network(supernet.space)


def load_supernet(
    path: str | os.PathLike[str], *, model: nn.Module | None = None, space: SearchSpace | None = None,
    split: Any = None, map_location: Any = "cpu",
) -> tuple[OneShotSupernet | KShotSupernet | FewShotSupernet, SearchSpace, dict[str, Any]]:
    """Rebuild a trained supernet from its checkpoint: ``(supernet, space, checkpoint)``.

    Args:
        model: your model with choices, for a supernet of your own model (the checkpoint holds its weights, not
            its code); refused when its choices differ from the checkpoint's.
        space: for a built-in space, the space the checkpoint must be of.
        split: a few-shot supernet split by a function needs that function again.

    Raises:
        CheckpointError: the checkpoint is truncated, foreign, of another space or of another model.
    """
    state = load_checkpoint(path, space_config=None if space is None else space.to_config(),
                            map_location=map_location)
    if "space" not in state or "supernet" not in state:
        raise CheckpointError(f"{str(path)!r} is a checkpoint of a stand-alone model, not of a supernet.")
    spec: Mapping[str, Any] = state["supernet"]
    info = state.get("network") or {"builtin": True}
    options = dict(spec.get("options", {}))
    stabilizer = bool(options.pop("stabilizer", False))
    if spec["kind"] == "fewshot":
        if options.get("split") == "function":
            if split is None:
                raise CheckpointError(f"{str(path)!r} is a few-shot supernet split by a function: pass it again, "
                                      "load_supernet(..., split=fn).")
            options["split"] = split
        options["from_scratch"] = True  # the structure only: the weights come from the checkpoint
    if info.get("builtin", True):
        from ..spaces import space_from_config

        if model is not None:
            raise CheckpointError(f"{str(path)!r} is a supernet of the built-in space {state['space'].get('kind')!r}, "
                                  "not of your own model.")
        built_space = space_from_config(state["space"]) if space is None else space
        from ..spaces import NB201Space

        force = stabilizer and isinstance(built_space, NB201Space)
        supernet = make_supernet(built_space, spec["kind"], seed=None, stabilizer=stabilizer and not force,
                                 force_stabilizer=force, **options)
    else:
        if model is None:
            raise CheckpointError(f"{str(path)!r} is a supernet of your own model: pass the model, "
                                  "load_supernet(path, model=MyNet()).")
        found = discover_space(model).to_config()
        if found != state["space"]:
            stored = dict(state["space"]["choices"]) if "choices" in state["space"] else {}
            mine = dict(found["choices"])
            diff = sorted(n for n in set(stored) | set(mine) if stored.get(n) != mine.get(n))
            raise CheckpointError(f"{str(path)!r} is a supernet of another model: the choices {diff!r} differ.")
        shape, dtype = info.get("example_shape"), info.get("example_dtype")
        example = None if shape is None else torch.zeros(shape, dtype=getattr(torch, dtype or "float32"))
        supernet = make_supernet(model, spec["kind"], seed=None, example_input=example, stabilizer=stabilizer,
                                 **options)
    try:
        supernet.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{str(path)!r} does not fit this supernet ({str(e).splitlines()[0]}); is it of "
                              "another model or kind?") from e
    return supernet.eval(), supernet.space, state
