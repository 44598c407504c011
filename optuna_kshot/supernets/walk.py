"""Walking a supernet's module tree: cutting out an arch's plain subnet, and reading effective tensors.

Exporting is a walk (as in Once-for-All): an :class:`~optuna_kshot.choices.OpChoice` is replaced by its chosen
candidate, a module with ``to_static(arch)`` (an elastic module, e.g. a width-sliced MBConv) cuts out its own
static version, a SCARLET stabilizer becomes the identity when deploying, and any other module is copied with
its *effective* parameters: for a K-shot supernet those are the merged weights, read through the parametrisation
while the arch's code is in context. Only the chosen path is copied; the supernet is never modified.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..choices import OpChoice
from .stabilizer import Stabilizer

__all__ = ["export_path", "effective_tensors"]


def _plain_copy(module: nn.Module, arch: Mapping[str, Any], deploy: bool, share: bool) -> nn.Module:
    cls = parametrize.type_before_parametrizations(module)
    out = cls.__new__(cls)
    state = dict(module.__dict__)
    params: dict[str, nn.Parameter | None] = {}
    for name, p in module._parameters.items():
        if p is None:
            params[name] = None
            continue
        value = p.detach() if share else p.detach().clone()
        params[name] = nn.Parameter(value, requires_grad=p.requires_grad and not share)
    if parametrize.is_parametrized(module):
        for name in module.parametrizations:
            value = getattr(module, name).detach()  # merged: a new tensor already
            params[name] = nn.Parameter(value if share else value.clone(), requires_grad=not share)
    state["_parameters"] = params
    state["_buffers"] = {n: None if b is None else b.detach().clone() for n, b in module._buffers.items()}
    state["_modules"] = {n: export_path(c, arch, deploy=deploy, share_weights=share) if c is not None else None
                         for n, c in module._modules.items() if n != "parametrizations"}
    for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_state_dict_hooks",
                  "_load_state_dict_pre_hooks"):
        if hooks in state:
            state[hooks] = type(state[hooks])(state[hooks])
    if "_non_persistent_buffers_set" in state:
        state["_non_persistent_buffers_set"] = set(state["_non_persistent_buffers_set"])
    out.__dict__.update(state)
    return out


def export_path(module: nn.Module, arch: Mapping[str, Any], *, deploy: bool = False,
                share_weights: bool = False) -> nn.Module:
    """The plain module that computes what ``module`` computes for ``arch`` (call inside the arch's context;
    K-shot: inside its code's context too). ``deploy`` turns stabilizers into identities. ``share_weights``: the
    parameters alias the supernet's (frozen; for read-only use such as scoring) instead of being copied; buffers
    (BN statistics, which calibration rewrites) are always copies."""
    if isinstance(module, OpChoice):
        return export_path(module[str(arch[module.choice_name])], arch, deploy=deploy, share_weights=share_weights)
    if isinstance(module, Stabilizer):
        if deploy:
            return nn.Identity()
        return _plain_copy(module, arch, deploy, share_weights)
    to_static = getattr(module, "to_static", None)
    if callable(to_static):
        return to_static(arch)
    return _plain_copy(module, arch, deploy, share_weights)


def effective_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """``state_dict``-style names -> the tensors a forward uses (merged K-shot weights included; call inside the
    code's context), without the parametrisation containers."""
    out: dict[str, torch.Tensor] = {}

    def walk(m: nn.Module, prefix: str) -> None:
        for name, p in m._parameters.items():
            if p is not None:
                out[prefix + name] = p
        if parametrize.is_parametrized(m):
            for name in m.parametrizations:
                out[prefix + name] = getattr(m, name)
        for name, b in m._buffers.items():
            if b is not None and name not in m._non_persistent_buffers_set:
                out[prefix + name] = b
        for name, child in m._modules.items():
            if child is not None and name != "parametrizations":
                walk(child, f"{prefix}{name}.")

    walk(module, "")
    return out
