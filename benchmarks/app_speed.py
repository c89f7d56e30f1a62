"""Speed as a new user meets it: the same training from the app and from the CLI, the home page's
first render, the CLI's start-up, and the Forget page's thumbnails.

Run from the repository root: ``.venv/bin/python benchmarks/app_speed.py [--rounds 2]``. It starts
``streamlit run app.py`` (with the repository's ``.streamlit/config.toml``) on a free local port,
drives it with Debian's Chromium (``/usr/bin/chromium``), and alternates app and CLI trainings of
the digits ``cnn`` (the Model page's default) so that both see the same machine load. The ratio is
of the models' recorded ``train_seconds`` (the training loop, the same code both ways); the
click-to-done and process wall times are printed beside it. Prints Markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHROMIUM = "/usr/bin/chromium"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train_seconds(path: Path) -> float:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    return float(json.loads(meta["mu_audit"])["metrics"]["train_seconds"])


def start_server(home: Path) -> tuple[subprocess.Popen, str, float]:
    """``streamlit run app.py`` as ``make run`` starts it; returns (process, url, seconds to healthy)."""
    port = _free_port()
    env = {**os.environ, "MU_AUDIT_HOME": str(home)}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1"],
                            cwd=ROOT, env=env, stdout=open(home / "server.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.read().strip() == b"ok":
                    return proc, url, time.perf_counter() - started
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited; see {home / 'server.log'}") from None
        time.sleep(0.1)


def cli_train(out: Path) -> tuple[float, float]:
    """(train_seconds, process wall seconds) of ``python -m mu_core train --dataset digits --arch cnn``."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mu_core", "train", "--dataset", "digits", "--arch", "cnn", "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True)
    return _train_seconds(out), time.perf_counter() - started


def app_train(page, url: str, home: Path) -> tuple[float, float, float]:
    """(train_seconds, click-to-done seconds, click-to-first-progress seconds) of the Model page's Train button."""
    page.goto(f"{url}/Model")
    page.wait_for_selector(IDLE, timeout=120_000)
    button = page.get_by_role("button", name="Train", exact=True)
    button.wait_for(timeout=120_000)
    clicked = time.perf_counter()
    button.click()
    page.locator("[data-testid='stProgress']").first.wait_for(timeout=120_000)
    first_progress = time.perf_counter() - clicked
    page.get_by_text(re.compile(r"Training cnn on digits: done")).wait_for(timeout=900_000)
    done = time.perf_counter() - clicked
    newest = max(home.glob("cases/*/original.safetensors"), key=lambda p: p.stat().st_mtime)
    return _train_seconds(newest), done, first_progress


def home_render(page, url: str) -> float:
    started = time.perf_counter()
    page.goto(url)
    page.get_by_text("Was this data really forgotten").wait_for(timeout=120_000)
    return time.perf_counter() - started


def forget_thumbnails(page, url: str) -> float:
    """Seconds from opening the Forget page (on a case with a model) to its first 60 thumbnails drawn."""
    started = time.perf_counter()
    page.goto(f"{url}/Forget")
    page.get_by_role("button", name="Save forget request").click()
    page.wait_for_function("document.querySelectorAll(\"[data-testid='stImage'] img\").length >= 60"
                           " && [...document.querySelectorAll(\"[data-testid='stImage'] img\")].every(i => i.complete && i.naturalWidth > 0)",
                           timeout=120_000)
    return time.perf_counter() - started


def cli_startup(repeats: int = 3) -> dict[str, float]:
    """Median wall seconds of commands that need no model weights, against ``python -c 'import torch'``
    (``list`` and a random request drawn from a model file read no weights and import no torch; a
    request drawn from a dataset loads the dataset, whose split is defined by loading it)."""
    tmp = Path(tempfile.mkdtemp(prefix="mu_bench_startup_"))
    model = tmp / "m.safetensors"
    subprocess.run([sys.executable, "-m", "mu_core", "train", "--dataset", "digits", "--arch", "mlp", "--epochs", "1", "--out", str(model)],
                   cwd=ROOT, check=True, capture_output=True)
    cases = {
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "mu_core --help": [sys.executable, "-m", "mu_core", "--help"],
        "mu_core list": [sys.executable, "-m", "mu_core", "list"],
        "mu_core forget --model M --random 100": [sys.executable, "-m", "mu_core", "forget", "--model", str(model), "--random", "100",
                                                  "--out", str(tmp / "from_model.json")],
        "mu_core forget --dataset digits --random 100 (loads the dataset)": [
            sys.executable, "-m", "mu_core", "forget", "--dataset", "digits", "--random", "100", "--out", str(tmp / "from_data.json")],
    }
    out = {}
    for name, argv in cases.items():
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
        out[name] = statistics.median(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="app and CLI trainings each (alternating)")
    parser.add_argument("--startup-only", action="store_true", help="only the command line's start-up times (no browser)")
    args = parser.parse_args()
    if args.startup_only:
        for name, seconds in cli_startup().items():
            print(f"| `{name}` | {seconds:.2f} |")
        return
    from playwright.sync_api import sync_playwright

    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        proc, url, healthy_s = start_server(home)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu",
                                            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"])
                page = browser.new_page()
                outside: list[str] = []
                page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((url, "data:", "blob:")) else None)
                first_render = home_render(page, url)
                rows = []
                for r in range(args.rounds):
                    cli_s, cli_wall = cli_train(Path(tmp) / f"cli{r}.safetensors")
                    app_s, app_done, app_first = app_train(page, url, home)
                    rows.append((cli_s, cli_wall, app_s, app_done, app_first))
                thumbs = forget_thumbnails(page, url)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    startup = cli_startup()
    ratio = statistics.median(r[2] for r in rows) / statistics.median(r[0] for r in rows)
    print(f"Load average before the run: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} on {os.cpu_count()} cores\n")
    print("| round | CLI train_seconds | CLI process (s) | app train_seconds | app click to done (s) | click to first progress (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r, (cli_s, cli_wall, app_s, app_done, app_first) in enumerate(rows, 1):
        print(f"| {r} | {cli_s:.1f} | {cli_wall:.1f} | {app_s:.1f} | {app_done:.1f} | {app_first:.2f} |")
    print(f"\n**app / CLI ratio (median train_seconds): {ratio:.2f}** (goal <= 1.2)\n")
    print("| measure | seconds |")
    print("| --- | --- |")
    print(f"| server start to healthy | {healthy_s:.1f} |")
    print(f"| home page drawn after healthy (goal <= 2) | {first_render:.2f} |")
    print(f"| Forget page: 60 thumbnails drawn (goal <= 2) | {thumbs:.2f} |")
    for name, seconds in startup.items():
        print(f"| `{name}` | {seconds:.2f} |")
    print(f"\nRequests leaving 127.0.0.1: {len(outside)}{' (' + ', '.join(sorted(set(outside))) + ')' if outside else ''}")


if __name__ == "__main__":
    main()
