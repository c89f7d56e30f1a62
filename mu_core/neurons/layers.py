"""Which layers to explain, what their neurons do on data, and where a neuron looks.

A *neuron* is a unit of a linear layer or a channel of a convolutional layer. Activations are
the layer module's output (before any non-linearity that follows it); a channel is summarised
by its mean over positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import AuditInputError

__all__ = [
    "LayerInfo",
    "explainable_layers",
    "layer_outputs",
    "neuron_activations",
    "receptive_boxes",
    "resolve_layers",
    "top_activating",
]


@dataclass(frozen=True)
class LayerInfo:
    """A layer we can explain: its name in ``model.named_modules()``, kind and neuron count."""

    name: str
    kind: str  # "conv" or "linear"
    units: int
    is_output: bool = False


def explainable_layers(model: nn.Module, in_shape: Sequence[int]) -> list[LayerInfo]:
    """Every conv/linear layer in the order the forward pass runs them; the one whose output is
    the model's output (the logits) is marked ``is_output``."""
    candidates = {name: module for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))}
    order: list[str] = []
    outputs: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in candidates.items():
        def hook(_m, _i, out, name=name):
            if name not in outputs:
                order.append(name)
            outputs[name] = out
        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            logits = model(torch.zeros(1, *in_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    layers = []
    for name in order:
        module = candidates[name]
        kind = "conv" if isinstance(module, nn.Conv2d) else "linear"
        units = module.out_channels if kind == "conv" else module.out_features
        is_output = outputs[name].shape == logits.shape and torch.equal(outputs[name], logits)
        layers.append(LayerInfo(name, kind, int(units), bool(is_output)))
    return layers


def resolve_layers(available: list[LayerInfo], wanted: Sequence[str] | None) -> list[LayerInfo]:
    """The layers named in ``wanted`` (all of ``available`` when ``None`` or empty)."""
    if not wanted:
        return list(available)
    by_name = {layer.name: layer for layer in available}
    missing = [name for name in wanted if name not in by_name]
    if missing:
        raise AuditInputError(f"No conv/linear layer named {', '.join(missing)}; choose from: {', '.join(by_name)}.")
    return [by_name[name] for name in dict.fromkeys(wanted)]


@torch.no_grad()
def layer_outputs(model: nn.Module, x: torch.Tensor, names: Sequence[str], *, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """The outputs of the named modules on ``x`` (CPU float tensors, one row per sample)."""
    modules = dict(model.named_modules())
    collected: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    hooks = [modules[name].register_forward_hook(lambda _m, _i, out, name=name: collected[name].append(out.detach().float().cpu()))
             for name in names]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for start in range(0, len(x), batch_size):
            model(x[start : start + batch_size].to(device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {name: torch.cat(parts) if parts else torch.empty(0) for name, parts in collected.items()}


def neuron_activations(outputs: torch.Tensor) -> np.ndarray:
    """One number per sample and neuron: the unit's value, or a channel's mean over positions.

    Returns an array of shape ``(n_samples, n_neurons)``.
    """
    if outputs.ndim == 4:
        outputs = outputs.mean(dim=(2, 3))
    return outputs.reshape(len(outputs), -1).numpy()


def top_activating(outputs: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each neuron, the ``k`` samples on which it responds most, and where.

    Linear units are ranked by their value; channels by their peak over positions (so a crop
    around the peak shows what the channel detects). Returns ``(indices, positions)`` of shapes
    ``(n_neurons, k)`` and ``(n_neurons, k, 2)`` (row, column of the peak; zeros for linear units).
    """
    k = min(k, len(outputs))
    if outputs.ndim == 4:
        n, c, h, w = outputs.shape
        flat = outputs.reshape(n, c, h * w)
        peak, where = flat.max(dim=2)  # (n, c)
        order = peak.argsort(dim=0, descending=True)[:k].T  # (c, k)
        spots = where.T.gather(1, order)  # (c, k)
        positions = torch.stack([spots // w, spots % w], dim=-1)
        return order.numpy(), positions.numpy()
    flat = outputs.reshape(len(outputs), -1)
    order = flat.argsort(dim=0, descending=True)[:k].T
    return order.numpy(), np.zeros((*order.shape, 2), dtype=np.int64)


def receptive_boxes(model: nn.Module, layer: str, x: torch.Tensor, channels: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The input region each (sample, channel, position) of a conv layer depends on.

    The box is the bounding box of the input pixels with a non-zero gradient of that activation:
    the effective receptive field on that very sample (through max-pooling it follows the pooled
    maximum, so it can be smaller than the theoretical field). Samples are independent in eval
    mode, so one backward pass serves the whole batch. ``x`` is ``(n, C, H, W)``; ``channels``
    ``(n,)``; ``positions`` ``(n, 2)``. Returns ``(n, 4)`` boxes ``(top, left, bottom, right)``,
    bottom/right exclusive; the whole image where no pixel matters.
    """
    module = dict(model.named_modules())[layer]
    captured: list[torch.Tensor] = []
    hook = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    inputs = x.detach().to(device).clone().requires_grad_(True)
    try:
        model(inputs)
    finally:
        hook.remove()
        model.train(was_training)
    out = captured[0]
    rows = torch.arange(len(x), device=device)
    ch = torch.as_tensor(channels, device=device)
    pos = torch.as_tensor(positions, device=device)
    (grad,) = torch.autograd.grad(out[rows, ch, pos[:, 0], pos[:, 1]].sum(), inputs)  # leaves the weights' .grad alone
    footprint = (grad.abs().sum(dim=1) > 0).cpu().numpy()  # (n, H, W)
    boxes = np.zeros((len(x), 4), dtype=np.int64)
    height, width = footprint.shape[1:]
    for i, mask in enumerate(footprint):
        ys, xs = np.nonzero(mask)
        boxes[i] = (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) if len(ys) else (0, 0, height, width)
    return boxes
