"""What scoring an arch gives (no torch here: ground-truth tables use it too)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Score"]


@dataclass(frozen=True)
class Score:
    """What scoring an arch gives."""

    accuracy: float
    loss: float | None
    seconds: float
    key: str
    extra: Mapping[str, Any]
