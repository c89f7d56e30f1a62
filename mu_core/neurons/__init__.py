"""Neuron-level explanations of what unlearning changed (Captum attributions, CKA, automatic
concept labels). Names are imported on first use, so reading a stored explanation
(:func:`load_explanation`) does not load torch.

>>> from mu_core.neurons import linear_cka, list_labellers   # doctest: +SKIP
"""

from __future__ import annotations

from .._lazy import lazy_exports

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
    "describe_concepts": "labels",
    "labels_agree": "labels",
    "OpenClipLabeller": "labels",
    "SelectivityLabeller": "labels",
    "load_clip": "foundation",
    "read_vocabulary": "foundation",
    "configured_clip": "foundation",
    "input_attribution": "attributions",
    "layer_conductance": "attributions",
    "neuron_attribution": "attributions",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
