"""Helpers shared by several test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import optuna

from optuna_kshot import layerwise_space, macro_space, nb201_space


def tiny_spaces(widths: tuple[float, ...] = (0.5, 1.0)) -> list:
    """One tiny space of each built-in kind (layer-wise with width choices), 16 px."""
    return [
        layerwise_space(width_mult=0.25, widths=widths, resolution=16, in_channels=1),
        macro_space(width_mult=0.125, resolution=16),
        nb201_space(channels=4, cells_per_stage=1, resolution=16),
    ]


def new_study(tmp_path, name="s", directions=("maximize", "minimize")) -> optuna.Study:
    """A study in a SQLite file under ``tmp_path`` (loaded if it exists)."""
    return optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name=name,
                               directions=list(directions), load_if_exists=True)
