"""optuna_kshot.dashboard and the CLI's dashboard side; last, a real optuna-dashboard rendered in headless Chromium.

The browser tests are skipped only when Chromium is missing outside CI (``$CI`` set: they fail instead).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from html.parser import HTMLParser

import optuna
import pytest
from optuna_dashboard import get_note

from optuna_kshot.cli import main
from optuna_kshot.dashboard import (
    FIGURE_IDS,
    TRAINING_ATTR,
    save_training,
    training_callback,
    training_figures,
    upload_artifacts,
)
from optuna_kshot.training import EpochRecord

from .helpers import new_study

CONFIG = {"space": {"kind": "macro", "width_mult": 0.0625}, "supernet": {"kind": "kshot", "options": {"k": 2}},
          "data": "tiny", "config": {"epochs": 3, "lr": 0.1}}


def _history(n, **extra):
    return [EpochRecord(epoch=e, step=10 * (e + 1), images=640 * (e + 1), loss=2.3 - 0.1 * e, accuracy=0.1 + 0.05 * e,
                        lr=0.1, seconds=1.5 * (e + 1), extra={k: v - 0.01 * e for k, v in extra.items()})
            for e in range(n)]


def _graph_objects(study_name, url):
    """The plotly figures saved on a study, read from the storage as optuna-dashboard reads them."""
    storage = optuna.storages.get_storage(url)
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(study_name))
    chunks = {}
    for key, value in attrs.items():
        if key.startswith("dashboard:plot_data:"):
            graph_id, index = key[len("dashboard:plot_data:"):].rsplit(":", 1)
            chunks.setdefault(graph_id, {})[int(index)] = value
    return {g: json.loads("".join(c[i] for i in sorted(c))) for g, c in chunks.items()}


# ------------------------------------------------------------------------------------------------ figures
def test_training_figures_follow_the_records():
    figures = training_figures(_history(3))
    assert list(figures) == [FIGURE_IDS["training"]]
    fig = figures[FIGURE_IDS["training"]]
    assert fig.layout.title.text == "Supernet training: loss and accuracy"
    loss, acc = fig.data
    assert list(loss.x) == [1, 2, 3] and list(loss.y) == pytest.approx([2.3, 2.2, 2.1])
    assert list(acc.y) == pytest.approx([0.1, 0.15, 0.2]) and acc.yaxis == "y2"

    kshot = training_figures(_history(2, code_entropy=0.69, code_spread=0.05))
    assert set(kshot) == {FIGURE_IDS["training"], FIGURE_IDS["code"]}
    assert [t.name for t in kshot[FIGURE_IDS["code"]].data] == ["code entropy", "code spread"]

    fewshot = training_figures([r.__dict__ for r in _history(2, loss_group0=2.0, loss_group1=2.2)])  # dict form
    groups = fewshot[FIGURE_IDS["groups"]]
    assert [t.name for t in groups.data] == ["group0", "group1"]
    assert list(groups.data[1].y) == pytest.approx([2.2, 2.19])


def test_training_figures_refuse_foreign_records():
    with pytest.raises(ValueError, match="needs"):
        training_figures([{"epoch": 0, "loss": 1.0}])


def test_save_training_replaces_figures_and_note(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = new_study(tmp_path)
    save_training(study, _history(1, code_entropy=0.6, code_spread=0.1), config=CONFIG)
    save_training(study, _history(3, code_entropy=0.6, code_spread=0.1), config=CONFIG)
    figures = _graph_objects("s", url)
    assert set(figures) == {FIGURE_IDS["training"], FIGURE_IDS["code"]}  # replaced by id, not added
    assert figures[FIGURE_IDS["training"]]["data"][0]["x"] == [1, 2, 3]
    note = get_note(study)
    assert "| kind | `kshot` |" in note and "3 epochs, 30 steps, 1,920 images seen" in note
    assert study.user_attrs[TRAINING_ATTR]["epochs"] == 3

    # a one-shot supernet trained into the same study blanks the K-shot figure (figures cannot be deleted)
    save_training(study, _history(2), config={**CONFIG, "supernet": {"kind": "oneshot", "options": {}}})
    figures = _graph_objects("s", url)
    assert "not recorded" in figures[FIGURE_IDS["code"]]["layout"]["title"]["text"]
    assert figures[FIGURE_IDS["training"]]["data"][0]["x"] == [1, 2]


def test_training_callback_keeps_the_resumed_epochs(tmp_path):
    study = new_study(tmp_path)
    history = _history(4)
    callback = training_callback(study, config=CONFIG, history=[r.__dict__ for r in history[:2]])
    for record in history[2:]:
        callback(record, None)
    fig = _graph_objects("s", f"sqlite:///{tmp_path / 'study.db'}")[FIGURE_IDS["training"]]
    assert fig["data"][0]["x"] == [1, 2, 3, 4]


# ------------------------------------------------------------------------------------------------ artifacts
def test_upload_artifacts(tmp_path):
    study = new_study(tmp_path)
    (tmp_path / "subnet.pt").write_bytes(b"weights")
    store = tmp_path / "artifacts"
    (first,) = upload_artifacts(study, [tmp_path / "subnet.pt"], store)
    assert upload_artifacts(study, [tmp_path / "subnet.pt"], store, skip_existing=True) == []
    (second,) = upload_artifacts(study, [tmp_path / "subnet.pt"], store, prefix="trial3_")
    metas = {m.artifact_id: m.filename for m in optuna.artifacts.get_all_artifact_meta(study)}
    assert metas == {first: "subnet.pt", second: "trial3_subnet.pt"}
    optuna.artifacts.download_artifact(artifact_store=optuna.artifacts.FileSystemArtifactStore(store),
                                       artifact_id=second, file_path=str(tmp_path / "back.pt"))
    assert (tmp_path / "back.pt").read_bytes() == b"weights"
    assert sorted(p.name for p in store.iterdir()) == sorted([first, second])  # no leftovers
    with pytest.raises(FileNotFoundError, match="no such file"):
        upload_artifacts(study, [tmp_path / "missing.pt"], store)


# ------------------------------------------------------------------------------------------------ CLI
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--port", "0"], "--port must be in 1..65535"),
        (["--artifacts", "/nonexistent/dir"], "is not a directory"),
        (["--storage", "postgresql+nodriver://x"], "Cannot use the storage"),
    ],
)
def test_dashboard_command_misuse_exits_2(tmp_path, capsys, extra, message):
    argv = ["dashboard", "--storage", f"sqlite:///{tmp_path / 'study.db'}", "--port", str(_free_port()), *extra]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert "optuna-dashboard on http" not in captured.out  # no announcement of a server that will not run


def test_dashboard_command_busy_port_exits_2(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["dashboard", "--storage", f"sqlite:///{tmp_path / 'study.db'}", "--port", str(port)]) == 2
    assert "Cannot listen on 127.0.0.1" in capsys.readouterr().err


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A real run through the CLI: K-shot training shown on the study, a search with a MACs budget, an export,
    and a second study searched from the same checkpoint; everything with artifacts."""
    root = tmp_path_factory.mktemp("cli")
    url = f"sqlite:///{root / 'study.db'}"
    art = root / "artifacts"
    ckpt = ["--checkpoint", str(root / "supernet.pt")]
    common = ["--storage", url, "--study-name", "s", "--quiet", "--artifacts", str(art)]
    assert main(["train", "--space", "macro", "--width-mult", "0.0625", "--budget-images", "1024", "--supernet",
                 "kshot", "--k", "2", *ckpt, *common]) == 0
    assert main(["search", *common, *ckpt, "--calib-batches", "1", "--trials", "6", "--max-macs", "4e5"]) == 0
    assert main(["export", *common, *ckpt, "--calib-batches", "1", "--out", str(root / "subnet")]) == 0
    assert main(["search", "--storage", url, "--study-name", "later", "--quiet", *ckpt, "--calib-batches", "1",
                 "--trials", "2"]) == 0
    study = optuna.load_study(study_name="s", storage=url)
    return {"root": root, "url": url, "artifacts": art, "study": study}


@pytest.mark.slow
def test_cli_puts_training_search_and_artifacts_on_the_study(searched):
    study, url, root = searched["study"], searched["url"], searched["root"]
    assert set(_graph_objects("s", url)) == {FIGURE_IDS["training"], FIGURE_IDS["code"], FIGURE_IDS["ranking"]}
    assert set(_graph_objects("later", url)) == {  # from the checkpoint
        FIGURE_IDS["training"], FIGURE_IDS["code"], FIGURE_IDS["ranking"]}
    note = get_note(study)
    assert "| kind | `kshot` |" in note and "## Search and ranking quality" in note and "6 complete trials" in note
    names = sorted(m.filename for m in optuna.artifacts.get_all_artifact_meta(study))
    exported = json.loads((root / "subnet" / "subnet.json").read_text())["trial"]
    assert names == sorted(["supernet.pt", "pareto.png", "trials.csv", "summary.md", f"trial{exported}_subnet.pt",
                            f"trial{exported}_subnet.json"])
    assert study.user_attrs["exported"].keys() == {str(exported)}
    report = root / "reports" / "s"
    assert {p.name for p in report.iterdir()} >= {"pareto.png", "pareto.html", "trials.csv", "summary.md"}
    for t in study.trials:  # what the trial list shows; Optuna 5 constraints as user attributes too
        assert {"MACs", "FLOPs", "params", "arch_key", "supernet_kind", "kshot_code", "eval_seconds",
                "constraint_MACs", "feasible"} <= t.user_attrs.keys()


# ------------------------------------------------------------------------------------------------ browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000"]


class _Text(HTMLParser):
    """The visible text of a DOM dump (no style or script), as one string of ' | '-joined text nodes."""

    def __init__(self):
        super().__init__()
        self.parts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("style", "script")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "script")

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.parts.append(data.strip())


def _chromium(args, tmp_path):
    with tempfile.TemporaryDirectory(dir=tmp_path) as profile:
        return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120)


def render(url, tmp_path, expected=()):
    """The DOM of ``url`` after the dashboard's scripts ran (virtual time: fetches finish first) and its text;
    one retry if some ``expected`` string is missing (a slow first paint on a busy machine)."""
    for _ in range(2):
        dom = _chromium(["--virtual-time-budget=15000", "--dump-dom", url], tmp_path).stdout
        parser = _Text()
        parser.feed(dom)
        text = " | ".join(parser.parts)
        if all(e in text or e in dom for e in expected):
            break
    return dom, text


@pytest.fixture(scope="module")
def dashboard(searched, tmp_path_factory):
    """`optuna-kshot dashboard` on the searched storage, in a subprocess on a free port."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Chromium for the dashboard test: apt-get install chromium chromium-driver")
        pytest.skip("Chromium is not installed (apt-get install chromium); the dashboard is not rendered")
    port = _free_port()
    log = tmp_path_factory.mktemp("dashboard") / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "optuna_kshot.cli", "dashboard", "--storage", searched["url"],
                                 "--artifacts", str(searched["artifacts"]), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as r:
                    studies = json.load(r)["study_summaries"]
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"optuna-kshot dashboard did not start: {log.read_text()[-2000:]}")
                time.sleep(0.3)
        ids = {s["study_name"]: s["study_id"] for s in studies}
        yield {"base": base, "id": ids["s"], "later": ids["later"], **searched}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_browser_study_page_shows_training_figures_and_artifacts(dashboard, tmp_path):
    page = f"{dashboard['base']}/dashboard/studies/{dashboard['id']}"
    titles = ["Supernet training: loss and accuracy", "K-shot code entropy and spread"]
    dom, text = render(page, tmp_path, expected=titles)
    for graph_id, title in zip((FIGURE_IDS["training"], FIGURE_IDS["code"]), titles):
        start = dom.find(f'id="user-defined-plot:{graph_id}"')
        assert start >= 0, f"figure {graph_id} is not on the study page"
        plot = dom[start:start + 20000]
        assert title in plot and 'class="main-svg"' in plot and 'class="scatterlayer' in plot  # drawn by plotly
    assert "loss (mean over paths)" in text and "train accuracy" in text  # axis and legend of the figure
    assert "Pareto Front" in text and "Study Artifacts" in text
    exported = json.loads((dashboard["root"] / "subnet" / "subnet.json").read_text())["trial"]
    for name in ("supernet.pt", "pareto.png", f"trial{exported}_subnet.pt"):
        assert name in text, f"artifact {name} is not listed"

    # a study searched from an existing checkpoint shows the training too
    _, later = render(f"{dashboard['base']}/dashboard/studies/{dashboard['later']}", tmp_path, expected=titles)
    assert all(t in later for t in titles)

    shot = tmp_path / "study.png"
    _chromium([f"--screenshot={shot}", "--virtual-time-budget=15000", page], tmp_path)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


@pytest.mark.slow
def test_browser_trial_list_shows_user_attributes(dashboard, tmp_path):
    study = dashboard["study"]
    trial = study.best_trials[0]
    attrs = trial.user_attrs
    expected = [f"arch_key {attrs['arch_key']}", f"MACs {attrs['MACs']}", f"params {attrs['params']}",
                "supernet_kind kshot", "kshot_code", "eval_seconds", f"constraint_MACs {attrs['constraint_MACs']}",
                f"feasible {attrs['feasible']}"]
    url = f"{dashboard['base']}/dashboard/studies/{dashboard['id']}/trials?numbers={trial.number}"
    _, text = render(url, tmp_path, expected=expected)
    assert f"{len(study.trials)} Trials" in text and f"Trial {trial.number}" in text
    assert "User Attributes" in text
    missing = [e for e in expected if e not in text]
    assert not missing, f"the trial list does not show {missing}"


@pytest.mark.slow
def test_browser_note_shows_config_and_summaries(dashboard, tmp_path):
    expected = ["Supernet", "kshot", "space.width_mult", "Training", "Search and ranking quality",
                "6 complete trials"]
    _, text = render(f"{dashboard['base']}/dashboard/studies/{dashboard['id']}/note", tmp_path, expected=expected)
    assert all(e in text for e in expected), text[:2000]
