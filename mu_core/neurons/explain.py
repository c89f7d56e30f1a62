"""What unlearning changed inside the model, neuron by neuron, and whether the forgotten concept
is still represented.

:func:`explain_models` takes the original model and the unlearned and/or retrained one, and for
every explained layer measures per-neuron activation statistics on forget, retain and test
data, ranks neurons by how much unlearning changed them, compares representations by linear
CKA, labels each model's neurons on its own (see :mod:`mu_core.neurons.labels`), finds each
neuron's top-activating examples, and computes Captum attributions for a few forget samples.
The result writes ``neurons.json`` (the contract of ``python -m mu_core explain``),
``neurons.npz`` (arrays for the Neurons page) and heatmap PNGs.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._types import Progress, report
from ..case import atomic_write_bytes, atomic_write_json
from ..errors import AuditInputError
from .attributions import INPUT_METHODS, NEURON_METHODS, input_attribution, layer_conductance, neuron_attribution
from .cka import linear_cka
from .concepts import build_probe_set
from .heatmaps import attribution_rgb, image_rgb, png_grid
from .labels import Labeller, NeuronLabels, get_labeller, labels_agree
from .layers import explainable_layers, layer_outputs, neuron_activations, receptive_boxes, resolve_layers, top_activating
from .results import array_key

__all__ = ["ExplainResult", "explain_models", "forgotten_classes"]

ROLES = ("original", "unlearned", "retrained")
SPLITS = ("forget", "retain", "test")
CKA_PAIRS = (("original", "unlearned"), ("unlearned", "retrained"), ("original", "retrained"))
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ExplainResult:
    """``data``: the JSON-ready summary (``neurons.json``); ``arrays``: named NumPy arrays."""

    data: dict
    arrays: dict[str, np.ndarray]

    def write(self, out_dir: str | Path) -> Path:
        """Write ``neurons.json``, ``neurons.npz`` and the heatmap PNGs into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, png in _heatmap_pngs(self).items():
            atomic_write_bytes(out / name, png)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **self.arrays)
        atomic_write_bytes(out / "neurons.npz", buffer.getvalue())
        return atomic_write_json(out / "neurons.json", self.data)


def forgotten_classes(train_labels: np.ndarray, forget_labels: np.ndarray, class_names: Sequence[str], share: float = 0.5) -> list[str]:
    """Classes of which the forget set holds at least ``share`` of the training samples."""
    names = []
    for cls, name in enumerate(class_names):
        total = int(np.sum(train_labels == cls))
        if total and np.sum(forget_labels == cls) / total >= share:
            names.append(str(name))
    return names


def _sample(indices: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    indices = np.asarray(indices, dtype=np.int64)
    return np.sort(rng.choice(indices, size=limit, replace=False)) if len(indices) > limit else indices


def explain_models(
    models: Mapping[str, tuple[nn.Module, object]],
    forget_indices: np.ndarray,
    *,
    layers: Sequence[str] | None = None,
    labeller: Labeller | str = "selectivity",
    compare_labeller: Labeller | str | None = None,
    max_samples: int = 500,
    per_class: int = 40,
    per_visual: int = 24,
    top_k: int = 6,
    n_attr_samples: int = 4,
    n_top_neurons: int = 3,
    forgotten_share: float = 0.5,
    seed: int = 0,
    progress: Progress | None = None,
) -> ExplainResult:
    """Explain ``models`` (``{"original": (model, record), "unlearned": ..., "retrained": ...}``;
    the original and at least one other are required) on a forget request.

    ``layers`` names conv/linear modules (default: every one, the output layer included).
    Forget, retain and test data are each capped at ``max_samples`` seeded samples; class
    probes take ``per_class`` test images per class, visual probes ``per_visual`` renders per
    concept. ``change`` of a neuron (original and unlearned share their units) is the mean
    absolute change of its activation on the forget samples, in units of the original's
    standard deviation over all sampled data. A retrained model's neurons do not correspond to
    the original's, so it is compared by label counts and CKA only.

    ``compare_labeller`` (e.g. the ``open_clip`` foundation-model labeller next to the default
    ``selectivity``) labels every neuron a second time: each neuron then has ``compared`` (that
    labelling and whether the two agree, see :func:`mu_core.neurons.labels.labels_agree`) and
    ``label_agreement`` sums up per model and layer.
    """
    started = time.perf_counter()
    from ..data import DatasetSpec, load_dataset

    if "original" not in models:
        raise AuditInputError("Explaining what unlearning changed needs the original model.")
    roles = [role for role in ROLES if role in models]
    if len(roles) < 2:
        raise AuditInputError("Give the unlearned model, the retrained model, or both, besides the original.")
    unknown = set(models) - set(ROLES)
    if unknown:
        raise AuditInputError(f"Unknown model role(s) {', '.join(sorted(unknown))}; use original, unlearned, retrained.")
    labeller = get_labeller(labeller) if isinstance(labeller, str) else labeller
    compare = get_labeller(compare_labeller) if isinstance(compare_labeller, str) else compare_labeller
    if compare is not None and compare.name == labeller.name:
        raise AuditInputError(f"The comparison labeller is the labeller itself ({labeller.name}); choose another one.")
    original, record = models["original"]
    for role in roles:
        other = models[role][1]
        if tuple(other.class_names) != tuple(record.class_names) or tuple(other.in_shape) != tuple(record.in_shape):
            raise AuditInputError(f"The {role} model has other classes or another input shape than the original; give models of one task.")
    data = load_dataset(DatasetSpec.from_dict(record.dataset))
    class_names = tuple(str(n) for n in record.class_names)
    available = explainable_layers(original, record.in_shape)
    chosen = resolve_layers(available, layers)
    output_layer = next((layer for layer in available if layer.is_output), None)
    label_layers = chosen + ([output_layer] if output_layer and output_layer not in chosen else [])
    for role in roles:
        theirs = {layer.name: layer.units for layer in explainable_layers(models[role][0], record.in_shape)}
        missing = [layer.name for layer in label_layers if theirs.get(layer.name) != layer.units]
        if missing:
            raise AuditInputError(f"The {role} model has no layer {missing[0]} shaped like the original's; give models of one architecture.")

    forget_indices = np.unique(np.asarray(forget_indices, dtype=np.int64))
    if len(forget_indices) == 0:
        raise AuditInputError("The forget request is empty.")
    rng = np.random.default_rng(seed)
    train_indices = np.asarray(record.train_indices, dtype=np.int64)
    split_index = {
        "forget": _sample(forget_indices, max_samples, rng),
        "retain": _sample(np.setdiff1d(train_indices, forget_indices), max_samples, rng),
        "test": _sample(np.arange(data.n_test), max_samples, rng),
    }
    split_x = {
        "forget": data.x_train[torch.from_numpy(split_index["forget"])],
        "retain": data.x_train[torch.from_numpy(split_index["retain"])],
        "test": data.x_test[torch.from_numpy(split_index["test"])],
    }
    bounds = np.cumsum([0] + [len(split_x[s]) for s in SPLITS])
    rows = {s: slice(int(bounds[i]), int(bounds[i + 1])) for i, s in enumerate(SPLITS)}
    pool_x = torch.cat([split_x[s] for s in SPLITS])
    probes = build_probe_set(data.x_test.numpy(), data.y_test.numpy(), class_names, per_class=per_class, per_visual=per_visual, seed=seed)
    x_all = torch.cat([pool_x, torch.from_numpy(probes.images)])
    probe_rows = slice(len(pool_x), len(x_all))

    y_train = data.y_train.numpy()
    forgotten = forgotten_classes(y_train[train_indices], y_train[forget_indices], class_names, forgotten_share)
    arrays: dict[str, np.ndarray] = {
        "pool_images": (pool_x.numpy() * 255).round().astype(np.uint8),
        "pool_index": np.concatenate([split_index[s] for s in SPLITS]),
        "pool_split": np.concatenate([np.full(len(split_index[s]), i) for i, s in enumerate(SPLITS)]),
    }
    neurons: list[dict] = []
    cka: dict[str, dict] = {}
    labels_by: dict[tuple[str, str], list[str | None]] = {}
    agreement_by: dict[str, dict[str, dict]] = {}
    label_seconds = {labeller.name: 0.0, **({compare.name: 0.0} if compare else {})}
    change_by: dict[str, np.ndarray] = {}
    steps = len(label_layers) * len(roles)
    step = 0
    for layer in label_layers:
        explained = layer in chosen
        acts: dict[str, np.ndarray] = {}
        flat: dict[str, torch.Tensor] = {}
        for role in roles:
            model = models[role][0]
            report(progress, 0.7 * step / steps, f"{layer.name}: {role} model")
            step += 1
            out = layer_outputs(model, x_all, [layer.name])[layer.name]
            act = neuron_activations(out)
            acts[role] = act
            tick = time.perf_counter()
            result = labeller.label(act[probe_rows], probes)
            label_seconds[labeller.name] += time.perf_counter() - tick
            labels_by[(role, layer.name)] = result.labels
            arrays[array_key("label_score", role, layer.name)] = result.scores.astype(np.float32)
            if not explained:
                continue
            second = None
            if compare is not None:
                report(progress, 0.7 * (step - 0.5) / steps, f"{layer.name}: {role} model, {compare.name} labels")
                tick = time.perf_counter()
                second = compare.label(act[probe_rows], probes)
                label_seconds[compare.name] += time.perf_counter() - tick
            flat[role] = out[: len(pool_x)].reshape(len(pool_x), -1)
            arrays[array_key("stats_mean", role, layer.name)] = np.stack([act[rows[s]].mean(axis=0) for s in SPLITS]).astype(np.float32)
            arrays[array_key("stats_std", role, layer.name)] = np.stack([act[rows[s]].std(axis=0) for s in SPLITS]).astype(np.float32)
            order, positions = top_activating(out[: len(pool_x)], top_k)
            arrays[array_key("top_idx", role, layer.name)] = order
            if layer.kind == "conv":
                boxes = receptive_boxes(model, layer.name, pool_x[order.ravel()], np.repeat(np.arange(layer.units), order.shape[1]),
                                        positions.reshape(-1, 2))
                arrays[array_key("top_box", role, layer.name)] = boxes.reshape(*order.shape, 4)
            for i in range(layer.units):
                entry = {"model": role, "layer": layer.name, "index": i, **_label_entry(result, i, probes), "change": None}
                if second is not None:
                    agree = labels_agree(result.labels[i], result.concepts[i] if result.concepts else None, second.labels[i],
                                         second.concepts[i] if second.concepts else None)
                    entry["compared"] = {"labeller": compare.name, **_label_entry(second, i, probes), "agree": agree}
                neurons.append(entry)
            if second is not None:
                verdicts = [n["compared"]["agree"] for n in neurons[-layer.units:]]
                both = sum(v is not None for v in verdicts)
                agreed = sum(v is True for v in verdicts)
                agreement_by.setdefault(role, {})[layer.name] = {"labelled_by_both": both, "agree": agreed,
                                                                 "share": round(agreed / both, 4) if both else None}
        if not explained:
            continue
        if "unlearned" in acts:
            scale = acts["original"][: len(pool_x)].std(axis=0) + 1e-8
            change = np.abs(acts["unlearned"][rows["forget"]] - acts["original"][rows["forget"]]).mean(axis=0) / scale
            change_retain = np.abs(acts["unlearned"][rows["retain"]] - acts["original"][rows["retain"]]).mean(axis=0) / scale
            arrays[array_key("change", layer.name)] = change.astype(np.float32)
            arrays[array_key("change_retain", layer.name)] = change_retain.astype(np.float32)
            change_by[layer.name] = change
            for entry in neurons:
                if entry["layer"] == layer.name and entry["model"] in ("original", "unlearned"):
                    entry["change"] = round(float(change[entry["index"]]), 4)
        cka[layer.name] = {
            f"{a}_vs_{b}": {s: round(linear_cka(flat[a][rows[s]].numpy(), flat[b][rows[s]].numpy()), 4) for s in ("forget", "retain")}
            for a, b in CKA_PAIRS if a in flat and b in flat
        }

    def count(role: str) -> int | None:
        if role not in models or not forgotten:
            return None
        return sum(1 for layer in chosen for label in labels_by[(role, layer.name)] if label in forgotten)

    def agreement(role: str) -> float | None:
        if output_layer is None:
            return None
        labels = labels_by[(role, output_layer.name)]
        return round(sum(1 for i, label in enumerate(labels) if label == class_names[i]) / len(labels), 4)

    report(progress, 0.7, "Attributions")
    attributions = _attributions(models, roles, chosen, split_x, split_index, data, change_by, n_attr_samples, n_top_neurons, arrays,
                                 progress)
    label_counts = {
        role: {layer.name: _counts(labels_by[(role, layer.name)]) for layer in chosen} for role in roles
    }
    data_out = {
        "version": FORMAT_VERSION,
        "dataset": record.dataset,
        "arch": record.arch,
        "in_shape": list(record.in_shape),
        "class_names": list(class_names),
        "models": roles,
        "layers": [{"name": layer.name, "kind": layer.kind, "units": layer.units, "is_output": layer.is_output} for layer in chosen],
        "forget_count": len(forget_indices),
        "forgotten_classes": forgotten,
        "samples": {s: len(split_index[s]) for s in SPLITS},
        "cka": cka,
        "neurons": neurons,
        "final_layer_label_agreement": agreement("original"),
        "final_layer_label_agreement_by_model": {role: agreement(role) for role in roles},
        "forgotten_concept_neurons": {
            "before": count("original"),
            "after": count("unlearned"),
            "retrained": count("retrained"),
            "classes": forgotten,
            **({} if forgotten else {"note": f"no class has {forgotten_share:.0%} or more of its training samples in the forget set"}),
        },
        "label_counts": label_counts,
        "labeller": labeller.name,
        "compared_labeller": compare.name if compare else None,
        "label_agreement": agreement_by if compare else None,
        "labeller_settings": {lab.name: _settings(lab) for lab in (labeller, compare) if lab is not None},
        "label_seconds": {name: round(seconds, 3) for name, seconds in label_seconds.items()},
        "concepts": [{"name": name, "family": family} for name, family in zip(probes.names, probes.families, strict=True)],
        "attributions": attributions,
        "settings": {"max_samples": max_samples, "per_class": per_class, "per_visual": per_visual, "top_k": top_k,
                     "n_attr_samples": n_attr_samples, "n_top_neurons": n_top_neurons, "forgotten_share": forgotten_share,
                     "seed": seed, **_settings(labeller)},
    }
    data_out["heatmaps"] = sorted(_heatmap_names(data_out))
    data_out["seconds"] = round(time.perf_counter() - started, 2)
    report(progress, 1.0, "Done")
    return ExplainResult(data_out, arrays)


def _settings(labeller: Labeller) -> dict:
    """A labeller's plain settings (numbers and strings), for the record."""
    settings = {k: v for k, v in vars(labeller).items() if isinstance(v, (int, float, str)) and not k.startswith("_")}
    size = getattr(labeller, "vocabulary_size", None)
    return {**settings, **({"vocabulary_size": size} if size is not None else {})}


def _label_entry(result: NeuronLabels, i: int, probes) -> dict:
    """One neuron's label, family, score and p-value, with its best concepts and description
    when the labeller ranks a vocabulary (a concept outside the probe set is of family ``vocabulary``)."""
    label = result.labels[i]
    entry = {"label": label, "family": (probes.family_of(label) if label in probes.names else "vocabulary") if label else None,
             "score": round(float(result.scores[i]), 4),
             "p_value": None if np.isnan(result.p_values[i]) else float(f"{result.p_values[i]:.3g}")}
    if result.concepts is not None:
        entry["concepts"] = [{"name": name, "score": score} for name, score in result.concepts[i]]
        entry["description"] = result.descriptions[i] if result.descriptions else None
    return entry


def _counts(labels: list[str | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for label in labels:
        key = label or "(unlabelled)"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _attributions(models, roles, chosen, split_x, split_index, data, change_by, n_samples, n_top, arrays, progress) -> dict:
    """Integrated Gradients and saliency per model, LayerConductance per layer, and neuron
    attributions for the most-changed neurons (by the original's forget-vs-retain contrast when
    there is no unlearned model), on the first ``n_samples`` sampled forget images."""
    x = split_x["forget"][:n_samples]
    sample_index = split_index["forget"][:n_samples]
    targets = data.y_train[torch.from_numpy(sample_index)]
    arrays["attr_x"] = x.numpy().astype(np.float32)
    for role in roles:
        model = models[role][0]
        for method in INPUT_METHODS:
            arrays[array_key("attr", method, role)] = input_attribution(model, x, targets, method).astype(np.float32)
        for layer in chosen:
            arrays[array_key("lc", role, layer.name)] = layer_conductance(model, layer.name, x, targets).astype(np.float32)
    top_neurons: dict[str, list[int]] = {}
    shared = [r for r in ("original", "unlearned") if r in roles]
    for li, layer in enumerate(chosen):
        report(progress, 0.75 + 0.25 * li / max(len(chosen), 1), f"Neuron attributions: {layer.name}")
        if layer.name in change_by:
            ranking = np.argsort(-change_by[layer.name])
        else:
            contrast = arrays[array_key("stats_mean", "original", layer.name)]
            ranking = np.argsort(-(contrast[0] - contrast[1]))
        top = [int(i) for i in ranking[:n_top]]
        top_neurons[layer.name] = top
        for role in shared:
            model = models[role][0]
            for method in NEURON_METHODS:
                maps = [[neuron_attribution(model, layer.name, n, x[s], method=method, target=int(targets[s])) for s in range(len(x))]
                        for n in top]
                arrays[array_key("nattr", method, role, layer.name)] = np.asarray(maps, dtype=np.float32).reshape(len(top), len(x), *x.shape[2:])
    return {"samples": [int(i) for i in sample_index], "split": "forget", "targets": [int(t) for t in targets],
            "input_methods": list(INPUT_METHODS), "neuron_methods": list(NEURON_METHODS), "neuron_models": shared,
            "top_neurons": top_neurons}


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _heatmap_names(data: dict) -> list[str]:
    attr = data["attributions"]
    names = [f"attributions_sample{i}.png" for i in attr["samples"]]
    names += [f"neuron_{_safe(layer)}_{top[0]}.png" for layer, top in attr["top_neurons"].items() if top and attr["neuron_models"]]
    return names


def _heatmap_pngs(result: ExplainResult) -> dict[str, bytes]:
    """Per forget sample: input, Integrated Gradients and saliency under each model; per layer:
    the most-changed neuron's NeuronConductance and NeuronIntegratedGradients on every sample."""
    data, arrays = result.data, result.arrays
    attr = data["attributions"]
    pngs: dict[str, bytes] = {}
    for s, index in enumerate(attr["samples"]):
        cells = [[image_rgb(arrays["attr_x"][s]), *(attribution_rgb(arrays[array_key("attr", m, role)][s]) for m in attr["input_methods"])]
                 for role in data["models"]]
        pngs[f"attributions_sample{index}.png"] = png_grid(cells, data["models"], ["input", *attr["input_methods"]])
    for layer, top in attr["top_neurons"].items():
        if not top or not attr["neuron_models"]:
            continue
        cells, titles = [], []
        for role in attr["neuron_models"]:
            for method in attr["neuron_methods"]:
                maps = arrays[array_key("nattr", method, role, layer)][0]
                cells.append([attribution_rgb(m) for m in maps])
                titles.append(f"{role} {method.replace('neuron_', '').replace('integrated_gradients', 'IG')}")
        cells.insert(0, [image_rgb(img) for img in arrays["attr_x"]])
        titles.insert(0, "input")
        pngs[f"neuron_{_safe(layer)}_{top[0]}.png"] = png_grid(cells, titles, [f"sample {i}" for i in attr["samples"]])
    return pngs
