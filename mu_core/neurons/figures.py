"""Plotly figures and image helpers for the Neurons page, built from a stored explanation
(``neurons.json`` + ``neurons.npz``); no torch."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go

from ..plots import MODEL_COLORS
from .results import array_key

__all__ = ["attribution_figure", "cka_figure", "conductance_figure", "crop", "stats_figure"]

_PAIR_NAMES = {"original_vs_unlearned": "original ↔ unlearned", "unlearned_vs_retrained": "unlearned ↔ retrained",
               "original_vs_retrained": "original ↔ retrained"}
_SPLIT_COLOURS = {"forget": "#d62728", "retain": "#2ca02c", "test": "#7f7f7f"}


def cka_figure(cka: Mapping[str, Mapping[str, Mapping[str, float]]]) -> go.Figure:
    """Linear CKA per layer: one line per model pair, solid on forget data, dotted on retain data."""
    fig = go.Figure()
    layers = list(cka)
    pairs = list(dict.fromkeys(pair for per_layer in cka.values() for pair in per_layer))
    palette = ["#1f77b4", "#7f7f7f", "#9467bd"]
    for colour, pair in zip(palette, pairs, strict=False):
        for split, dash in (("forget", "solid"), ("retain", "dot")):
            fig.add_trace(go.Scatter(x=layers, y=[cka[layer].get(pair, {}).get(split) for layer in layers], mode="lines+markers",
                                     name=f"{_PAIR_NAMES.get(pair, pair)}, {split}", line={"color": colour, "dash": dash}))
    fig.update_layout(title="Linear CKA by layer (1 = same representation up to rotation and scale)", yaxis={"range": [0, 1.02], "title": "CKA"},
                      xaxis={"title": "layer"}, height=360, margin={"t": 50, "b": 40})
    return fig


def stats_figure(arrays: Mapping[str, np.ndarray], models: list[str], layer: str, split: str = "forget") -> go.Figure:
    """Mean activation of every neuron of ``layer`` on one split, per model (the retrained model's
    units do not correspond to the original's: compare its distribution, not unit by unit)."""
    index = ("forget", "retain", "test").index(split)
    fig = go.Figure()
    for role in models:
        mean = arrays.get(array_key("stats_mean", role, layer))
        if mean is not None:
            fig.add_trace(go.Bar(y=mean[index], name=role, marker_color=MODEL_COLORS.get(role), opacity=0.75))
    fig.update_layout(title=f"Mean activation per neuron of {layer} on {split} data", barmode="group", xaxis={"title": "neuron"},
                      yaxis={"title": "mean activation"}, height=320, margin={"t": 50, "b": 40})
    return fig


def attribution_figure(attr: np.ndarray, title: str, *, signed: bool = True) -> go.Figure:
    """An attribution map (``(H, W)``) as a heatmap, red positive, blue negative, zero white."""
    attr = np.asarray(attr, dtype=float)
    scale = float(np.abs(attr).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=attr[::-1], zmin=-scale if signed else 0, zmax=scale, showscale=False,
                               colorscale="RdBu_r" if signed else "Reds"))
    fig.update_layout(title={"text": title, "font": {"size": 12}}, height=220, margin={"l": 5, "r": 5, "t": 30, "b": 5},
                      xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x"})
    return fig


def conductance_figure(per_model: Mapping[str, np.ndarray], layer: str) -> go.Figure:
    """LayerConductance of each neuron of ``layer`` for the sample's true class, per model."""
    fig = go.Figure()
    for role, values in per_model.items():
        fig.add_trace(go.Bar(y=values, name=role, marker_color=MODEL_COLORS.get(role), opacity=0.75))
    fig.update_layout(title=f"LayerConductance of {layer}'s neurons for the true class", barmode="group", xaxis={"title": "neuron"},
                      height=300, margin={"t": 50, "b": 40})
    return fig


def crop(image: np.ndarray, box: np.ndarray | None, size: int = 64) -> np.ndarray:
    """A stored ``(C, H, W)`` uint8 image cut to ``box`` (top, left, bottom, right) and upscaled
    without smoothing to about ``size`` pixels: ``(h, w, 3)`` uint8 for ``st.image``."""
    if box is not None:
        top, left, bottom, right = (int(v) for v in box)
        image = image[:, top:bottom, left:right]
    if image.shape[0] == 1:
        image = np.repeat(image, 3, axis=0)
    factor = max(1, size // max(image.shape[1:]))
    return np.kron(image.transpose(1, 2, 0), np.ones((factor, factor, 1), dtype=np.uint8))
