"""Threats-lab benchmark on digits (mlp, its default recipe: 30 epochs, all 1,437 training samples).

Printed as Markdown for BENCHMARKS.md:

1. ``targeted_request``: success over ``--targets`` targets against random requests of the same
   budget (10 or 20 of the attacker's 287 samples), per method, with and without NegGrad's
   collapse guard.
2. ``accuracy_burn``: test accuracy before, after the crafted requests, after the same samples
   untouched, and with screening, over ``--trials`` crafted requests; with the methods' collapse
   guard (default) and without it (a naive provider); screening's rejections.
3. ``backdoor_verify``: Athena with 30 queries, over ``--seeds`` seeds (each seed draws a new data
   owner, marked samples, queries and models): how often retraining is confirmed and no
   unlearning refused, with the test's error rates.
4. ``backdoor_removal``, ``over_unlearning``, ``verification_evasion``: one seeded run each.
5. Screening as a detector: the ``gradient_influence`` score of ``--roc-requests`` targeted
   requests (budget 10) against as many random requests of the same size; ROC AUC, TPR at fixed
   FPR, and the rates at the default threshold (3).
6. ``backdoor_verify`` on Fashion-MNIST (an mlp on ``--fashion-train-size`` samples), per seed,
   when the dataset folder is there.

Run from the repository root with one torch thread on this shared machine:
``MU_AUDIT_THREADS=1 .venv/bin/python benchmarks/threats.py [--targets 25] [--trials 10] [--seeds 5] [--fashion-root DIR]``
(the Fashion-MNIST folder defaults to ``../shared/datasets/fashion-mnist`` beside the repository).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=25)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--roc-requests", type=int, default=100)
    parser.add_argument("--fashion-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fashion-mnist"),
                        help="Fashion-MNIST folder for the last part (skipped when missing)")
    parser.add_argument("--fashion-train-size", type=int, default=5000)
    args = parser.parse_args()

    import torch

    from mu_core.audit.metrics import roc_from_scores
    from mu_core.data import load_dataset
    from mu_core.threats import run_threat
    from mu_core.threats.screen import influence_score
    from mu_core.threats.targeted import attacker_pool, select_request
    from mu_core.train import fit_model

    started = time.perf_counter()
    data = load_dataset("digits")
    model, record = fit_model(data, "mlp", device="cpu")
    print(f"digits mlp, default recipe: test accuracy {record.metrics['test_acc']:.1%}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared machine)\n")

    def threat(name: str, **params):
        t = time.perf_counter()
        result = run_threat(name, model, record, params=params, dataset=data, device="cpu")
        return result, time.perf_counter() - t

    # 1. targeted_request
    print(f"### targeted_request ({args.targets} targets: correctly classified test samples drawn at random; the attacker holds 20% "
          "of the training set)\n")
    print("| method | collapse guard | budget | targets misclassified (gradient alignment) | random requests, same budget | "
          "test acc after (malicious / random) | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for methods, guard, budget in (("neggrad,neggrad_plus,retrain", 0.1, 10), ("neggrad", 0.1, 20), ("neggrad", 1.0, 10)):
        result, seconds = threat("targeted_request", targets=args.targets, budget=budget, methods=methods, max_retain_drop=guard)
        for method, row in result.numbers["methods"].items():
            shown = "none" if guard >= 1 else (f"{guard:g}" if method != "retrain" else "n/a")
            print(f"| {method} | {shown} | {budget} | {row['success_rate']:.0%} | {row['random_success_rate']:.0%} | "
                  f"{row['test_acc_after']:.1%} / {row['random_test_acc_after']:.1%} | {seconds:.0f} (all methods) |")
    print(f"\nTest accuracy before: {result.numbers['test_acc_before']:.1%}.\n")

    # 2. accuracy_burn
    print(f"### accuracy_burn ({args.trials} crafted requests of 30 samples, epsilon 0.1)\n")
    print("| provider | method | before | after crafted request | after same samples untouched | with screening | rejected |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, guard in (("collapse guard 0.1 (default)", 0.1), ("no guard (naive)", 1.0)):
        result, seconds = threat("accuracy_burn", requests=30, trials=args.trials, methods="neggrad,neggrad_plus", max_retain_drop=guard)
        n = result.numbers
        for method, row in n["methods"].items():
            print(f"| {label} | {method} | {n['test_acc_before']:.1%} | {row['test_acc_after']:.1%} | {row['benign_test_acc_after']:.1%} | "
                  f"{row['test_acc_with_screening']:.1%} | {row['rejected']}/{row['screened']} |")
    print()

    # 3. backdoor_verify over seeds
    confirmed, refused, rates, per_method = 0, 0, [], {}
    t = time.perf_counter()
    for seed in range(args.seeds):
        result, _ = threat("backdoor_verify", methods="retrain,finetune,neggrad,neggrad_plus", seed=seed)
        n = result.numbers
        confirmed += n["providers"]["retrain"]["deletion_confirmed"]
        refused += not n["providers"]["none"]["deletion_confirmed"]
        rates.append((n["p"], n["q"], n["tau"], n["false_positive_rate"], n["false_negative_rate"]))
        for method, row in n["providers"].items():
            per_method.setdefault(method, []).append((row["deletion_confirmed"], row["backdoor_success"]))
    p, q, tau, fp, fn = (np.array(v) for v in zip(*rates, strict=True))
    print(f"### backdoor_verify (Athena; owner 5% of the training set, half of it marked; 30 queries; {args.seeds} seeds, "
          f"{time.perf_counter() - t:.0f} s)\n")
    print(f"p (data kept) {p.mean():.2f} (min {p.min():.2f}), q (deleted) {q.mean():.3f} (max {q.max():.3f}), tau {int(tau.min())}-{int(tau.max())} hits; "
          f"computed false positive rate <= {fp.max():.1e}, false negative rate <= {fn.max():.1e}.\n")
    print("| provider | deletion confirmed | backdoor success (mean) |")
    print("| --- | --- | --- |")
    for method, rows in per_method.items():
        print(f"| {method} | {sum(r[0] for r in rows)}/{len(rows)} | {np.mean([r[1] for r in rows]):.1%} |")
    print(f"\nRetraining confirmed in {confirmed}/{args.seeds} seeds; no unlearning refused in {refused}/{args.seeds}.\n")

    # 4. one run each
    for name, params in (("backdoor_removal", {"methods": "retrain,finetune,neggrad,neggrad_plus"}),
                         ("over_unlearning", {"methods": "neggrad,neggrad_plus,retrain"}),
                         ("verification_evasion", {})):
        result, seconds = threat(name, **params)
        print(f"### {name} ({seconds:.0f} s)\n\n{result.conclusion}\n")

    # 5. screening ROC
    t = time.perf_counter()
    pool = attacker_pool(record.train_indices, 0.2, 0)
    rng = np.random.default_rng(11)
    targets = rng.choice(data.n_test, size=args.roc_requests, replace=False)
    null, malicious, benign = None, [], []
    for target in targets:
        request = select_request(model, data, pool, data.x_test[int(target)], data.y_test[int(target)], 10, "cpu")
        random_request = rng.choice(pool, size=10, replace=False)
        for kind, out in ((request, malicious), (random_request, benign)):
            idx = torch.from_numpy(np.sort(kind))
            score, _, null = influence_score(model, record, data, data.x_train[idx], data.y_train[idx], device="cpu", null=null)
            out.append(score)
    roc = roc_from_scores(np.array(malicious), np.array(benign))
    fpr, tpr = roc.fpr, roc.tpr
    print(f"### Screening as a detector ({args.roc_requests} targeted requests vs {args.roc_requests} random requests of 10 samples, "
          f"20 random requests as the reference; {time.perf_counter() - t:.0f} s)\n")
    print(f"ROC AUC {roc.auc:.3f}.\n")
    print("| FPR at most | TPR |")
    print("| --- | --- |")
    for target in (0.01, 0.05, 0.1, 0.2):
        print(f"| {target:.0%} | {tpr[fpr <= target + 1e-12].max():.0%} |")
    m, b = np.array(malicious), np.array(benign)
    print(f"\nAt the default threshold (z > 3): {np.mean(m > 3):.0%} of targeted requests flagged, {np.mean(b > 3):.0%} of random ones "
          f"(false alarms). Crafted accuracy_burn requests: rejected by the content check in every trial above.\n")
    # 6. backdoor_verify on Fashion-MNIST
    root = Path(args.fashion_root)
    if root.is_dir():
        from mu_core.data import DatasetSpec

        t = time.perf_counter()
        fashion = load_dataset(DatasetSpec("fashion-mnist", str(root)))
        f_model, f_record = fit_model(fashion, "mlp", train_size=args.fashion_train_size, device="cpu")
        rows = []
        for seed in range(args.seeds):
            result = run_threat("backdoor_verify", f_model, f_record, params={"methods": "retrain,finetune", "seed": seed}, dataset=fashion,
                                device="cpu")
            rows.append(result.numbers)
        print(f"### backdoor_verify on Fashion-MNIST (mlp on {args.fashion_train_size} samples, test accuracy "
              f"{f_record.metrics['test_acc']:.1%}; {args.seeds} seeds, {time.perf_counter() - t:.0f} s)\n")
        print("| seed | p | q | tau | false positive | false negative | retrain confirmed | finetune confirmed | none refused |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for seed, n in enumerate(rows):
            pr = n["providers"]
            print(f"| {seed} | {n['p']:.2f} | {n['q']:.3f} | {n['tau']} | {n['false_positive_rate']:.1e} | {n['false_negative_rate']:.1e} | "
                  f"{pr['retrain']['deletion_confirmed']} | {pr['finetune']['deletion_confirmed']} | {not pr['none']['deletion_confirmed']} |")
        print()
    print(f"Total {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
