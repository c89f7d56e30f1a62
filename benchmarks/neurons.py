"""Neuron-explanation benchmark: whole-class forgetting by retraining, on digits and Fashion-MNIST.

For each dataset: train the ``cnn`` (Fashion-MNIST on a seeded subset), forget one class by
retraining from scratch without it, and explain (original vs retrained, the retrained model in
the unlearned slot as ``python -m mu_core explain --unlearned retrained.safetensors`` would).
Prints the forgotten-class neuron counts before/after per layer, the final-layer label
agreement, the explanation time, and the Neurons page's first-view time: the engine call it
makes (reading the stored explanation) and AppTest runs of ``pages/6_Neurons.py`` (cold: the
first run in this process, with its imports; warm: later runs).

Run from the repository root: ``MU_AUDIT_THREADS=1 .venv/bin/python benchmarks/neurons.py``.
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


def page_times(home: Path, case_id: str, runs: int = 3) -> list[float]:
    from streamlit.testing.v1 import AppTest

    times = []
    for _ in range(runs):
        at = AppTest.from_file(str(ROOT / "pages" / "6_Neurons.py"), default_timeout=120)
        at.query_params["case"] = case_id  # a session opens a case only by its URL
        started = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - started)
        if at.exception or at.error:
            raise RuntimeError(f"page failed: {at.exception or [e.value for e in at.error]}")
        if not at.dataframe:
            raise RuntimeError("page showed no results")
    return times


def run(name: str, dataset: str, root: str | None, train_size: int | None, forget_class: int, epochs: int | None) -> dict:
    from mu_core.case import CaseStore
    from mu_core.data import DatasetSpec, load_dataset
    from mu_core.forget import class_request
    from mu_core.models.io import read_record
    from mu_core.neurons import explain_models, load_explanation
    from mu_core.workflow import case_explain, case_forget_request, case_retrain, case_set_forget, case_train, load_case_model

    store = CaseStore()
    case = store.create(f"neurons benchmark {name}")
    started = time.perf_counter()
    case_train(case, dataset, "cnn", data_root=root, train_size=train_size, epochs=epochs)
    train_s = time.perf_counter() - started
    record = read_record(case.file("original"))
    labels = load_dataset(DatasetSpec(dataset, root)).y_train.numpy()
    case_set_forget(case, class_request(record.train_indices, labels, forget_class, class_names=record.class_names))
    started = time.perf_counter()
    case_retrain(case)
    retrain_s = time.perf_counter() - started
    original, retrained = load_case_model(case, "original"), load_case_model(case, "retrained")
    started = time.perf_counter()
    result = explain_models({"original": original, "unlearned": retrained, "retrained": retrained}, case_forget_request(case).indices)
    explain_s = time.perf_counter() - started
    started = time.perf_counter()
    case_explain(case)
    case_explain_s = time.perf_counter() - started
    started = time.perf_counter()
    load_explanation(case.path("neurons"))
    load_s = time.perf_counter() - started
    data = result.data
    forgotten = set(data["forgotten_concept_neurons"]["classes"])
    per_layer = {
        layer["name"]: tuple(sum(1 for n in data["neurons"] if n["model"] == role and n["layer"] == layer["name"] and n["label"] in forgotten)
                             for role in ("original", "unlearned"))
        for layer in data["layers"]
    }
    return {
        "name": name, "classes": sorted(forgotten), "counts": data["forgotten_concept_neurons"], "per_layer": per_layer,
        "agreement": data["final_layer_label_agreement"], "agreement_after": data["final_layer_label_agreement_by_model"]["unlearned"],
        "test_acc": {"original": original[1].metrics["test_acc"], "retrained": retrained[1].metrics["test_acc"]},
        "n_train": len(record.train_indices), "train_s": train_s, "retrain_s": retrain_s, "explain_s": explain_s,
        "case_explain_s": case_explain_s, "load_s": load_s, "page_s": page_times(store.home, case.id),
        "labelled": {role: sum(1 for n in data["neurons"] if n["model"] == role and n["label"]) for role in ("original", "unlearned")},
        "neurons": sum(layer["units"] for layer in data["layers"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fashion-root", default=str(ROOT.parent / "shared" / "datasets" / "fashion-mnist"))
    parser.add_argument("--fashion-train-size", type=int, default=10000)
    parser.add_argument("--fashion-epochs", type=int, default=5)
    parser.add_argument("--digits-class", type=int, default=3)
    parser.add_argument("--fashion-class", type=int, default=0)
    parser.add_argument("--skip-fashion", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("MU_AUDIT_HOME", tempfile.mkdtemp(prefix="mu_neurons_bench_"))
    os.environ.setdefault("MU_AUDIT_DEVICE", "cpu")

    import torch

    load_before = os.getloadavg()[0]
    rows = [run("digits", "digits", None, None, args.digits_class, None)]
    if not args.skip_fashion:
        rows.append(run("fashion-mnist", "fashion-mnist", args.fashion_root, args.fashion_train_size, args.fashion_class, args.fashion_epochs))
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print("\n| dataset | forgotten class | train samples | test acc orig / retrained | forgotten-class neurons before | after |"
          " per layer (before→after) | labelled neurons orig / after (of all) | final-layer agreement orig / after |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        layers = ", ".join(f"{k} {a}→{b}" for k, (a, b) in r["per_layer"].items())
        print(f"| {r['name']} | {', '.join(r['classes'])} | {r['n_train']} | {r['test_acc']['original']:.2%} / {r['test_acc']['retrained']:.2%} "
              f"| {r['counts']['before']} | {r['counts']['after']} | {layers} | {r['labelled']['original']} / {r['labelled']['unlearned']} "
              f"(of {r['neurons']}) | {r['agreement']:.0%} / {r['agreement_after']:.0%} |")
    print("\n| dataset | train s | retrain s | explain s (3 models) | case_explain s | first view: read results s | page AppTest runs s (cold, warm, warm) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['name']} | {r['train_s']:.1f} | {r['retrain_s']:.1f} | {r['explain_s']:.1f} | {r['case_explain_s']:.1f} | {r['load_s']:.3f} "
              f"| {', '.join(f'{t:.2f}' for t in r['page_s'])} |")


if __name__ == "__main__":
    main()
