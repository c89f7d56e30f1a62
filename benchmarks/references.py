"""Reference models: the ways to train K of them, timed in one run, with the membership signal
each set carries (so "faster" never means "worse").

Run from the repository root: ``.venv/bin/python benchmarks/references.py [--dataset fashion-mnist
--data-root P --train-size 1000 --epochs 30] [--k 8] [--device cpu|cuda]``. Ways:

- ``before``: one by one in this process at torch's default thread count (one per core): the
  code path before issue 13;
- ``threads``: one by one at :func:`mu_core.device.default_threads` (one per idle core);
- ``batched``: all K at once with ``torch.func`` (``train_batched``), at ``default_threads``;
- ``default``: what ``train_references`` picks now.

For each set: seconds, the mean test accuracy of its models, and the mean membership AUC of each
model's own loss on its IN vs OUT population samples (the signal LiRA and RMIA are built on).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def set_quality(refs, data) -> tuple[float, float]:
    """(mean test accuracy, mean IN-vs-OUT loss AUC) over the set's models."""
    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score

    _, y = refs.population(data)
    logits = refs.logits[:, 0]  # (K, P, C), the unaugmented query
    losses = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.repeat(refs.count), reduction="none").reshape(refs.count, -1)
    aucs = [roc_auc_score(refs.keep[k], -losses[k].numpy()) for k in range(refs.count)]
    accs = []
    for k in range(refs.count):
        model = refs.model(k)
        with torch.no_grad():
            accs.append(float((model(data.x_test).argmax(1) == data.y_test).float().mean()))
    return float(np.mean(accs)), float(np.mean(aucs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-root")
    parser.add_argument("--train-size", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ways", default="before,threads,batched,default")
    args = parser.parse_args()

    import torch

    from mu_core.attacks import reference
    from mu_core.data import DatasetSpec, load_dataset
    from mu_core.device import default_threads, pick_device
    from mu_core.train import default_config, fit_model

    device = pick_device(args.device)
    data = load_dataset(DatasetSpec(args.dataset, args.data_root))
    n = args.train_size or data.n_train
    _, record = fit_model(data, "cnn", default_config("cnn", n, epochs=args.epochs), train_size=args.train_size, device=device)
    pool = reference.heldout_pool(len(record.train_indices), data.n_test)
    load_before = os.getloadavg()[0]
    idle = default_threads()
    rows = []
    for way in [w.strip() for w in args.ways.split(",") if w.strip()]:
        os.environ.pop("MU_AUDIT_EXECUTOR", None)
        batched: bool | None = None
        threads = default_threads()
        if way == "before":
            threads, batched = os.cpu_count() or 1, False
            os.environ["MU_AUDIT_EXECUTOR"] = "inline"
        elif way == "threads":
            batched = False
            os.environ["MU_AUDIT_EXECUTOR"] = "inline"
        elif way == "batched":
            batched = True
        torch.set_num_threads(threads)
        if way == "default":
            batched_default = reference._use_batched(record.arch, data, device, None)
            how = "batched" if batched_default else f"inline, {threads} thread(s)"
        else:
            how = {"before": f"inline, {threads} threads", "threads": f"inline, {threads} thread(s)",
                   "batched": f"torch.func, {threads} thread(s)"}[way]
        started = time.perf_counter()
        refs = reference.train_references(record, data, pool, args.k, batched=batched, device=device)
        seconds = time.perf_counter() - started
        acc, auc = set_quality(refs, data)
        rows.append((way, seconds, acc, auc, how))
    os.environ.pop("MU_AUDIT_EXECUTOR", None)

    before = next((r[1] for r in rows if r[0] == "before" and r[1]), None)
    print(f"{args.k} reference `cnn` models on {args.dataset} ({len(record.train_indices)} training samples, "
          f"{record.recipe['epochs']} epochs, population {len(record.train_indices) + len(pool)}); device {device}; "
          f"{os.cpu_count()} cores, load average {load_before:.1f} at the start ({idle} idle core(s) by default_threads)\n")
    print("| way | how | seconds (training + scoring) | speed-up vs before | mean test acc | mean IN/OUT loss AUC |")
    print("| --- | --- | --- | --- | --- | --- |")
    for way, seconds, acc, auc, how in rows:
        if seconds is None:
            print(f"| {way} | {how} | – | – | – | – |")
            continue
        speedup = f"{before / seconds:.1f}x" if before else "–"
        print(f"| {way} | {how} | {seconds:.1f} | {speedup} | {acc:.3f} | {auc:.3f} |")


if __name__ == "__main__":
    main()
