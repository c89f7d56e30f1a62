"""Membership-audit benchmark: every attack on original / unlearned / retrained models.

Fashion-MNIST subset with the ``cnn`` (default: 1,000 training samples for 100 epochs, so that it
overfits, and the held-out pool of 2,000 gives enough non-members for TPR at 0.1% FPR), a random forget request, NegGrad
as the unlearning method, 16 reference models. Reference models are trained twice, batched
(``torch.func``) and one by one, and the faster set is used. Prints a markdown table.

Run from the repository root: ``.venv/bin/python benchmarks/membership.py [--train-size 1000]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def fmt(v, pct=False):
    if v is None:
        return "n/a"
    return f"{100 * v:.1f}%" if pct else f"{v:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fashion-root", default=str(ROOT.parent / "shared" / "datasets" / "fashion-mnist"))
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--forget-size", type=int, default=200)
    parser.add_argument("--reference-models", type=int, default=16)
    parser.add_argument("--method", default="neggrad")
    parser.add_argument("--epochs", type=int, default=100, help="epochs of the original (and so of the reference models); "
                        "the default recipe's 30 leave 1,000 Fashion samples underfit, with no membership signal to find")
    parser.add_argument("--reference-training", default="batched,one-by-one", help="which ways to train (and time) the reference models")
    args = parser.parse_args()

    import torch

    from mu_core.attacks import list_attacks
    from mu_core.attacks.reference import FILE_NAME, reference_pool, train_references
    from mu_core.audit.report import audit_samples, run_audit
    from mu_core.data import DatasetSpec, load_dataset
    from mu_core.device import pick_device
    from mu_core.forget import random_request
    from mu_core.train import default_config, fit_model
    from mu_core.unlearn import unlearn

    device = pick_device(None)
    started = time.perf_counter()
    data = load_dataset(DatasetSpec("fashion-mnist", args.fashion_root))
    print(f"# Membership benchmark: Fashion-MNIST subset, cnn ({platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {device})\n")
    config = default_config("cnn", args.train_size, epochs=args.epochs)
    model, record = fit_model(data, "cnn", config, train_size=args.train_size, device=device)
    request = random_request(record.train_indices, args.forget_size, seed=0)
    unlearned = unlearn(model, record, request.indices, method=args.method, dataset=data, device=device)
    retrained = unlearn(model, record, request.indices, method="retrain", dataset=data, device=device)
    print(f"Original: {args.train_size} samples, {record.recipe['epochs']} epochs, train {record.metrics['train_acc']:.1%}, "
          f"test {record.metrics['test_acc']:.1%} ({record.metrics['train_seconds']:.0f} s). Forget: {len(request)} random samples; "
          f"{args.method}: {unlearned.seconds:.1f} s; retrain: {retrained.seconds:.1f} s.")

    held_out, nonmembers = audit_samples(record, data, request.indices)
    pool = reference_pool(len(record.train_indices), held_out, nonmembers)  # the population the audit's reference models use
    work = Path(tempfile.mkdtemp(prefix="mu_bench_refs_"))
    timings = {}
    sets = {}
    ways = args.reference_training.split(",")
    for batched in (True, False):
        if ("batched" if batched else "one-by-one") not in ways:
            continue
        t = time.perf_counter()
        refs = train_references(record, data, pool, args.reference_models, batched=batched, device=device)
        timings["batched" if batched else "one by one"] = (refs.seconds, time.perf_counter() - t)
        sets[batched] = refs
    print(f"\nReference models: {args.reference_models}, population {len(record.train_indices) + len(pool)}, each trained on about "
          f"{(len(record.train_indices) + len(pool)) // 2} samples for {record.recipe['epochs']} epochs.\n")
    print("| reference training | training seconds | with scoring the population |")
    print("| --- | --- | --- |")
    for name, (train_s, total_s) in timings.items():
        print(f"| {name} | {train_s:.1f} | {total_s:.1f} |")
    fastest = min(sets, key=lambda b: sets[b].seconds)
    sets[fastest].save(work / FILE_NAME)

    attacks = list_attacks()
    t = time.perf_counter()
    report = run_audit({"original": (model, record), "unlearned": (unlearned.model, unlearned.record),
                        "retrained": (retrained.model, retrained.record)}, request.indices, attacks=attacks, dataset=data,
                       reference_models=args.reference_models, reference_dir=work, device=device).data
    audit_s = time.perf_counter() - t
    print(f"\nAudit with every attack: {audit_s:.0f} s (reference models reused: {'batched' if fastest else 'one by one'}); "
          f"{report['provenance']['members']} members, {report['provenance']['nonmembers']} non-members.\n")
    print("| attack | seconds | original AUC [95% CI] | unlearned AUC [95% CI] | retrained AUC [95% CI] | TPR@1% FPR o / u / r | TPR@0.1% FPR o / u / r |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for attack, result in report["attacks"].items():
        secs = report["provenance"]["attack_seconds"].get(attack, 0.0)
        if "not_run" in result:
            print(f"| {attack} | {secs:.1f} | {result['not_run']} | | | | |")
            continue
        if report["attack_info"][attack]["kind"] != "roc":
            print(f"| {attack} | {secs:.1f} | forgetting quality {result['forgetting_quality']:.3f} of 1, score {result['score']:.3f}, "
                  f"median eps {fmt(result['epsilon_median'])} | | | | |")
            continue
        cells = []
        for role in ("original", "unlearned", "retrained"):
            r = result.get(role)
            cells.append("n/a" if r is None else f"{r['auc']:.3f} [{r['auc_ci'][0]:.3f}, {r['auc_ci'][1]:.3f}]")
        tpr1 = " / ".join(fmt(result.get(role, {}).get("tpr_at_1pct_fpr"), True) for role in ("original", "unlearned", "retrained"))
        tpr01 = " / ".join(fmt(result.get(role, {}).get("tpr_at_0p1pct_fpr"), True) for role in ("original", "unlearned", "retrained"))
        print(f"| {attack} | {secs:.1f} | {' | '.join(cells)} | {tpr1} | {tpr01} |")
    print(f"\nVerdict: {report['verdict']}: {report['verdict_reason']}")
    print(f"\nTotal: {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
