"""Exported subnets: a plain ``nn.Module`` saved as a ``state_dict`` plus a JSON spec, loadable without the
supernet."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import CheckpointError
from .nn import build_subnet
from .space import SearchSpace
from .spaces import count_macs, count_params, space_from_config

__all__ = ["save_subnet", "load_subnet", "WEIGHTS_FILE", "SPEC_FILE"]

WEIGHTS_FILE = "subnet.pt"
SPEC_FILE = "subnet.json"


def save_subnet(
    subnet: nn.Module, space: SearchSpace, arch: Mapping[str, Any], directory: str | os.PathLike[str],
    *, metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``subnet.pt`` (its ``state_dict``) and ``subnet.json`` (space, arch, counts, metadata) into
    ``directory``; returns the directory. A subnet that carries its own ``space`` (built-in networks do; a
    narrower few-shot sub-supernet's subnet differs from the searched space) is saved with that one."""
    space = getattr(subnet, "space", None) or space
    arch = space.validate(arch)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec = {
        "format": "optuna-kshot-subnet/1",
        "space": space.to_config(),
        "arch": arch,
        "arch_key": space.key(arch),
        "MACs": count_macs(space, arch),
        "params": count_params(space, arch),
        **dict(metadata or {}),
    }
    tmp = directory / (WEIGHTS_FILE + ".tmp")
    torch.save({k: v.detach().cpu() for k, v in subnet.state_dict().items()}, tmp)
    os.replace(tmp, directory / WEIGHTS_FILE)
    (directory / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    return directory


def load_subnet(directory: str | os.PathLike[str], *, map_location: Any = "cpu") -> nn.Module:
    """Rebuild an exported subnet from its directory (no supernet needed); returns it in eval mode.
    Its ``space`` and ``arch`` are set as attributes."""
    directory = Path(directory)
    spec_path, weights = directory / SPEC_FILE, directory / WEIGHTS_FILE
    if not spec_path.is_file() or not weights.is_file():
        raise FileNotFoundError(f"{str(directory)!r} holds no exported subnet ({SPEC_FILE} and {WEIGHTS_FILE}).")
    spec = json.loads(spec_path.read_text())
    if spec.get("format") != "optuna-kshot-subnet/1":
        raise CheckpointError(f"{str(spec_path)!r} is not an optuna-kshot subnet spec.")
    space = space_from_config(spec["space"])
    model = build_subnet(space, spec["arch"])
    try:
        state = torch.load(weights, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{str(weights)!r} is truncated or corrupt ({type(e).__name__}: {e}).") from e
    model.load_state_dict(state)
    model.arch = space.validate(spec["arch"])
    return model.eval()
