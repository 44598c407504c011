"""Your model and data by name, for the command line: ``package.module:function``.

- ``--model pkg.mod:fn``: ``fn()`` returns an ``nn.Module`` with choices, or ``(model, example_input)``;
- ``--data pkg.mod:fn``: ``fn()`` returns :class:`~optuna_kshot.data.DataSplits`, or ``(train, val)`` /
  ``(train, val, test)`` torch datasets of ``(input, label)`` pairs.

The current directory is importable, as for ``python -m``.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__all__ = ["load_object", "model_from_spec", "data_from_spec"]


def load_object(spec: str, what: str) -> Any:
    """The object ``package.module:attribute`` names; ``ValueError`` saying what is wrong otherwise."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr.isidentifier():
        raise ValueError(f"{what} {spec!r} must be 'package.module:function', e.g. 'mypkg.models:make_net'.")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"{what} {spec!r}: cannot import {module_name!r} ({e}).") from e
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"{what} {spec!r}: module {module_name!r} has no {attr!r}.") from None


def model_from_spec(spec: str) -> tuple[Any, Any]:
    """``(model, example_input or None)`` from ``package.module:function``."""
    from torch import nn

    fn = load_object(spec, "--model")
    out = fn() if callable(fn) and not isinstance(fn, nn.Module) else fn
    example = None
    if isinstance(out, tuple) and len(out) == 2:
        out, example = out
    if not isinstance(out, nn.Module):
        raise ValueError(f"--model {spec!r} must give an nn.Module with choices (or (module, example_input)), not "
                         f"{type(out).__name__}.")
    return out, example


def data_from_spec(spec: str) -> Any:
    """:class:`~optuna_kshot.data.DataSplits` from ``package.module:function``."""
    from .data import DataSplits

    fn = load_object(spec, "--data")
    out = fn() if callable(fn) else fn
    if isinstance(out, DataSplits):
        return out
    if isinstance(out, (tuple, list)) and len(out) in (2, 3):
        train, val, *rest = out
        return DataSplits(train, val, rest[0] if rest else val, None, spec)
    raise ValueError(f"--data {spec!r} must give DataSplits or (train, val[, test]) datasets, not "
                     f"{type(out).__name__}.")
