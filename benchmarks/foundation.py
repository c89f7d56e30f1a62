"""Foundation benchmark: training time and accuracy of the cnn, the whole audit flow on digits,
and the app's time from start to the first rendered page.

Run from the repository root: ``.venv/bin/python benchmarks/foundation.py [--fashion-root P]``.
Prints a Markdown table; the numbers in BENCHMARKS.md come from it.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def bench_training(dataset: str, root: str | None) -> dict:
    from mu_core.data import DatasetSpec, load_dataset
    from mu_core.train import fit_model

    started = time.perf_counter()
    data = load_dataset(DatasetSpec(dataset, root))
    load_s = time.perf_counter() - started
    _, record = fit_model(data, "cnn")
    return {"load_s": load_s, **record.metrics, "epochs": record.recipe["epochs"], "n_train": len(record.train_indices)}


def bench_flow() -> dict:
    """The newcomer's flow on digits through the engine: train, forget 100, neggrad, retrain, audit."""
    import mu_core

    times = {}
    t = time.perf_counter()
    model, record = mu_core.fit_model("digits", "cnn")
    times["train"] = time.perf_counter() - t
    request = mu_core.random_request(record.train_indices, 100, seed=0)
    t = time.perf_counter()
    unlearned = mu_core.unlearn(model, record, request.indices, method="neggrad")
    times["unlearn (neggrad)"] = time.perf_counter() - t
    t = time.perf_counter()
    retrained = mu_core.unlearn(model, record, request.indices, method="retrain")
    times["retrain"] = time.perf_counter() - t
    t = time.perf_counter()
    mu_core.run_audit(
        {"original": (model, record), "unlearned": (unlearned.model, unlearned.record), "retrained": (retrained.model, retrained.record)},
        request.indices,
    )
    times["audit (loss)"] = time.perf_counter() - t
    times["total"] = sum(times.values())
    return times


def bench_app_start() -> dict:
    """Seconds from `streamlit run app.py` to a healthy server, and to the home page drawn in Chromium."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home = tempfile.mkdtemp(prefix="mu_bench_")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env={**os.environ, "MU_AUDIT_HOME": home}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    out = {}
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.read().strip() == b"ok":
                        break
            except OSError:
                time.sleep(0.1)
        out["server healthy"] = time.perf_counter() - started
        if Path("/usr/bin/chromium").exists():
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"])
                page = browser.new_page()
                page.goto(url)
                page.get_by_text("Was this data really forgotten").wait_for(timeout=120_000)
                page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=120_000)
                out["home page rendered"] = time.perf_counter() - started
                t = time.perf_counter()
                page.goto(f"{url}/Model")
                page.get_by_text("Train a model").first.wait_for(timeout=120_000)
                out["Model page (first torch import) rendered after navigation"] = time.perf_counter() - t
                browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fashion-root", default=str(ROOT.parent / "shared" / "datasets" / "fashion-mnist"))
    parser.add_argument("--skip-fashion", action="store_true")
    args = parser.parse_args()

    import torch

    print(f"# Foundation benchmark ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)\n")
    print("| what | dataset | epochs | training samples | seconds | train acc | test acc |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    runs = [("digits", None)] + ([] if args.skip_fashion or not Path(args.fashion_root).is_dir() else [("fashion-mnist", args.fashion_root)])
    for name, root in runs:
        r = bench_training(name, root)
        print(f"| cnn, default recipe | {name} | {r['epochs']} | {r['n_train']} | {r['train_seconds']:.1f} (+{r['load_s']:.1f} loading) "
              f"| {r['train_acc']:.2%} | {r['test_acc']:.2%} |", flush=True)
    print("\n| flow step on digits (cnn, 100 random samples forgotten) | seconds |\n| --- | --- |")
    for step, seconds in bench_flow().items():
        print(f"| {step} | {seconds:.1f} |", flush=True)
    print("\n| app start | seconds |\n| --- | --- |")
    for step, seconds in bench_app_start().items():
        print(f"| {step} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
