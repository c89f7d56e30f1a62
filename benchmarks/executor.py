"""Executor benchmark: 16 reference models in this process vs on a local Ray, and a projection of
256 reference models on N Ray workers from the measured per-model cost.

The reference models are the audit's own jobs (:func:`mu_core.attacks.reference.train_reference_job`:
train one model on its half of the population, then score the population), for a ``cnn`` trained on
a seeded subset of the bundled digits. Both executors run the same jobs in the same process, one
after the other, so their ratio is measured under the same load. In-process runs use this process's
torch threads (and, a second time, one thread); Ray runs ``--ray-cpus`` tasks at once with one CPU (one thread) each, on a local Ray
started for the run (its start-up is timed separately). The projection: per-model cost x
ceil(256 / N) + the measured start-up and per-run overhead, for N one-CPU workers that each run one
model at a time (a cluster's network and data transfer are not in it: each task receives the
population once, under 10 MB here).

With ``--retrains K`` it also times the verdict's K exact retrains
(:func:`mu_core.audit.retrains.train_retrains`) of a digits ``mlp`` (all 1,437 training samples, its
default recipe, 100 random samples forgotten) in this process (one thread) and on the same local Ray,
and checks that both give the same weights; ``--models 0`` skips the reference models.

Run from the repository root: ``.venv/bin/python benchmarks/executor.py [--models 16] [--ray-cpus 2] [--retrains 4]``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=16, help="reference models per executor (default 16)")
    parser.add_argument("--train-size", type=int, default=500, help="the original's training-set size (digits subset)")
    parser.add_argument("--epochs", type=int, default=20, help="the original's (and the reference models') epochs")
    parser.add_argument("--ray-cpus", type=int, default=os.cpu_count() or 1, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--project", type=int, default=256, help="reference models to project (default 256)")
    parser.add_argument("--retrains", type=int, default=0, help="also time this many exact retrains of a digits mlp (default 0: none)")
    args = parser.parse_args()
    os.environ["MU_AUDIT_RAY_CPUS"] = str(args.ray_cpus)
    os.environ.setdefault("MU_AUDIT_RAY_OBJECT_STORE_MB", "128")
    if args.models:
        references(args)
    if args.retrains:
        retrains(args.retrains)
    from mu_core.executor import shutdown_ray

    shutdown_ray()


def references(args: argparse.Namespace) -> None:
    """16 (``--models``) reference models in this process and on a local Ray, and the projection."""

    import numpy as np
    import torch

    from mu_core.attacks.reference import REFERENCE_SEED, heldout_pool, keep_mask, reference_jobs, train_reference_job
    from mu_core.data import load_dataset
    from mu_core.executor import ExecutorSettings, cluster_resources, run_jobs
    from mu_core.train import default_config, fit_model

    data = load_dataset("digits")
    config = default_config("cnn", args.train_size, epochs=args.epochs)
    _, record = fit_model(data, "cnn", config, train_size=args.train_size, device="cpu")
    pool = heldout_pool(args.train_size, data.n_test)
    a, b = torch.from_numpy(np.asarray(record.train_indices)), torch.from_numpy(pool)
    x, y = torch.cat([data.x_train[a], data.x_test[b]]), torch.cat([data.y_train[a], data.y_test[b]])
    keep = keep_mask(args.models, len(x), REFERENCE_SEED)
    jobs, shared = reference_jobs("cnn", data.in_shape, data.num_classes, x, y, keep, record, augment="digits")
    threads = torch.get_num_threads()
    print(f"# Executor benchmark: {args.models} reference models, digits cnn ({args.train_size} training samples, "
          f"{config.epochs} epochs, population {len(x)}, halves of {int(keep[0].sum())})")
    print(f"({platform.machine()}, {os.cpu_count()} cores shared with other work, torch {torch.__version__}, "
          f"{threads} threads in-process; Ray {args.ray_cpus} CPUs, 1 per task)\n")

    started = time.perf_counter()
    local = run_jobs(train_reference_job, jobs, shared=shared, executor=ExecutorSettings("inline"), device="cpu")
    local_s = time.perf_counter() - started
    started = time.perf_counter()
    local_one = run_jobs(train_reference_job, jobs, shared=shared, executor=ExecutorSettings("inline", cpus_per_job=1), device="cpu")
    local_one_s = time.perf_counter() - started

    settings = ExecutorSettings("ray", cpus_per_job=1)
    started = time.perf_counter()
    resources = cluster_resources(settings)
    startup_s = time.perf_counter() - started
    started = time.perf_counter()
    remote = run_jobs(train_reference_job, jobs, shared=shared, executor=settings)
    ray_s = time.perf_counter() - started

    per_local = statistics.median(r["seconds"] for r in local)
    per_ray = statistics.median(r["seconds"] for r in remote)
    workers = resources["cpus"]
    waves = math.ceil(args.models / workers)
    overhead = max(ray_s - waves * per_ray, 0.0)
    print("| executor | wall (s) | per model, median (s) | models / minute |")
    print("| --- | --- | --- | --- |")
    print(f"| in-process ({threads} threads) | {local_s:.1f} | {per_local:.2f} | {60 * args.models / local_s:.1f} |")
    print(f"| in-process (1 thread) | {local_one_s:.1f} | {statistics.median(r['seconds'] for r in local_one):.2f} | "
          f"{60 * args.models / local_one_s:.1f} |")
    print(f"| Ray, local, {workers:.0f} x 1 CPU | {ray_s:.1f} | {per_ray:.2f} | {60 * args.models / ray_s:.1f} |")
    print(f"\nRay start-up (local, on demand): {startup_s:.1f} s; Ray / in-process wall time: {ray_s / local_s:.2f} "
          f"({threads} threads), {ray_s / local_one_s:.2f} (1 thread); "
          f"overhead of the Ray run beyond {waves} waves of the median model: {overhead:.1f} s.\n")
    print(f"Projection: {args.project} reference models of this size, {per_ray:.2f} s per model per 1-CPU worker "
          f"(measured above), + {startup_s:.0f} s start-up + {overhead:.0f} s run overhead:\n")
    print(f"| workers N | waves ceil({args.project}/N) | projected wall | vs the faster in-process run here |")
    print("| --- | --- | --- | --- |")
    in_process_projected = min(local_s, local_one_s) * args.project / args.models
    for n in (1, 2, 8, 16, 32, 64, 128, 256):
        wall = math.ceil(args.project / n) * per_ray + startup_s + overhead
        print(f"| {n} | {math.ceil(args.project / n)} | {wall / 60:.1f} min | {in_process_projected / wall:.1f}x |")
    print(f"\nIn-process here, projected: {in_process_projected / 60:.1f} min for {args.project}.")


def retrains(k: int) -> None:
    """``k`` exact retrains of a digits mlp in this process (1 thread) and twice on the local Ray (1 CPU
    each): the first Ray run includes its worker processes' start (importing torch), the second not."""
    import torch

    from mu_core.audit.retrains import train_retrains
    from mu_core.data import load_dataset
    from mu_core.executor import ExecutorSettings, cluster_resources
    from mu_core.forget import random_request
    from mu_core.train import default_config, fit_model

    data = load_dataset("digits")
    config = default_config("mlp", data.n_train)
    model, record = fit_model(data, "mlp", config, device="cpu")
    request = random_request(record.train_indices, 100, seed=0)
    settings = ExecutorSettings("ray", cpus_per_job=1)
    started = time.perf_counter()
    resources = cluster_resources(settings)  # started here, or already up from the reference models
    startup_s = time.perf_counter() - started
    walls, models = {}, {}
    ray_name = f"Ray, local, {resources['cpus']:.0f} x 1 CPU"
    for name, executor in (("in-process, 1 thread", ExecutorSettings("inline", cpus_per_job=1)),
                           (f"{ray_name}, first run (workers import torch)", settings), (f"{ray_name}, again", settings)):
        started = time.perf_counter()
        models[name] = train_retrains(model, record, request.indices, k, dataset=data, device="cpu", executor=executor)
        walls[name] = time.perf_counter() - started
    first, *others = models.values()
    same = all(torch.equal(a, b) for other in others for (m1, _), (m2, _) in zip(first, other, strict=True)
               for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True))
    print(f"\n# {k} exact retrains of a digits mlp ({data.n_train} training samples, {config.epochs} epochs, "
          f"100 forgotten), one job each\n")
    print("| executor | wall (s) | per retrain (s) |")
    print("| --- | --- | --- |")
    for name, wall in walls.items():
        print(f"| {name} | {wall:.1f} | {wall / k:.2f} |")
    print(f"\nRay start-up (if started here): {startup_s:.1f} s, not in the walls above; identical weights: {same}.")


if __name__ == "__main__":
    main()
