"""Built-in search spaces and their persistence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..searchspace import Choice, SearchSpace
from ._chain import (
    DEFAULT_MIN_CHANNELS,
    MACRO_OPS,
    ChainSpace,
    LayerSpec,
    MacroSpace,
    layerwise_space,
    macro_space,
    parse_op,
)
from ._nb201 import NB201_EDGES, NB201_OPS, NB201Space, nb201_space

__all__ = [
    "ChainSpace", "LayerSpec", "MacroSpace", "NB201Space", "layerwise_space", "macro_space", "nb201_space",
    "space_from_config", "build_space", "scaled_space", "count_macs", "count_flops", "count_params", "parse_op",
    "MACRO_OPS", "NB201_OPS", "NB201_EDGES", "SPACE_KINDS",
]

SPACE_KINDS = {"layerwise": layerwise_space, "macro": macro_space, "nb201": nb201_space}


def build_space(kind: str, **kwargs: Any) -> SearchSpace:
    """A built-in space by name (``layerwise``, ``macro``, ``nb201``) with its keyword arguments."""
    if kind not in SPACE_KINDS:
        raise ValueError(f"Unknown space {kind!r}; the built-in spaces are {sorted(SPACE_KINDS)!r}.")
    return SPACE_KINDS[kind](**kwargs)


def space_from_config(config: Mapping[str, Any]) -> SearchSpace:
    """Rebuild a space from :meth:`SearchSpace.to_config` (as stored in checkpoints and exported specs)."""
    config = dict(config)
    kind = config.pop("kind", None)
    if kind == "custom":
        return SearchSpace([Choice(name, tuple(options)) for name, options in config["choices"]])
    if kind == "layerwise" and config.get("stages") is not None:
        config["stages"] = tuple(tuple(s) for s in config["stages"])
    return build_space(kind, **config)


NARROW_FLOOR = 8  # a narrowed space keeps at least min(this, the space's own) channels in every layer


def scaled_space(space: SearchSpace, ratio: float) -> SearchSpace:
    """The same built-in space (same choices) with every channel count scaled by ``ratio``: a chain space's
    ``width_mult`` times ratio, NAS-Bench-201's ``channels`` times ratio (16 -> 8 / 5 / 4 for 1/2, 1/3, 1/4).

    No layer is narrowed below ``min(8, the narrowest layer of space)`` channels: networks of two or three channels
    per layer can die in training (measured: a few-shot sub-supernet at width 0.25 x 1/2 stayed at chance)."""
    if ratio == 1:
        return space
    config = space.to_config()
    if config["kind"] in ("layerwise", "macro"):
        config["width_mult"] = config["width_mult"] * ratio
        narrowest = min([space.stem_channels, *(layer.out_channels for layer in space.layers)])
        config["min_channels"] = max(config.get("min_channels", DEFAULT_MIN_CHANNELS), min(NARROW_FLOOR, narrowest))
    elif config["kind"] == "nb201":
        c = config["channels"]
        config["channels"] = max(min(4, c), int(round(c * ratio)))
    else:
        raise TypeError(f"Only built-in spaces can be narrowed, not {type(space).__name__}.")
    return space_from_config(config)


def _counter(space: SearchSpace, what: str) -> Any:
    fn = getattr(space, what, None)
    if fn is None:
        raise TypeError(f"{type(space).__name__} has no analytic {what[6:]} count; only built-in spaces do.")
    return fn


def count_macs(space: SearchSpace, arch: Mapping[str, Any]) -> int:
    """Multiply-accumulates of one image's forward pass through the arch's subnet (conv + linear)."""
    return int(_counter(space, "count_macs")(arch))


def count_flops(space: SearchSpace, arch: Mapping[str, Any]) -> int:
    """FLOPs as ``torch.utils.flop_counter.FlopCounterMode`` counts them: ``2 * MACs``."""
    return 2 * count_macs(space, arch)


def count_params(space: SearchSpace, arch: Mapping[str, Any]) -> int:
    """Trainable parameters of the arch's stand-alone subnet."""
    return int(_counter(space, "count_params")(arch))
