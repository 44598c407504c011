"""Chain spaces: a stem, a chain of searchable layers, a head (MobileNetV2-style and NAS-Bench-Macro).

Pure data. Each searchable layer ``layer{i}`` picks an op: ``"k{K}e{E}"`` is an inverted-residual MBConv with
kernel K and expansion E (1x1 expand + BN + act, KxK depthwise with the layer's stride + BN + act,
1x1 project + BN, residual when stride 1 and channels are kept; act is the space's ``activation``: ReLU6 in the
layer-wise space, ReLU in NAS-Bench-Macro, as its own networks have it; stem and head use it too); ``"skip"`` is
the identity, or, in a layer
that changes stride or channels, a 1x1 convolution with that stride + BN (what NAS-Bench-Macro trains).
With width choices, ``width{i}`` scales the hidden (expanded) channels of layer i's MBConv.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..searchspace import Arch, Choice, SearchSpace

__all__ = ["ChainSpace", "LayerSpec", "layerwise_space", "macro_space", "parse_op", "MACRO_OPS"]

_OP_RE = re.compile(r"^k(\d+)e(\d+)$")
MACRO_OPS = ("skip", "k3e3", "k5e6")


def parse_op(op: str) -> tuple[int, int] | None:
    """``"k5e6"`` -> ``(5, 6)``; ``"skip"`` -> ``None``."""
    if op == "skip":
        return None
    m = _OP_RE.match(op)
    if m is None:
        raise ValueError(f"Unknown op {op!r}: expected 'skip' or 'k<kernel>e<expansion>' such as 'k3e6'.")
    kernel, expansion = int(m.group(1)), int(m.group(2))
    if kernel % 2 == 0 or kernel < 1 or expansion < 1:
        raise ValueError(f"Op {op!r} needs an odd kernel >= 1 and an expansion >= 1.")
    return kernel, expansion


def _conv_out(size: int, stride: int) -> int:
    # 'same' padding k // 2 with an odd kernel gives ceil(size / stride).
    return -(-size // stride)


@dataclass(frozen=True)
class LayerSpec:
    """One searchable layer of a chain network."""

    in_channels: int
    out_channels: int
    stride: int
    ops: tuple[str, ...]
    widths: tuple[float, ...] | None = None

    @property
    def reshapes(self) -> bool:
        return self.stride != 1 or self.in_channels != self.out_channels

    def hidden_channels(self, op: str, width: float = 1.0) -> int:
        kernel_expansion = parse_op(op)
        if kernel_expansion is None:
            return 0
        return max(1, int(round(self.in_channels * kernel_expansion[1] * width)))


class ChainSpace(SearchSpace):
    """A chain network's search space: one op choice per layer, optionally one width choice per layer."""

    def __init__(
        self,
        *,
        kind: str,
        params: Mapping[str, Any],
        layers: Sequence[LayerSpec],
        in_channels: int,
        num_classes: int,
        resolution: int,
        stem_channels: int,
        stem_stride: int,
        head_channels: int,
        activation: str = "relu6",
    ) -> None:
        if activation not in ("relu6", "relu"):
            raise ValueError(f"`activation` must be 'relu6' or 'relu', but got {activation!r}.")
        self.kind = kind
        self.activation = activation
        self._params = dict(params)
        self.layers = tuple(layers)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.resolution = resolution
        self.stem_channels = stem_channels
        self.stem_stride = stem_stride
        self.head_channels = head_channels
        choices = []
        for i, layer in enumerate(self.layers):
            for op in layer.ops:
                parse_op(op)
            choices.append(Choice(f"layer{i}", layer.ops))
            if layer.widths is not None:
                choices.append(Choice(f"width{i}", layer.widths))
        super().__init__(choices)

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._params}

    def layer_ops(self, arch: Mapping[str, Any]) -> list[tuple[str, float]]:
        """(op, width) of every layer of a validated arch."""
        return [
            (arch[f"layer{i}"], arch[f"width{i}"] if layer.widths is not None else 1.0)
            for i, layer in enumerate(self.layers)
        ]

    # ------------------------------------------------------------------------------- analytic counts
    def _counts(self, arch: Mapping[str, Any]) -> tuple[int, int]:
        arch = self.validate(arch)
        macs = params = 0
        size = self.resolution

        def conv(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> None:
            nonlocal macs, params, size
            size = _conv_out(size, stride)
            params += cout * (cin // groups) * k * k + 2 * cout  # weights + BN affine
            macs += size * size * cout * (cin // groups) * k * k

        conv(self.in_channels, self.stem_channels, 3, self.stem_stride)
        for layer, (op, width) in zip(self.layers, self.layer_ops(arch)):
            ke = parse_op(op)
            if ke is None:
                if layer.reshapes:
                    conv(layer.in_channels, layer.out_channels, 1, layer.stride)
                continue
            hidden = layer.hidden_channels(op, width)
            conv(layer.in_channels, hidden, 1, 1)
            conv(hidden, hidden, ke[0], layer.stride, groups=hidden)
            conv(hidden, layer.out_channels, 1, 1)
        last = self.layers[-1].out_channels if self.layers else self.stem_channels
        if self.head_channels:
            conv(last, self.head_channels, 1, 1)
            last = self.head_channels
        params += last * self.num_classes + self.num_classes
        macs += last * self.num_classes
        return macs, params

    def count_macs(self, arch: Mapping[str, Any]) -> int:
        """Multiply-accumulates of convolutions and the classifier for one image (BN, activations and
        pooling not counted). FLOPs as ``torch.utils.flop_counter`` counts them are ``2 * MACs``."""
        return self._counts(arch)[0]

    def count_params(self, arch: Mapping[str, Any]) -> int:
        """Trainable parameters of the stand-alone subnet (conv weights, BN affine, classifier)."""
        return self._counts(arch)[1]


DEFAULT_MIN_CHANNELS = 2  # left out of a space's config, so configs of default spaces stay as they were


def _scaled(channels: int, width_mult: float, min_channels: int = DEFAULT_MIN_CHANNELS) -> int:
    return max(min_channels, int(round(channels * width_mult)))


def _chain_space(cls: type[ChainSpace], kind: str, params: dict[str, Any], layers: list[LayerSpec],
                 stem_channels: int, head_channels: int, activation: str) -> ChainSpace:
    return cls(kind=kind, params=params, layers=layers, in_channels=params["in_channels"],
               num_classes=params["num_classes"], resolution=params["resolution"], stem_channels=stem_channels,
               stem_stride=1, head_channels=head_channels, activation=activation)


def _check_common(width_mult: float, in_channels: int, num_classes: int, resolution: int, min_channels: int) -> None:
    if not (isinstance(width_mult, (int, float)) and width_mult > 0):
        raise ValueError(f"`width_mult` must be a positive number, but got {width_mult!r}.")
    for name, value in (("in_channels", in_channels), ("num_classes", num_classes), ("resolution", resolution),
                        ("min_channels", min_channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"`{name}` must be a positive int, but got {value!r}.")


DEFAULT_STAGES = ((24, 2, 2), (40, 3, 2), (80, 3, 2))


def layerwise_space(
    *,
    width_mult: float = 1.0,
    stages: Sequence[Sequence[int]] = DEFAULT_STAGES,
    stem_channels: int = 16,
    head_channels: int = 320,
    kernels: Sequence[int] = (3, 5, 7),
    expansions: Sequence[int] = (3, 6),
    widths: Sequence[float] | None = None,
    in_channels: int = 3,
    num_classes: int = 10,
    resolution: int = 32,
    min_channels: int = DEFAULT_MIN_CHANNELS,
) -> ChainSpace:
    """The layer-wise MobileNetV2-style space.

    Args:
        width_mult: multiplies every channel count (stem, stages, head).
        stages: ``(channels, layers, stride)`` per stage; the first layer of a stage has the stride.
        kernels, expansions: MBConv options of every layer (their product, e.g. ``k3e3 ... k7e6``).
        widths: optional per-layer width choices (fractions of the hidden channels) for channel search.
        in_channels, num_classes, resolution: of the data.
        min_channels: no scaled channel count goes below this (few-shot sub-supernets raise it).

    Every layer but the first of a stage may also be ``"skip"``, which makes the depth variable.
    """
    _check_common(width_mult, in_channels, num_classes, resolution, min_channels)
    stages = tuple(tuple(int(v) for v in s) for s in stages)
    for s in stages:
        if len(s) != 3 or min(s) < 1:
            raise ValueError(f"Each stage must be (channels, layers, stride) of positive ints, but got {s!r}.")
    if widths is not None:
        widths = tuple(float(w) for w in widths)
        if not widths or any(not 0 < w <= 1 for w in widths):
            raise ValueError(f"`widths` must be fractions in (0, 1], but got {widths!r}.")
    mb_ops = tuple(f"k{k}e{e}" for k in kernels for e in expansions)
    for op in mb_ops:
        parse_op(op)
    layers = []
    c_in = _scaled(stem_channels, width_mult, min_channels)
    for channels, n_layers, stride in stages:
        c_out = _scaled(channels, width_mult, min_channels)
        for j in range(n_layers):
            first = j == 0
            layers.append(
                LayerSpec(c_in, c_out, stride if first else 1, mb_ops if first else mb_ops + ("skip",), widths)
            )
            c_in = c_out
    params = {
        "width_mult": width_mult,
        "stages": [list(s) for s in stages],
        "stem_channels": stem_channels,
        "head_channels": head_channels,
        "kernels": list(kernels),
        "expansions": list(expansions),
        "widths": list(widths) if widths is not None else None,
        "in_channels": in_channels,
        "num_classes": num_classes,
        "resolution": resolution,
        **({"min_channels": min_channels} if min_channels != DEFAULT_MIN_CHANNELS else {}),
    }
    return _chain_space(ChainSpace, "layerwise", params, layers, _scaled(stem_channels, width_mult, min_channels),
                        _scaled(head_channels, width_mult, min_channels) if head_channels else 0, "relu6")


class MacroSpace(ChainSpace):
    """NAS-Bench-Macro: its 8-digit keys (0 = skip, 1 = k3e3, 2 = k5e6 per layer) map to and from archs."""

    def key(self, arch: Mapping[str, Any]) -> str:
        arch = self.validate(arch)
        return "".join(str(MACRO_OPS.index(arch[f"layer{i}"])) for i in range(len(self.layers)))

    def from_key(self, key: str) -> Arch:
        if not isinstance(key, str) or len(key) != len(self.layers) or any(ch not in "012" for ch in key):
            raise ValueError(
                f"A NAS-Bench-Macro key is {len(self.layers)} digits from 0-2 such as '22212220', but got {key!r}."
            )
        return {f"layer{i}": MACRO_OPS[int(ch)] for i, ch in enumerate(key)}


def macro_space(
    *, width_mult: float = 1.0, in_channels: int = 3, num_classes: int = 10, resolution: int = 32,
    min_channels: int = DEFAULT_MIN_CHANNELS,
) -> MacroSpace:
    """The exact NAS-Bench-Macro space (at ``width_mult=1``, 3x32x32 input and 10 classes its subnets have the
    ground-truth table's parameter counts): stem 3x3 conv to 32 channels, stages of [2, 3, 3] layers at 64, 128,
    256 channels whose first layer has stride 2, ops ``skip``/``k3e3``/``k5e6``, 1x1 conv to 1280, pool, linear;
    ReLU after the stem, inside every MBConv and after the head conv, as the benchmark's own networks have it.
    ``min_channels``: no scaled channel count goes below this (few-shot sub-supernets raise it)."""
    _check_common(width_mult, in_channels, num_classes, resolution, min_channels)
    layers = []
    c_in = _scaled(32, width_mult, min_channels)
    for channels, n_layers in ((64, 2), (128, 3), (256, 3)):
        c_out = _scaled(channels, width_mult, min_channels)
        for j in range(n_layers):
            layers.append(LayerSpec(c_in, c_out, 2 if j == 0 else 1, MACRO_OPS))
            c_in = c_out
    params = {
        "width_mult": width_mult, "in_channels": in_channels, "num_classes": num_classes, "resolution": resolution,
        **({"min_channels": min_channels} if min_channels != DEFAULT_MIN_CHANNELS else {}),
    }
    return _chain_space(MacroSpace, "macro", params, layers, _scaled(32, width_mult, min_channels),
                        _scaled(1280, width_mult, min_channels), "relu")
