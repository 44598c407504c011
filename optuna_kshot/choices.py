"""Marking choices inside your own ``nn.Module``: the search space is discovered from the module tree.

- :class:`OpChoice` holds candidate modules and runs the one the current arch picks;
- :class:`ValueChoice` is a named value (e.g. a width) that an elastic module of yours reads in its ``forward``;
- :class:`Skip` (identity) and :class:`Zero` (no connection) are candidates with a meaning: SCARLET's stabilizer
  replaces ``Skip`` candidates, and ``Zero`` contributes nothing.

The arch is never stored on a module: :func:`use_arch` puts it in a :class:`contextvars.ContextVar` for the
duration of one call, so the same module can run different archs in several threads at once, and your
``forward`` keeps its own signature. Two choices with the same name are one decision (their options must match).

Example:
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.stem = nn.Conv2d(1, 8, 3, padding=1)
    ...         self.block = OpChoice("block", {"conv3": nn.Conv2d(8, 8, 3, padding=1),
    ...                                         "conv5": nn.Conv2d(8, 8, 5, padding=2), "skip": Skip()})
    ...         self.head = nn.Linear(8, 10)
    ...     def forward(self, x):
    ...         return self.head(self.block(self.stem(x)).mean((2, 3)))
    >>> discover_space(Net()).names
    ('block',)
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .searchspace import Choice, SearchSpace

__all__ = ["OpChoice", "ValueChoice", "Skip", "Zero", "use_arch", "current_arch", "chosen", "discover_space",
           "choice_modules", "covering_archs", "probe_forwards"]

_ARCH: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar("optuna_kshot_arch", default=None)


@contextlib.contextmanager
def use_arch(arch: Mapping[str, Any]) -> Iterator[None]:
    """Run the choices of any module called inside the block with ``arch`` (this thread/context only)."""
    token = _ARCH.set(arch)
    try:
        yield
    finally:
        _ARCH.reset(token)


def current_arch() -> Mapping[str, Any] | None:
    """The arch of the enclosing :func:`use_arch` block, or None outside one."""
    return _ARCH.get()


def chosen(name: str) -> Any:
    """The current arch's option of choice ``name``.

    Raises:
        RuntimeError: outside ``supernet(x, arch)`` / :func:`use_arch`.
        KeyError: the arch has no choice of that name.
    """
    arch = _ARCH.get()
    if arch is None:
        raise RuntimeError(
            f"Choice {name!r} ran outside a supernet call: call the supernet as supernet(x, arch), or export the "
            "arch's subnet (supernet.export(arch)) to run it as a plain module."
        )
    try:
        return arch[name]
    except KeyError:
        raise KeyError(f"The arch has no value for choice {name!r}; it holds {sorted(arch)!r}.") from None


class Skip(nn.Identity):
    """The identity as a candidate of an :class:`OpChoice` ("skip this layer"): makes depth variable; SCARLET's
    stabilizer (``stabilizer=True``) replaces it in training and scoring."""


class Zero(nn.Module):
    """"No connection" as a candidate of an :class:`OpChoice` (NAS-Bench-201's ``none``): returns zeros shaped like
    its input, so a sum over edges is unchanged by it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"A {what} name must be a non-empty str, but got {name!r}.")
    return name


class OpChoice(nn.ModuleDict):
    """A choice between candidate modules, used like any module in your ``forward``: it runs the candidate that
    the current arch names (``arch[name]`` is one of the candidates' keys, a str as ``trial.params`` holds it).

    Args:
        name: the choice's name in the search space (and in ``trial.params``).
        candidates: option name -> module, in order (a dict or a sequence of pairs). Option names are str
            without dots.
    """

    def __init__(self, name: str, candidates: Mapping[str, nn.Module] | Sequence[tuple[str, nn.Module]]) -> None:
        items = list(candidates.items() if isinstance(candidates, Mapping) else candidates)
        super().__init__()
        self.choice_name = _check_name(name, "choice")
        if not items:
            raise ValueError(f"OpChoice {name!r} needs at least one candidate, but got none.")
        for key, module in items:
            if not isinstance(key, str) or not key or "." in key:
                raise TypeError(f"OpChoice {name!r}: option names must be non-empty str without dots, but got {key!r}.")
            if not isinstance(module, nn.Module):
                raise TypeError(f"OpChoice {name!r}: candidate {key!r} must be an nn.Module, but got "
                                f"{type(module).__name__}.")
            if key in self._modules:
                raise ValueError(f"OpChoice {name!r}: option {key!r} appears twice.")
            self[key] = module

    @property
    def options(self) -> tuple[str, ...]:
        return tuple(self.keys())

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        option = chosen(self.choice_name)
        try:
            module = self[option]
        except KeyError:
            raise ValueError(f"Choice {self.choice_name!r} has no option {option!r}; its options are "
                             f"{list(self.options)!r}.") from None
        return module(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"name={self.choice_name!r}"


class ValueChoice(nn.Module):
    """A named choice of a plain value (int/float/str/bool), e.g. a width, read by an elastic module of yours as
    ``self.width.value`` inside its ``forward``. An elastic module that reads one implements
    ``to_static(arch) -> nn.Module`` so that exporting an arch can cut out its static version."""

    def __init__(self, name: str, options: Sequence[Any]) -> None:
        super().__init__()
        self.choice_name = _check_name(name, "choice")
        self.options = Choice(name, tuple(options)).options  # validates the option types

    @property
    def value(self) -> Any:
        return chosen(self.choice_name)

    def extra_repr(self) -> str:
        return f"name={self.choice_name!r}, options={list(self.options)!r}"


def choice_modules(model: nn.Module) -> list[tuple[str, OpChoice | ValueChoice]]:
    """``(module path, choice module)`` of every choice in ``model``, in registration order."""
    return [(path, m) for path, m in model.named_modules() if isinstance(m, (OpChoice, ValueChoice))]


def discover_space(model: nn.Module) -> SearchSpace:
    """The search space a model's choices define: one :class:`~optuna_kshot.searchspace.Choice` per distinct name, in
    the order the choices are registered. Choices that share a name are one decision.

    Raises:
        ValueError: the model has no choices, or two choices of one name have different options (or kinds).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"Expected an nn.Module with choices, but got {type(model).__name__}.")
    found: dict[str, tuple[type, tuple[Any, ...], str]] = {}
    for path, module in choice_modules(model):
        options = tuple(module.options)
        seen = found.get(module.choice_name)
        if seen is None:
            found[module.choice_name] = (type(module), options, path)
        elif seen[0] is not type(module) or seen[1] != options:
            raise ValueError(
                f"Choice {module.choice_name!r} is declared twice with different "
                + ("kinds" if seen[0] is not type(module) else "options")
                + f": {seen[0].__name__} {list(seen[1])!r} at {seen[2]!r} and {type(module).__name__} "
                f"{list(options)!r} at {path!r}. Choices sharing a name are one decision and need the same options."
            )
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no choices: mark the searchable parts with optuna_kshot.OpChoice (candidate "
            "modules) or optuna_kshot.ValueChoice (values an elastic module reads)."
        )
    return SearchSpace([Choice(name, options) for name, (_, options, _) in found.items()])



def covering_archs(space: SearchSpace) -> list[dict[str, Any]]:
    """Archs that together pick every option of every choice at least once (options cycled, FairNAS-style)."""
    m = max(len(c.options) for c in space.choices)
    return [{c.name: c.options[i % len(c.options)] for c in space.choices} for i in range(m)]


@torch.no_grad()
def probe_forwards(model: nn.Module, space: SearchSpace, example_input: torch.Tensor) -> None:
    """Run ``model`` in eval mode on ``example_input`` once per :func:`covering_archs` arch (so hooks registered
    by the caller see every option), restoring its train/eval mode after."""
    was_training = model.training
    try:
        model.eval()
        for arch in covering_archs(space):
            with use_arch(arch):
                model(example_input)
    finally:
        model.train(was_training)
