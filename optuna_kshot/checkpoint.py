"""Checkpoints: written atomically, refused with a clear error when truncated, foreign or of another space.

A checkpoint holds tensors and plain data only (dicts, lists, str, numbers, bools, None), and is read with
``torch.load(weights_only=True)``: a file that carries pickled Python objects (which could run code when
unpickled, e.g. one taken from a shared drive or downloaded from the dashboard's artifacts) is refused without
being executed."""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "FORMAT"]

FORMAT = "optuna-kshot/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here (truncated, not ours, or of another space/config)."""


def save_checkpoint(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> None:
    """Write ``payload`` (plus the format tag) to ``path`` via a temporary file and an atomic rename,
    so a crash never leaves a half-written checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(
    path: str | os.PathLike[str], *, space_config: Mapping[str, Any] | None = None, map_location: Any = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Args:
        space_config: if given, the checkpoint must be of this space (``space.to_config()``).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is truncated or corrupt, not an optuna-kshot checkpoint, or of another space.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {str(path)!r}.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        globals_ = [line.strip() for line in str(e).splitlines() if "GLOBAL" in line]
        if not globals_:
            raise CheckpointError(f"Checkpoint {str(path)!r} is truncated or corrupt (not a torch file of tensors and "
                                  "plain data).") from None
        raise CheckpointError(
            f"Checkpoint {str(path)!r} was refused: it holds pickled Python objects, not only tensors and plain data, "
            f"so loading it could run code ({globals_[0]}). optuna-kshot checkpoints never hold such objects."
        ) from None
    except Exception as e:  # torch raises several types for truncated or corrupt zip files
        raise CheckpointError(f"Checkpoint {str(path)!r} is truncated or corrupt ({type(e).__name__}: {e}).") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not an optuna-kshot checkpoint (format {FORMAT!r}).")
    if space_config is not None and dict(payload.get("space", {})) != dict(space_config):
        raise CheckpointError(
            f"Checkpoint {str(path)!r} was trained on the space {payload.get('space')!r}, "
            f"not on {dict(space_config)!r}; train a supernet for this space or load it with its own space."
        )
    return payload
