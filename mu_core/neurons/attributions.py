"""Attributions with Captum (Kokhlikyan et al. 2020): which input pixels, and which neurons of a
layer, a prediction or a neuron depends on.

* :func:`input_attribution`: Integrated Gradients (Sundararajan et al. 2017, black baseline) or
  Saliency (|gradient|, Simonyan et al. 2014) of a class logit, summed over colour channels.
* :func:`layer_conductance`: Captum's LayerConductance (Dhamdhere et al. 2019): each neuron's
  share of the class logit; a channel's share is summed over its positions.
* :func:`neuron_attribution`: NeuronConductance or NeuronIntegratedGradients for one neuron; a
  channel is represented by its position of peak activation on that sample.

Every function works on a copy-free eval-mode model and returns NumPy arrays.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ..errors import AuditInputError

__all__ = ["INPUT_METHODS", "NEURON_METHODS", "input_attribution", "layer_conductance", "neuron_attribution"]

INPUT_METHODS = ("integrated_gradients", "saliency")
NEURON_METHODS = ("neuron_conductance", "neuron_integrated_gradients")
N_STEPS = 32


@contextmanager
def _eval(model: nn.Module) -> Iterator[nn.Module]:
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float32)
    return x.unsqueeze(0) if x.ndim == 3 else x


def input_attribution(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor, method: str = "integrated_gradients") -> np.ndarray:
    """Per-pixel attribution of logit ``target`` for images ``x`` (``(C, H, W)`` or ``(n, C, H, W)``).

    Returns ``(n, H, W)``: channel sums (signed for Integrated Gradients, non-negative for Saliency).
    """
    from captum.attr import IntegratedGradients, Saliency

    x = _as_batch(x)
    with _eval(model):
        if method == "integrated_gradients":
            attr = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=N_STEPS)
        elif method == "saliency":
            attr = Saliency(model).attribute(x.clone().requires_grad_(True), target=target, abs=True)
        else:
            raise AuditInputError(f"Unknown attribution method '{method}'; choose one of: {', '.join(INPUT_METHODS)}.")
    return attr.detach().sum(dim=1).numpy()


def layer_conductance(model: nn.Module, layer: str, x: torch.Tensor, target: int | torch.Tensor) -> np.ndarray:
    """LayerConductance of each neuron of ``layer`` for logit ``target``: ``(n, n_neurons)``."""
    from captum.attr import LayerConductance

    x = _as_batch(x)
    module = dict(model.named_modules())[layer]
    with _eval(model):
        attr = LayerConductance(model, module).attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=N_STEPS)
    attr = attr.detach()
    return (attr.sum(dim=(2, 3)) if attr.ndim == 4 else attr).numpy()


def _peak_selector(model: nn.Module, module: nn.Module, x: torch.Tensor, neuron: int) -> int | tuple[int, int, int]:
    captured: list[torch.Tensor] = []
    hook = module.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        hook.remove()
    out = captured[0]
    if out.ndim == 2:
        return int(neuron)
    width = out.shape[3]
    spot = int(out[0, neuron].flatten().argmax())
    return (int(neuron), spot // width, spot % width)


def neuron_attribution(model: nn.Module, layer: str, neuron: int, x: torch.Tensor, *, method: str = "neuron_conductance",
                       target: int | None = None) -> np.ndarray:
    """Per-pixel attribution of one neuron of ``layer`` for a single image ``x``: ``(H, W)``.

    NeuronConductance splits the conductance of ``target``'s logit through the neuron over the
    pixels (``target`` defaults to the predicted class); NeuronIntegratedGradients integrates the
    gradient of the neuron's own value.
    """
    from captum.attr import NeuronConductance, NeuronIntegratedGradients

    x = _as_batch(x)[:1]
    module = dict(model.named_modules())[layer]
    with _eval(model):
        selector = _peak_selector(model, module, x, neuron)
        baselines = torch.zeros_like(x)
        if method == "neuron_conductance":
            if target is None:
                with torch.no_grad():
                    target = int(model(x).argmax(1))
            attr = NeuronConductance(model, module).attribute(x, selector, baselines=baselines, target=target, n_steps=N_STEPS)
        elif method == "neuron_integrated_gradients":
            attr = NeuronIntegratedGradients(model, module).attribute(x, selector, baselines=baselines, n_steps=N_STEPS)
        else:
            raise AuditInputError(f"Unknown neuron attribution '{method}'; choose one of: {', '.join(NEURON_METHODS)}.")
    return attr.detach().sum(dim=1)[0].numpy()
