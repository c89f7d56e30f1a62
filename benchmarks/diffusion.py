"""Diffusion benchmark: an overfit class-conditional DDPM on 300 digits, audited with every diffusion attack.

- The DDPM (``ddpm``, MLP denoiser, T = 200) on a seeded subset of 300 bundled digits at two training
  lengths (default 20,000 and 2,000 Adam steps of 64): training time, and every attack's AUC on the
  original and on a model retrained without a random forget set of 100 samples.
- The verdict on known answers: an "unlearned" model that is a copy of the original (must be
  ``not_forgotten``), and the retrained model audited against chance (must not be).
- A whole class retrained away (class 3 of the long model; also ``neggrad`` and ``erasediff``): a
  ``cnn`` trained on all digits labels the samples generated for that class.

Models and reference DDPMs are kept in ``--work`` and reused. Prints markdown tables.
Run from the repository root: ``MU_AUDIT_THREADS=1 .venv/bin/python benchmarks/diffusion.py``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ATTACKS = ["diffusion_loss", "secmi", "pia", "score_norm", "gsa1", "gsa2"]


def cached(path: Path, make):
    """Load the model file at ``path`` if present, else make ``(model, record)`` and save it."""
    from mu_core.models import load_model, save_model

    if path.is_file():
        return load_model(path)
    model, record = make()
    save_model(model, record, path)
    return model, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", default="/tmp/mu_diffusion/bench")
    parser.add_argument("--train-size", type=int, default=300)
    parser.add_argument("--forget-size", type=int, default=100)
    parser.add_argument("--lengths", default="20000,2000", help="training lengths in optimiser steps")
    parser.add_argument("--forget-class", type=int, default=3)
    parser.add_argument("--samples", type=int, default=100, help="samples generated for the forgotten class")
    parser.add_argument("--gsa-references", type=int, default=1)
    args = parser.parse_args()

    import torch

    from mu_core.audit.report import run_audit
    from mu_core.data import load_dataset
    from mu_core.device import configure_threads
    from mu_core.forget import class_request, random_request
    from mu_core.generate import generate_samples, label_share
    from mu_core.train import TrainConfig, fit_model
    from mu_core.unlearn import unlearn

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    threads = configure_threads()
    data = load_dataset("digits")
    steps_per_epoch = -(-args.train_size // 64)
    results: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), torch threads {threads}", "lengths": {}}

    def audit(models, request, label, name):
        started = time.perf_counter()
        rep = run_audit(models, request.indices, attacks=ATTACKS, dataset=data, device="cpu", reference_dir=work / f"refs_{label}",
                        options={"gsa_reference_models": args.gsa_references})
        rep.write(work / f"audit_{label}_{name}")
        return rep.data, time.perf_counter() - started

    long_model = None
    for steps in (int(s) for s in args.lengths.split(",")):
        label = f"{steps // 1000}k" if steps >= 1000 else str(steps)
        epochs = max(1, steps // steps_per_epoch)
        config = TrainConfig(epochs=epochs, batch_size=64, lr=1e-3, seed=0)
        model, record = cached(work / f"original_{label}.safetensors",
                               lambda config=config: fit_model(data, "ddpm", config, train_size=args.train_size, device="cpu"))
        request = random_request(record.train_indices, args.forget_size, seed=0)
        retrained, rrecord = cached(work / f"retrain_{label}.safetensors",
                                    lambda model=model, record=record, request=request: _unlearned(unlearn(
                                        model, record, request.indices, method="retrain", dataset=data, device="cpu")))
        copy_record = record.with_updates(unlearning={"method": "none (a copy of the original)", "params": {},
                                                      "forget_indices": request.indices.tolist()})
        a, a_seconds = audit({"original": (model, record), "unlearned": (copy.deepcopy(model), copy_record),
                              "retrained": (retrained, rrecord)}, request, label, "copy")
        b, b_seconds = audit({"original": (model, record), "unlearned": (retrained, rrecord)}, request, label, "retrain")
        results["lengths"][label] = {
            "steps": epochs * steps_per_epoch, "train_seconds": record.metrics.get("train_seconds"),
            "test_acc": record.metrics.get("test_acc"), "train_loss": record.metrics.get("train_loss"), "test_loss": record.metrics.get("test_loss"),
            "auc": {att: {role: a["attacks"][att].get(role, {}).get("auc") for role in ("original", "retrained")} for att in ATTACKS},
            "tpr1": {att: a["attacks"][att].get("original", {}).get("tpr_at_1pct_fpr") for att in ATTACKS},
            "attack_seconds": a["provenance"]["attack_seconds"],
            "verdict_copy": a["verdict"], "verdict_copy_reason": a["verdict_reason"],
            "verdict_retrain_vs_chance": b["verdict"], "verdict_retrain_reason": b["verdict_reason"],
            "audit_seconds": round(a_seconds + b_seconds, 1),
        }
        if long_model is None:
            long_model = (model, record, label)

    model, record, label = long_model
    cls = args.forget_class
    creq = class_request(record.train_indices, data.y_train.numpy(), cls, seed=0, class_names=data.class_names)
    classifier, crec = fit_model(data, "cnn", device="cpu")
    rows = {}
    for method in ("original", "retrain", "neggrad", "erasediff"):
        if method == "original":
            target, seconds = model, 0.0
        else:
            started = time.perf_counter()
            target, _ = cached(work / f"class{cls}_{method}_{label}.safetensors",
                               lambda method=method: _unlearned(unlearn(model, record, creq.indices, method=method, dataset=data, device="cpu")))
            seconds = time.perf_counter() - started
        samples = generate_samples(target, per_class=args.samples, classes=list(range(data.num_classes)), seed=1, device="cpu")
        per_class = {c: label_share(classifier, samples, c) for c in range(data.num_classes)}
        others = [v for c, v in per_class.items() if c != cls]
        rows[method] = {"forgotten_class_share": per_class[cls], "other_classes_mean_share": sum(others) / len(others), "seconds": round(seconds, 1)}
    results["whole_class"] = {"class": cls, "forget_count": len(creq.indices), "classifier_test_acc": crec.metrics["test_acc"],
                              "samples_per_class": args.samples, "rows": rows}
    (work / "diffusion_benchmark.json").write_text(json.dumps(results, indent=1))
    torch.set_num_threads(threads)
    print_tables(results)


def _unlearned(result):
    return result.model, result.record


def print_tables(results: dict) -> None:
    def f(v):
        return "n/a" if v is None else f"{v:.3f}"

    print(f"Machine: {results['machine']}\n")
    print("| length | steps | train seconds | test acc (diffusion classifier) | train / test denoising loss | verdict: copy of original | verdict: retrain vs chance | audit seconds (both) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, r in results["lengths"].items():
        print(f"| {label} | {r['steps']} | {r['train_seconds']:.0f} | {r['test_acc']:.1%} | {r['train_loss']:.4f} / {r['test_loss']:.4f} | "
              f"{r['verdict_copy']} | {r['verdict_retrain_vs_chance']} | {r['audit_seconds']:.0f} |")
    print()
    labels = list(results["lengths"])
    print("| attack | " + " | ".join(f"{lb}: original AUC | {lb}: TPR@1% FPR | {lb}: retrained AUC" for lb in labels) + " |")
    print("| --- |" + " --- | --- | --- |" * len(labels))
    for att in ATTACKS:
        cells = []
        for lb in labels:
            r = results["lengths"][lb]
            t = r["tpr1"][att]
            cells += [f(r["auc"][att]["original"]), "n/a" if t is None else f"{t:.0%}", f(r["auc"][att]["retrained"])]
        print(f"| {att} | " + " | ".join(cells) + " |")
    wc = results["whole_class"]
    print(f"\nWhole class {wc['class']} ({wc['forget_count']} training samples) forgotten; {wc['samples_per_class']} samples per class; "
          f"digits cnn test accuracy {wc['classifier_test_acc']:.1%}\n")
    print("| model | samples of the forgotten class labelled as it | other classes labelled correctly (mean) | seconds |")
    print("| --- | --- | --- | --- |")
    for method, row in wc["rows"].items():
        print(f"| {method} | {row['forgotten_class_share']:.0%} | {row['other_classes_mean_share']:.0%} | {row['seconds']:.0f} |")


if __name__ == "__main__":
    main()
