"""Search spaces as plain data: named categorical choices, no torch.

An *arch* is a plain ``dict`` mapping each choice name to one of its options, exactly what
``trial.params`` holds after :meth:`SearchSpace.suggest`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Choice", "SearchSpace", "Arch"]

Arch = dict[str, Any]
_OPTION_TYPES = (bool, int, float, str)


class ValidArch(dict):
    """An arch that :meth:`SearchSpace.validate` checked: a read-only ``dict`` (equal to ``trial.params``) that
    carries its space's token, so that passing it inward is not validated again."""

    __slots__ = ("_token",)

    def __init__(self, items: Any, token: object) -> None:
        super().__init__(items)
        self._token = token

    def _readonly(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("A validated arch is read-only; copy it with dict(arch) to change it.")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]

    def __reduce__(self) -> Any:  # pickles (e.g. to worker processes) as a plain dict
        return (dict, (dict(self),))

    def copy(self) -> dict[str, Any]:  # type: ignore[override]
        return dict(self)


@dataclass(frozen=True)
class Choice:
    """One decision of a search space: a name and its categorical options."""

    name: str
    options: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"A choice name must be a non-empty str, but got {self.name!r}.")
        options = tuple(self.options)
        object.__setattr__(self, "options", options)
        if not options:
            raise ValueError(f"Choice {self.name!r} needs at least one option, but got none.")
        for option in options:
            if not isinstance(option, _OPTION_TYPES):
                raise TypeError(
                    f"Options of choice {self.name!r} must be bool/int/float/str (what Optuna stores), "
                    f"but got {option!r} of type {type(option).__name__}."
                )
        labels = [str(o) for o in options]
        if len(set(labels)) != len(labels):
            raise ValueError(f"Options of choice {self.name!r} must be distinct, but got {options!r}.")

    def index(self, value: Any) -> int:
        """Position of ``value`` among the options; ``ValueError`` naming the allowed ones otherwise."""
        for i, option in enumerate(self.options):
            if type(option) is type(value) and option == value:
                return i
        # Optuna returns ints for int options, but JSON or CLI input may give 2.0 or "2": accept exact matches.
        for i, option in enumerate(self.options):
            if not isinstance(value, bool) and not isinstance(option, bool) and option == value:
                return i
        raise ValueError(
            f"Choice {self.name!r} got {value!r}, which is not one of its options {list(self.options)!r}."
        )


class SearchSpace:
    """A set of named categorical choices.

    Example:
        >>> space = SearchSpace([Choice("op", ("conv3", "conv5")), Choice("depth", (1, 2, 3))])
        >>> space.validate({"op": "conv3", "depth": 2})
        {'op': 'conv3', 'depth': 2}

    Subclasses (the built-in spaces) add the network description their supernets are built from.
    """

    kind = "custom"

    def __init__(self, choices: Sequence[Choice]) -> None:
        choices = tuple(choices)
        for c in choices:
            if not isinstance(c, Choice):
                raise TypeError(f"SearchSpace takes Choice objects, but got {c!r}.")
        names = [c.name for c in choices]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"Choice names must be unique, but {duplicates!r} appear more than once.")
        if not choices:
            raise ValueError("A SearchSpace needs at least one choice.")
        self._choices = choices
        self._by_name = {c.name: c for c in choices}
        self._token = object()  # what archs validated by this space carry

    # ----------------------------------------------------------------------------------------- basics
    @property
    def choices(self) -> tuple[Choice, ...]:
        return self._choices

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self._choices)

    def __getitem__(self, name: str) -> Choice:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"No choice named {name!r}; the choices are {list(self.names)!r}.") from None

    def __len__(self) -> int:
        return len(self._choices)

    def __iter__(self) -> Iterator[Choice]:
        return iter(self._choices)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.to_config() == other.to_config()

    def __hash__(self) -> int:
        return hash(repr(self.to_config()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} choices, {self.size:,} archs)"

    @property
    def size(self) -> int:
        """Number of distinct archs."""
        return math.prod(len(c.options) for c in self._choices)

    # ------------------------------------------------------------------------------------- validation
    def validate(self, arch: Mapping[str, Any]) -> Arch:
        """Check ``arch`` and return it as a new read-only dict in choice order with the options' own values (an
        arch this space validated already is returned as it is: validate at the boundary, pass it inward).

        Raises:
            TypeError: if ``arch`` is not a mapping.
            ValueError: naming a missing, unknown or bad choice and the allowed options.
        """
        if type(arch) is ValidArch and arch._token is self._token:
            return arch
        if not isinstance(arch, Mapping):
            raise TypeError(f"An arch must be a dict of choice name -> option, but got {type(arch).__name__}.")
        unknown = [k for k in arch if k not in self._by_name]
        if unknown:
            raise ValueError(f"Unknown choices {unknown!r}; this space has {list(self.names)!r}.")
        for c in self._choices:
            if c.name in arch:
                c.index(arch[c.name])
        missing = [n for n in self.names if n not in arch]
        if missing:
            raise ValueError(f"The arch misses choices {missing!r}.")
        return ValidArch(((c.name, c.options[c.index(arch[c.name])]) for c in self._choices), self._token)

    # --------------------------------------------------------------------------------------- sampling
    def suggest(self, trial: Any) -> Arch:
        """Suggest an arch from an Optuna trial with ``trial.suggest_categorical`` for every choice (validated)."""
        return self.validate({c.name: trial.suggest_categorical(c.name, list(c.options)) for c in self._choices})

    def sample(self, rng: np.random.Generator | int | None = None) -> Arch:
        """Sample an arch uniformly at random with a seeded generator (or a seed)."""
        rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
        return ValidArch(((c.name, c.options[int(rng.integers(len(c.options)))]) for c in self._choices), self._token)

    def enumerate(self, *, limit: int = 1_000_000) -> Iterator[Arch]:
        """Yield every arch in a fixed order; refuses spaces with more than ``limit`` archs."""
        if self.size > limit:
            raise ValueError(
                f"This space has {self.size:,} archs, more than limit={limit:,}; sample it instead."
            )
        for values in itertools.product(*(c.options for c in self._choices)):
            yield dict(zip(self.names, values))

    # ------------------------------------------------------------------------------------ encodings
    def key(self, arch: Mapping[str, Any]) -> str:
        """Canonical string key of an arch (the cache key, and what trials store as ``arch_key``)."""
        arch = self.validate(arch)
        return ",".join(f"{n}={arch[n]}" for n in self.names)

    def from_key(self, key: str) -> Arch:
        """Inverse of :meth:`key`."""
        if not isinstance(key, str):
            raise TypeError(f"A key must be a str, but got {type(key).__name__}.")
        arch: Arch = {}
        for part in key.split(","):
            name, sep, label = part.partition("=")
            if not sep or name not in self._by_name:
                raise ValueError(f"Malformed key {key!r}: part {part!r} is not 'choice=option'.")
            choice = self._by_name[name]
            matches = [o for o in choice.options if str(o) == label]
            if not matches:
                raise ValueError(f"Key {key!r}: {label!r} is not an option of {name!r} {list(choice.options)!r}.")
            arch[name] = matches[0]
        return self.validate(arch)

    @property
    def encoding_size(self) -> int:
        """Length of :meth:`one_hot`."""
        return sum(len(c.options) for c in self._choices)

    def one_hot(self, arch: Mapping[str, Any]) -> np.ndarray:
        """One-hot encoding of an arch: one block per choice, concatenated (float32)."""
        arch = self.validate(arch)
        out = np.zeros(self.encoding_size, dtype=np.float32)
        offset = 0
        for c in self._choices:
            out[offset + c.index(arch[c.name])] = 1.0
            offset += len(c.options)
        return out

    # ---------------------------------------------------------------------------------- persistence
    def to_config(self) -> dict[str, Any]:
        """Plain-data description from which :func:`optuna_kshot.spaces.space_from_config` rebuilds it."""
        return {"kind": "custom", "choices": [[c.name, list(c.options)] for c in self._choices]}
