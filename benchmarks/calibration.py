"""Calibration of the verdict: how often each answer comes out when the truth is known.

Over independent seeds on an overfit setting (digits ``mlp``, 300 training samples, 100 epochs,
100 random samples forgotten, 4 exact retrains as the reference; see
:mod:`mu_core.audit.calibration`): an independent exact retrain passed as the unlearned model
(``not_forgotten`` at most alpha of the time), the untouched original (``not_forgotten`` in at
least 19 of 20) and weak approximate methods. Also times the bootstrap (issue 13): the
vectorised AUCs against the former loop over resamples, in the same run. Prints markdown for
``BENCHMARKS.md``.

Run from the repository root: ``.venv/bin/python benchmarks/calibration.py [--seeds 20]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def time_bootstrap() -> str:
    """200 resamples of AUC and TPR at 1% / 0.1% FPR for one attack and model, vectorised vs one resample at a time."""
    import numpy as np

    from mu_core.audit.metrics import roc_from_scores
    from mu_core.audit.verdict import auc_fast, resamples, roc_intervals

    rng = np.random.default_rng(0)
    members, nonmembers = rng.normal(0.5, 1, 200), rng.normal(0, 1, 2000)
    idx = resamples(members.size, nonmembers.size, 200, seed=1)
    started = time.perf_counter()
    roc_intervals(members, nonmembers, idx)
    vectorised = time.perf_counter() - started
    started = time.perf_counter()
    for m, n in zip(idx[0], idx[1], strict=True):  # what roc_intervals did before: one AUC and one ROC per resample
        auc_fast(members[m], nonmembers[n])
        roc_from_scores(members[m], nonmembers[n])
    loop = time.perf_counter() - started
    return (f"Bootstrap of one attack on one model (200 members, 2,000 non-members, 200 resamples, AUC and TPR at 1% / 0.1% FPR): "
            f"vectorised {vectorised:.3f} s, one resample at a time {loop:.2f} s ({loop / vectorised:.0f}x).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--train-size", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--forget", type=int, default=100)
    parser.add_argument("--retrains", type=int, default=4)
    parser.add_argument("--margin", type=float, default=0.1)
    parser.add_argument("--attacks", help="comma-separated attacks (default: the audit's default set)")
    parser.add_argument("--weak", default="random_label,l1_sparse", help="weak approximate methods, comma-separated (default presets)")
    args = parser.parse_args()

    import torch

    from mu_core.audit.calibration import calibrate

    print(f"# Verdict calibration ({platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          "a shared machine)\n")
    print(time_bootstrap() + "\n")
    result = calibrate(range(args.seeds), train_size=args.train_size, epochs=args.epochs, forget=args.forget, retrains=args.retrains,
                       weak=tuple(w for w in args.weak.split(",") if w), margin=args.margin,
                       attacks=args.attacks.split(",") if args.attacks else None, progress=lambda f, m: print(f"  {100 * f:5.1f}% {m}", file=sys.stderr))
    s = result.settings
    print(f"Digits {s['arch']}, {s['train_size']} training samples, {s['epochs']} epochs, {s['forget']} random samples forgotten, "
          f"{s['retrains']} exact retrains as the reference, attacks {', '.join(s['attacks'] or ['(default)'])}, alpha {s['alpha']}, margin {s['margin']}, {s['bootstrap']} resamples; "
          f"seeds {result.seeds[0]}..{result.seeds[-1]} ({len(result.seeds)}), {result.seconds:.0f} s.\n")
    print(result.table())
    print("\nPer seed (seed: " + " / ".join(result.verdicts) + "):")
    for j, seed in enumerate(result.seeds):
        print(f"- {seed}: " + " / ".join(result.verdicts[k][j] for k in result.verdicts))


if __name__ == "__main__":
    main()
