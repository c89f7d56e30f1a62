"""Reference models: the ways to train K of them, timed in one run, each with the LiRA AUC its set
gives (so "faster" never means "worse").

Run from the repository root: ``.venv/bin/python benchmarks/references.py [--archs cnn,mlp] [--k 16]
[--repeats 3] [--quick] [--dataset digits --data-root P --train-size N]``. The original is each
architecture's default recipe (:func:`mu_core.train.default_config`); the audit is ``lira_online``
on the original (a random forget set of ``--forget`` training samples against matched held-out
non-members), so its AUC is the membership signal the reference set carries. Ways:

- ``before``: one by one in this process at torch's default thread count (one per core);
- ``threads``: one by one in this process at :func:`mu_core.device.default_threads` (one per idle core);
- ``processes``: one by one in worker processes, one per core, one torch thread each;
- ``processes+cl``: the same with channels-last weights (convolutional models only);
- ``batched``: all K at once with ``torch.func`` (``train_batched``) at ``default_threads``;
- ``half-epochs``: ``processes`` with half the original's epochs (an AUC check for "fewer epochs");
- ``default``: what ``train_references`` picks when nobody chose an executor.

The ways run interleaved (each repeat in a rotated order) so they share the machine's load; the
table gives the median seconds (training and scoring the population), the median of the per-repeat
ratios to ``before``, and the AUC with its 95% bootstrap interval.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WAYS = ("before", "threads", "processes", "processes+cl", "batched", "default")


def train_way(way: str, record, data, pool, k: int, device) -> tuple[object, str]:
    """Train the reference set ``way`` and say how it ran."""
    import torch

    from mu_core.attacks import reference
    from mu_core.device import configure_threads
    from mu_core.executor import ExecutorSettings, process_slots

    cores = os.cpu_count() or 1
    workers, _ = process_slots(ExecutorSettings("processes"), k)
    threads = configure_threads(refresh=True)
    conv = reference._use_channels_last(record.arch, data, torch.device("cpu"))
    if way == "before":
        how = f"inline, {cores} threads"
        refs = reference.train_references(record, data, pool, k, batched=False, device=device, channels_last=False,
                                          executor=ExecutorSettings("inline", cpus_per_job=cores))
    elif way == "threads":
        how = f"inline, {threads} thread(s)"
        refs = reference.train_references(record, data, pool, k, batched=False, device=device, channels_last=False,
                                          executor=ExecutorSettings("inline", cpus_per_job=threads))
    elif way in ("processes", "processes+cl"):
        how = f"{workers} processes x 1 thread" + (", channels-last" if way == "processes+cl" else "")
        refs = reference.train_references(record, data, pool, k, batched=False, device=device, channels_last=way == "processes+cl",
                                          executor="processes")
    elif way == "half-epochs":
        epochs = max(1, record.recipe["epochs"] // 2)
        how = f"{workers} processes x 1 thread, {epochs} epochs"
        refs = reference.train_references(record.with_updates(recipe={**record.recipe, "epochs": epochs}), data, pool, k,
                                          batched=False, device=device, channels_last=conv, executor="processes")
        refs.fingerprint = reference.fingerprint(record, pool, k)  # so that the audit reuses this set
    elif way == "batched":
        torch.set_num_threads(threads)
        how = f"torch.func, {threads} thread(s)"
        refs = reference.train_references(record, data, pool, k, batched=True, device=device)
    elif way == "default":
        messages: list[str] = []
        refs = reference.train_references(record, data, pool, k, device=device, progress=lambda f, m: messages.append(m))
        where = f"{workers} processes x 1 thread" if any(f"in {workers} processes" in m for m in messages) else "inline"
        how = ("batched" if refs.batched else where + (", channels-last" if conv else ""))
    else:
        raise SystemExit(f"unknown way '{way}'; choose from {', '.join(WAYS)}, half-epochs")
    return refs, how


def lira_auc(model, record, data, forget_idx, refs, k: int, folder: Path) -> tuple[float, list[float]]:
    """``lira_online``'s AUC (and its 95% bootstrap interval) on the original with the set ``refs``."""
    from mu_core.attacks.reference import FILE_NAME
    from mu_core.audit.report import run_audit

    refs.save(folder / FILE_NAME)
    messages: list[str] = []
    result = run_audit({"original": (model, record)}, forget_idx, attacks=["lira_online"], dataset=data, reference_models=k,
                       reference_dir=folder, bootstrap=100, device="cpu", progress=lambda f, m: messages.append(m)).data
    if not any(m.startswith("Reusing") for m in messages):
        raise SystemExit("The audit trained its own reference models: the benchmark's population differs from the audit's.")
    scores = result["attacks"]["lira_online"]["original"]
    return float(scores["auc"]), [float(v) for v in scores["auc_ci"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-root")
    parser.add_argument("--train-size", type=int)
    parser.add_argument("--archs", default="cnn,mlp")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--forget", type=int, default=200, help="forget-set size of the audit")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--quick", action="store_true", help="one repeat of 8 models")
    args = parser.parse_args()
    if args.quick:
        args.k, args.repeats = 8, 1

    os.environ.pop("MU_AUDIT_EXECUTOR", None)
    os.environ.pop("MU_AUDIT_THREADS", None)
    os.environ["MU_AUDIT_HOME"] = tempfile.mkdtemp(prefix="mu_bench_home_")  # no saved executor setting

    import torch

    from mu_core.attacks import reference
    from mu_core.audit.report import audit_samples
    from mu_core.data import DatasetSpec, load_dataset
    from mu_core.forget import random_request
    from mu_core.train import default_config, fit_model

    device = torch.device("cpu")
    data = load_dataset(DatasetSpec(args.dataset, args.data_root))
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    load_start = os.getloadavg()
    started = time.perf_counter()
    tables = []
    with tempfile.TemporaryDirectory(prefix="mu_bench_refs_") as tmp:
        for arch in [a.strip() for a in args.archs.split(",") if a.strip()]:
            n = args.train_size or data.n_train
            model, record = fit_model(data, arch, default_config(arch, n), train_size=args.train_size, device=device)
            forget_idx = random_request(record.train_indices, args.forget, seed=0).indices
            held_out, nonmember_idx = audit_samples(record, data, forget_idx)
            pool = reference.reference_pool(len(record.train_indices), held_out, nonmember_idx)
            arch_ways = [w for w in ways if not (w == "processes+cl" and not reference._use_channels_last(arch, data, device))
                         and not (w == "batched" and not reference._can_batch(arch, data.in_shape, data.num_classes))]
            seconds: dict[str, list[float]] = {w: [] for w in arch_ways}
            hows: dict[str, str] = {}
            aucs: dict[str, tuple[float, list[float]]] = {}
            for rep in range(args.repeats):
                order = arch_ways[rep % len(arch_ways):] + arch_ways[: rep % len(arch_ways)]
                for way in order:
                    refs, hows[way] = train_way(way, record, data, pool, args.k, device)
                    seconds[way].append(refs.seconds)
                    if way not in aucs:
                        aucs[way] = lira_auc(model, record, data, forget_idx, refs, args.k, Path(tmp) / f"{arch}-{way}")
                    print(f"  {arch} repeat {rep + 1} {way}: {refs.seconds:.1f} s", file=sys.stderr, flush=True)
            tables.append((arch, record, len(pool), seconds, hows, aucs))
    load_end = os.getloadavg()

    print(f"{args.k} reference models on {args.dataset}, default recipes; median of {args.repeats} interleaved repeat(s); "
          f"{os.cpu_count()} cores; load average {load_start[0]:.2f} / {load_start[1]:.2f} / {load_start[2]:.2f} at the start, "
          f"{load_end[0]:.2f} / {load_end[1]:.2f} / {load_end[2]:.2f} at the end; {time.perf_counter() - started:.0f} s in all\n")
    for arch, record, pool_size, seconds, hows, aucs in tables:
        print(f"`{arch}` ({len(record.train_indices)} training samples, {record.recipe['epochs']} epochs, population "
              f"{len(record.train_indices) + pool_size}); LiRA = `lira_online` on the original, {args.forget} forgotten vs matched non-members\n")
        print("| way | how | seconds | speed-up vs before | LiRA AUC (95% interval) |")
        print("| --- | --- | --- | --- | --- |")
        before = seconds.get("before")
        for way, times in seconds.items():
            ratio = f"{statistics.median(b / t for b, t in zip(before, times, strict=True)):.2f}x" if before else "–"
            auc, (lo, hi) = aucs[way]
            print(f"| {way} | {hows[way]} | {statistics.median(times):.1f} | {ratio} | {auc:.3f} ({lo:.3f}-{hi:.3f}) |")
        print()


if __name__ == "__main__":
    main()
