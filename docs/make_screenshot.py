"""Make docs/dashboard.png: a real K-shot training and search through the CLI, shown by `optuna-kshot dashboard`
and photographed by headless Chromium (Debian: apt-get install chromium).

    python3 docs/make_screenshot.py            # a few minutes on 2 CPU cores
    python3 docs/make_screenshot.py --smoke    # tiny settings, seconds

The full study page is photographed; the header with the Pareto front and the supernet's training figures are
kept (``--bands``) and reduced to a 256-colour palette, so that the PNG stays small (< 300 KB).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from optuna_kshot.cli import main as cli

HERE = Path(__file__).resolve().parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_study(root: Path, smoke: bool) -> tuple[str, Path]:
    """Train a K-shot supernet shown on the study, search it with a MACs budget, export the best subnet."""
    url, art = f"sqlite:///{root / 'study.db'}", root / "artifacts"
    common = ["--storage", url, "--study-name", "kshot-macro", "--artifacts", str(art), "--quiet"]
    ckpt = ["--checkpoint", str(root / "supernet.pt")]
    train = ["--width-mult", "0.0625", "--budget-images", "1024"] if smoke else \
        ["--width-mult", "0.25", "--epochs", "6"]
    steps = [
        ["train", "--space", "macro", *train, "--supernet", "kshot", "--k", "2", *ckpt, *common],
        ["search", *ckpt, *common, "--trials", "6" if smoke else "60", "--max-macs", "4e5" if smoke else "6e6",
         "--calib-batches", "1" if smoke else "2"],
        ["export", *ckpt, *common, "--out", str(root / "subnet")],
    ]
    for argv in steps:
        if cli(argv) != 0:
            sys.exit(f"optuna-kshot {argv[0]} failed")
    return url, art


def screenshot(url: str, art: Path, out: Path, *, width: int, height: int) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("Chromium is not installed: apt-get install chromium")
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "optuna_kshot.cli", "dashboard", "--storage", url,
                               "--artifacts", str(art), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as r:
                    study_id = json.load(r)["study_summaries"][0]["study_id"]
                break
            except OSError:
                time.sleep(0.3)
        else:
            sys.exit("optuna-kshot dashboard did not start")
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                            "--virtual-time-budget=20000", f"--screenshot={out}",
                            f"{base}/dashboard/studies/{study_id}"], check=True, capture_output=True, timeout=180)
    finally:
        server.terminate()
        server.wait(timeout=30)


def compose(path: Path, bands: list[tuple[int, int]]) -> None:
    """Keep the given row bands of the full-page screenshot, stacked, as a 256-colour palette PNG (the dashboard
    is flat colours and text, so this loses next to nothing and stays small)."""
    from PIL import Image

    with Image.open(path) as full:
        full = full.convert("RGB")
        parts = [full.crop((0, top, full.width, min(bottom, full.height))) for top, bottom in bands]
    out = Image.new("RGB", (parts[0].width, sum(p.height for p in parts)), "white")
    y = 0
    for part in parts:
        out.paste(part, (0, y))
        y += part.height
    out.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE / "dashboard.png", help="(default: %(default)s)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the run here (default: a temp dir)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=2400, help="of the full page (default: %(default)s)")
    parser.add_argument("--bands", default="0:642,1739:2232",
                        help="row bands of the full page to keep, stacked; the default keeps the header with the "
                             "Pareto front and the training figures of optuna-dashboard 0.21's study page of a "
                             "two-objective study (default: %(default)s)")
    parser.add_argument("--smoke", action="store_true", help="tiny settings")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        url, art = make_study(root, args.smoke)
        screenshot(url, art, args.out, width=args.width, height=args.height)
    compose(args.out, [tuple(int(v) for v in band.split(":")) for band in args.bands.split(",")])
    print(f"{args.out}: {args.out.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
