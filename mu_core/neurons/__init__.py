"""Neuron-level explanations of what unlearning changed (Captum attributions, CKA, automatic
concept labels). Names are imported on first use, so reading a stored explanation
(:func:`load_explanation`) does not load torch.

>>> from mu_core.neurons import linear_cka, list_labellers   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ExplainResult": "explain",
    "explain_models": "explain",
    "forgotten_classes": "explain",
    "load_explanation": "results",
    "array_key": "results",
    "LayerInfo": "layers",
    "explainable_layers": "layers",
    "layer_outputs": "layers",
    "neuron_activations": "layers",
    "receptive_boxes": "layers",
    "top_activating": "layers",
    "linear_cka": "cka",
    "ProbeSet": "concepts",
    "build_probe_set": "concepts",
    "render_visual_concepts": "concepts",
    "Labeller": "labels",
    "NeuronLabels": "labels",
    "get_labeller": "labels",
    "list_labellers": "labels",
    "register_labeller": "labels",
    "soft_wpmi": "labels",
    "input_attribution": "attributions",
    "layer_conductance": "attributions",
    "neuron_attribution": "attributions",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mu_core.neurons' has no attribute '{name}'")


def __dir__() -> list[str]:
    return __all__
