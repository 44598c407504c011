"""Exported subnets: a plain ``nn.Module`` saved so that it loads without the supernet, and without your code.

A subnet directory holds:
- ``subnet.json``: space, arch, costs (MACs, FLOPs, params) and metadata;
- ``subnet.pt``: its ``state_dict`` (for those who have the code: a built-in space's subnet is rebuilt from the
  spec, a model of your own by ``supernet.export(arch)`` then ``load_state_dict``);
- ``subnet.pt2``: a ``torch.export`` program of the subnet in eval mode (batch size free), which
  :func:`load_subnet` (or ``torch.export.load(path).module()``) runs without any model code.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import CheckpointError
from .costs import ArchCosts, measure_costs
from .devices import set_layout
from .nn import build_subnet, has_network
from .searchspace import SearchSpace
from .spaces import space_from_config

__all__ = ["save_subnet", "load_subnet", "WEIGHTS_FILE", "SPEC_FILE", "PROGRAM_FILE"]

WEIGHTS_FILE = "subnet.pt"
SPEC_FILE = "subnet.json"
PROGRAM_FILE = "subnet.pt2"
_FORMAT = "optuna-kshot-subnet/2"


def _export_program(subnet: nn.Module, example_input: torch.Tensor) -> Any:
    example = example_input[:1].expand(2, *example_input.shape[1:]).contiguous()
    was_training = subnet.training
    subnet.eval()
    try:
        return torch.export.export(subnet, (example,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    finally:
        subnet.train(was_training)


def save_subnet(
    subnet: nn.Module, space: SearchSpace, arch: Mapping[str, Any], directory: str | os.PathLike[str],
    *, example_input: torch.Tensor | None = None, metadata: Mapping[str, Any] | None = None,
    program: bool = True,
) -> Path:
    """Write ``subnet.json``, ``subnet.pt`` and (with an example input, which built-in spaces make themselves)
    ``subnet.pt2`` into ``directory``; returns the directory.

    A subnet that carries its own ``space`` (built-in networks do; a narrower few-shot sub-supernet's subnet
    differs from the searched space) is saved with that one. ``example_input``: one batch the subnet takes
    (needed for a model of your own: it measures the costs and traces the program).
    """
    space = getattr(subnet, "space", None) or space
    arch = space.validate(arch)
    if any(not t.is_contiguous() for t in (*subnet.parameters(), *subnet.buffers())):
        # files hold the default memory format (a scored subnet's conv weights are channels-last on the CPU, and
        # torch.export.save does not store those as whole tensors)
        subnet = set_layout(copy.deepcopy(subnet), channels_last=False)
    builtin = has_network(space)
    if example_input is None and builtin:
        example_input = torch.zeros(1, space.in_channels, space.resolution, space.resolution)
    ref = next(iter(subnet.parameters()), None)
    if example_input is not None and ref is not None:
        example_input = example_input.to(ref.device)
    if builtin:
        costs: dict[str, int] = ArchCosts(space)(arch)
    elif example_input is not None:
        costs = measure_costs(subnet, example_input)
    else:
        costs = {}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec = {
        "format": _FORMAT, "space": space.to_config(), "builtin": builtin, "arch": arch,
        "arch_key": space.key(arch), **costs, **dict(metadata or {}),
    }
    tmp = directory / (WEIGHTS_FILE + ".tmp")
    torch.save({k: v.detach().cpu() for k, v in subnet.state_dict().items()}, tmp)
    os.replace(tmp, directory / WEIGHTS_FILE)
    if program and example_input is not None:
        exported = _export_program(subnet, example_input)
        tmp = directory / f".tmp.{PROGRAM_FILE}"
        torch.export.save(exported, tmp)
        os.replace(tmp, directory / PROGRAM_FILE)
        spec["program"] = PROGRAM_FILE
    (directory / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    return directory


def load_subnet(directory: str | os.PathLike[str], *, map_location: Any = "cpu", program: bool | None = None
                ) -> nn.Module:
    """Load an exported subnet in eval mode, no supernet needed: a built-in space's subnet is rebuilt from its
    spec and weights (``program=True`` takes the ``torch.export`` program instead); a model of your own is its
    ``torch.export`` program (no model code needed). ``space`` and ``arch`` are set as attributes where known.
    """
    directory = Path(directory)
    spec_path, weights = directory / SPEC_FILE, directory / WEIGHTS_FILE
    if not spec_path.is_file():
        raise FileNotFoundError(f"{str(directory)!r} holds no exported subnet ({SPEC_FILE}).")
    spec = json.loads(spec_path.read_text())
    if spec.get("format") not in (_FORMAT, "optuna-kshot-subnet/1"):
        raise CheckpointError(f"{str(spec_path)!r} is not an optuna-kshot subnet spec.")
    builtin = spec.get("builtin", True)
    if program is None:
        program = not builtin
    if program:
        path = directory / spec.get("program", PROGRAM_FILE)
        if not path.is_file():
            raise FileNotFoundError(f"{str(directory)!r} holds no torch.export program ({PROGRAM_FILE}); it was "
                                    "saved without an example input.")
        try:
            module = torch.export.load(path).module()
        except Exception as e:
            raise CheckpointError(f"{str(path)!r} is not a loadable torch.export program ({type(e).__name__}: "
                                  f"{e}).") from e
        module.arch = spec["arch"]
        return module.to(map_location)
    if not weights.is_file():
        raise FileNotFoundError(f"{str(directory)!r} holds no {WEIGHTS_FILE}.")
    space = space_from_config(spec["space"])
    model = build_subnet(space, spec["arch"])
    try:
        state = torch.load(weights, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{str(weights)!r} is truncated or corrupt ({type(e).__name__}: {e}).") from e
    model.load_state_dict(state)
    model.arch = space.validate(spec["arch"])
    return model.eval()
