"""Supernet training and search in optuna-dashboard: training curves as plotly figures on the study, a markdown
note, and checkpoints and exported subnets as artifacts (the search report is :mod:`optuna_kshot.report`).

Everything is written through public APIs (``optuna_dashboard.save_plotly_graph_object``, ``save_note``,
``optuna.artifacts.upload_artifact``), so any optuna-dashboard (0.16 or newer) shows it: start one with
``optuna-kshot dashboard --storage URL --artifacts DIR``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "FIGURE_IDS", "TRAINING_ATTR", "training_figures", "training_note", "save_training", "training_callback",
    "upload_artifacts", "save_retraining",
]

_logger = logging.getLogger(__name__)

# graph-object ids on the study: fixed, so refreshing a figure each epoch replaces it instead of adding one
FIGURE_IDS = {
    "training": "supernet-training",
    "code": "supernet-kshot-code",
    "groups": "supernet-group-losses",
    "ranking": "supernet-ranking-stability",
    "retraining": "retraining",
}
# study user attribute with a summary of the training shown on the study (epochs, images, last loss, ...)
TRAINING_ATTR = "supernet_training"

_LAYOUT = {  # the "none" template keeps each figure's JSON (stored in 2 KB study attributes) small
    "template": "none", "height": 430, "margin": {"l": 60, "r": 60, "t": 60, "b": 50},
    "legend": {"orientation": "h", "y": -0.18}, "hovermode": "x unified",
}
_AXIS = {"showgrid": True, "gridcolor": "#e8e8e8", "zeroline": False}


def _records(history: Iterable[Any]) -> list[dict[str, Any]]:
    """Epoch records (``EpochRecord`` or its ``asdict`` form, as stored in checkpoints) as plain dicts."""
    records = []
    for r in history:
        r = asdict(r) if is_dataclass(r) and not isinstance(r, type) else dict(r)
        missing = {"epoch", "step", "images", "loss", "accuracy", "seconds"} - set(r)
        if missing:
            raise ValueError(f"A training record needs {sorted(missing)}, but got the keys {sorted(r)}.")
        r["extra"] = dict(r.get("extra") or {})
        records.append(r)
    return records


def _round(values: Iterable[float]) -> list[float | None]:
    return [None if v is None or not math.isfinite(v) else float(f"{v:.6g}") for v in values]


def training_figures(history: Sequence[Any]) -> dict[str, go.Figure]:
    """Plotly figures of a supernet's training history, keyed by their graph-object id (see ``FIGURE_IDS``).

    Always the training loss and accuracy per epoch; the K-shot code entropy and spread when the records' ``extra``
    holds ``code_entropy``/``code_spread``; the ranking monitor's Kendall taus when it holds ``probe_tau_...``; the
    per-sub-supernet losses when it holds keys ``loss_group...``.
    """
    records = _records(history)
    extra_keys = sorted({k for r in records for k in r["extra"]})

    def series(key: str) -> list[float | None]:
        return _round(r[key] if key in r else r["extra"].get(key) for r in records)

    figures = {FIGURE_IDS["training"]: _figure(
        "Supernet training: loss and accuracy", records, [("train loss", series("loss"))],
        ("loss (mean over paths)", "train accuracy"), [("train accuracy", series("accuracy"))],
    )}
    if "code_entropy" in extra_keys or "code_spread" in extra_keys:
        figures[FIGURE_IDS["code"]] = _figure(
            "K-shot code entropy and spread", records, [("code entropy", series("code_entropy"))],
            ("code entropy (nats)", "code spread (std over archs)"), [("code spread", series("code_spread"))],
        )
    probes = [k for k in ("probe_tau_prev", "probe_tau_macs", "probe_tau_params", "probe_tau_enn") if k in extra_keys]
    if probes:
        names = {"probe_tau_prev": "vs previous check (stability)", "probe_tau_macs": "vs MACs",
                 "probe_tau_params": "vs params", "probe_tau_enn": "vs ENN"}
        figures[FIGURE_IDS["ranking"]] = _figure(
            "Probe-arch ranking: Kendall tau", records, [(names[k], series(k)) for k in probes],
            ("Kendall tau", None),
        )
    groups = [k for k in extra_keys if k.startswith("loss_group")]
    if groups:
        figures[FIGURE_IDS["groups"]] = _figure(
            "Sub-supernet training losses", records,
            [(k[len("loss_"):].replace("_", " "), series(k)) for k in groups], ("loss", None),
        )
    return figures


def _figure(title: str, records: list[dict[str, Any]], left: list[tuple[str, list[float | None]]],
            ytitles: tuple[str, str | None], right: Sequence[tuple[str, list[float | None]]] = ()) -> go.Figure:
    """Lines per epoch: ``left`` on the y axis, ``right`` on a second y axis."""
    import plotly.graph_objects as go

    epochs = [r["epoch"] + 1 for r in records]
    fig = go.Figure(layout={**_LAYOUT, "title": {"text": title, "x": 0.02, "xanchor": "left"},  # modebar: right
                            "xaxis": {**_AXIS, "title": {"text": "epoch"}, "rangemode": "tozero"},
                            "yaxis": {**_AXIS, "title": {"text": ytitles[0]}}})
    for (name, values), axis in [*((t, "y") for t in left), *((t, "y2") for t in right)]:
        fig.add_trace(go.Scatter(x=epochs, y=values, name=name, mode="lines+markers", yaxis=axis))
    if right:
        fig.update_layout(yaxis2={"title": {"text": ytitles[1]}, "overlaying": "y", "side": "right",
                                  "showgrid": False, "zeroline": False})
    return fig


def _placeholder(title: str) -> go.Figure:
    """What replaces a figure the current supernet does not record (e.g. K-shot curves after a one-shot run)."""
    import plotly.graph_objects as go

    return go.Figure(layout={**_LAYOUT, "title": {"text": f"{title}: not recorded by the current supernet",
                                                  "x": 0.02, "xanchor": "left"}})


def _training_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    if not records:
        return {"epochs": 0}
    last = records[-1]
    summary = {"epochs": len(records), "steps": last.get("step"), "images": last.get("images"),
               "seconds": last.get("seconds"), "last_loss": _round([last["loss"]])[0],
               "last_accuracy": _round([last["accuracy"]])[0]}
    for k in ("code_entropy", "code_spread"):
        if k in last["extra"]:
            summary[f"last_{k}"] = _round([last["extra"][k]])[0]
    return summary


def _value(v: Any) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    if isinstance(v, (dict, list, tuple)):
        return f"`{json.dumps(v, default=str)}`"
    return f"`{v}`" if v is not None else "-"


def training_note(
    config: Mapping[str, Any], history: Sequence[Any], *, study: optuna.Study | None = None,
    truth: Mapping[str, float] | None = None, remarks: Sequence[str] | None = None,
) -> str:
    """The study's markdown note: the supernet's configuration (``space``, ``supernet`` kind and options,
    training ``config``, ``data`` and any other keys of a checkpoint's metadata), a training summary and, given a
    ``study`` with finished trials, a search summary (:func:`search_summary`, with ``truth`` if given)."""
    records = _records(history)
    config = dict(config)
    lines = ["# Supernet", ""]
    supernet = config.pop("supernet", None) or {}
    space = config.pop("space", None) or {}
    train = config.pop("config", None) or {}
    rows = [("kind", supernet.get("kind")), ("options", supernet.get("options") or {}),
            ("space", space.get("kind")), *((f"space.{k}", v) for k, v in space.items() if k != "kind"),
            *config.items(), *((f"training.{k}", v) for k, v in train.items())]
    lines += ["| setting | value |", "| --- | --- |", *(f"| {k} | {_value(v)} |" for k, v in rows), ""]
    summary = _training_summary(records)
    lines += ["## Training", ""]
    if records:
        lines.append(
            f"{summary['epochs']} epochs, {summary['steps']:,} steps, {summary['images']:,} images seen, "
            f"{summary['seconds']:.1f} s. Last epoch: loss {summary['last_loss']:.4f}, "
            f"train accuracy {summary['last_accuracy']:.4f}"
            + (f", code entropy {summary['last_code_entropy']:.3f}, spread {summary['last_code_spread']:.3g}"
               if "last_code_entropy" in summary and "last_code_spread" in summary else "") + "."
        )
        lines.append("The curves are the figures on the study's page.")
        lines += _readiness(records, remarks)
    else:
        lines.append("Not trained yet.")
    if study is not None:
        from .report import search_markdown, search_summary

        search = search_summary(study, truth=truth)
        if search["complete"]:
            lines += ["", "## Search and ranking quality", "", search_markdown(search)]
    return "\n".join(lines) + "\n"


def _readiness(records: list[dict[str, Any]], remarks: Sequence[str] | None = None) -> list[str]:
    """The ranking monitor's last taus and its verdict (``remarks``, if given, else computed from the taus), for
    the note (nothing without a monitor)."""
    from .monitor import verdict

    checks = [r for r in records if "probe_tau_macs" in r["extra"] or "probe_tau_prev" in r["extra"]]
    if not checks:
        return [""] + [f"- **Warning:** {w}" for w in remarks or []]
    last = checks[-1]["extra"]
    taus = ", ".join(f"{label} {last[k]:.2f}" for k, label in (
        ("probe_tau_prev", "vs the previous check"), ("probe_tau_macs", "vs MACs"), ("probe_tau_params", "vs params"),
        ("probe_tau_enn", "vs ENN")) if k in last)
    history = [{"tau_prev": r["extra"].get("probe_tau_prev"),
                "tau_free": {k[len("probe_tau_"):]: v for k, v in r["extra"].items()
                             if k.startswith("probe_tau_") and k != "probe_tau_prev"}} for r in checks]
    lines = ["", "## Ranking readiness", "", f"Probe-arch ranking at epoch {checks[-1]['epoch'] + 1} "
             f"(Kendall tau): {taus}."]
    warnings = list(remarks) if remarks is not None else verdict(history)
    lines += [f"- **Warning:** {w}" for w in warnings] or ["- Stable, and not just MACs."]
    return lines


def save_training(
    study: optuna.Study, history: Sequence[Any], *, config: Mapping[str, Any],
    truth: Mapping[str, float] | None = None, remarks: Sequence[str] | None = None,
) -> None:
    """Put a training history on ``study``: its figures (replacing earlier ones with the same ids), the note
    (:func:`training_note`, which summarises the search too once the study has trials) and the user attribute
    ``supernet_training`` (a summary). Cheap (a few storage writes), so it can run after every epoch."""
    from optuna_dashboard import save_note, save_plotly_graph_object

    records = _records(history)
    figures = training_figures(records)
    earlier = study.user_attrs.get(TRAINING_ATTR, {}).get("figures", [])
    titles = {FIGURE_IDS["code"]: "K-shot code entropy and spread", FIGURE_IDS["groups"]: "Sub-supernet losses",
              FIGURE_IDS["ranking"]: "Probe-arch ranking"}
    for graph_id in earlier:
        if graph_id not in figures:  # figures cannot be deleted; blank the ones of a previous supernet
            figures[graph_id] = _placeholder(titles.get(graph_id, graph_id))
    for graph_id, fig in figures.items():
        save_plotly_graph_object(study, fig, graph_object_id=graph_id)
    if remarks is None:
        remarks = study.user_attrs.get("supernet_verdict")
    else:
        study.set_user_attr("supernet_verdict", list(remarks))
    save_note(study, training_note(config, records, study=study, truth=truth, remarks=remarks))
    summary = _training_summary(records)
    summary["figures"] = sorted(figures)
    study.set_user_attr(TRAINING_ATTR, summary)


def save_retraining(study: optuna.Study, curves: Mapping[str, Sequence[Any]]) -> None:
    """Put the retraining curves (train loss and accuracy per epoch of each retrained arch: the chosen one and the
    reference) on ``study`` as a figure."""
    from optuna_dashboard import save_plotly_graph_object

    if not curves:
        return
    longest = max(curves.values(), key=len)
    records = _records(longest)
    left, right = [], []
    for label, history in curves.items():
        rs = _records(history)
        left.append((f"{label}: train loss", _round(r["loss"] for r in rs)))
        right.append((f"{label}: train accuracy", _round(r["accuracy"] for r in rs)))
    fig = _figure("Retraining the chosen and the reference arch", records, left, ("train loss", "train accuracy"),
                  right)
    save_plotly_graph_object(study, fig, graph_object_id=FIGURE_IDS["retraining"])


def training_callback(
    study: optuna.Study, *, config: Mapping[str, Any], history: Sequence[Any] = ()
) -> Callable[[Any, Any], None]:
    """A ``train_supernet`` callback that refreshes the study's training figures and note after every epoch.
    ``history`` holds the epochs trained before (when resuming), so the curves start at epoch 1."""
    records = {r["epoch"]: r for r in _records(history)}

    def callback(record: Any, model: Any) -> None:
        (r,) = _records([record])
        records[r["epoch"]] = r
        save_training(study, [records[e] for e in sorted(records)], config=config)

    return callback


def upload_artifacts(
    study_or_trial: optuna.Study | optuna.Trial | FrozenTrial, paths: Iterable[str | os.PathLike[str]],
    artifact_dir: str | os.PathLike[str], *, storage: optuna.storages.BaseStorage | None = None,
    prefix: str = "", skip_existing: bool = False,
) -> list[str]:
    """Upload files to a file-system artifact store in ``artifact_dir`` (created if missing), attached to a study
    or a running trial (a ``FrozenTrial`` needs its ``storage``; Optuna refuses finished trials); returns the
    artifact ids. Each artifact is named ``prefix`` + the file's name. With ``skip_existing``, a name already
    among the study's or trial's artifacts is not uploaded again."""
    import shutil
    import tempfile

    from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact

    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"Cannot upload {missing} as artifacts: no such file.")
    os.makedirs(artifact_dir, exist_ok=True)
    store = FileSystemArtifactStore(artifact_dir)
    existing = set()
    if skip_existing:
        existing = {m.filename for m in get_all_artifact_meta(study_or_trial, storage=storage)}
    ids = []
    for path in paths:
        name = prefix + path.name
        if name in existing:
            continue
        with tempfile.TemporaryDirectory(dir=artifact_dir) as tmp:
            if prefix:  # upload_artifact names an artifact after its file
                path = Path(shutil.copyfile(path, Path(tmp) / name))
            ids.append(upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study_or_trial,
                                       storage=storage))
        _logger.info("Uploaded %s as artifact %s.", name, ids[-1])
    return ids


# ------------------------------------------------------------------------------------------------ search report
