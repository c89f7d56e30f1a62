"""Plotly figure builders shared by the pages and reports. Figures are built from results."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go

__all__ = ["MODEL_COLORS", "class_histogram", "gap_time_figure", "roc_figure"]

MODEL_COLORS = {"original": "#d62728", "unlearned": "#1f77b4", "retrained": "#7f7f7f"}
_DASH = {"original": "solid", "unlearned": "solid", "retrained": "dash"}


def roc_figure(per_model: Mapping[str, Mapping], *, log_scale: bool = False, title: str = "") -> go.Figure:
    """ROC curves of one attack for several models (``per_model[role]`` has ``roc`` and ``auc``).

    The retrained model is drawn dashed: it is the baseline. On log-log axes the x range starts
    at 1/(number of non-members), the smallest FPR the data can show.
    """
    fig = go.Figure()
    min_fpr = 1.0
    for role, result in per_model.items():
        fpr = np.asarray(result["roc"]["fpr"], dtype=float)
        tpr = np.asarray(result["roc"]["tpr"], dtype=float)
        n_non = max(int(result.get("n_nonmembers", 100)), 1)
        min_fpr = min(min_fpr, 1.0 / n_non)
        if log_scale:
            keep = fpr > 0
            fpr, tpr = fpr[keep], np.maximum(tpr[keep], 1e-4)
        fig.add_trace(
            go.Scatter(
                x=fpr,
                y=tpr,
                mode="lines",
                name=f"{role} (AUC {result['auc']:.3f})",
                line={"color": MODEL_COLORS.get(role), "dash": _DASH.get(role, "solid"), "shape": "hv"},
                hovertemplate="FPR %{x:.4f}<br>TPR %{y:.4f}<extra>" + role + "</extra>",
            )
        )
    low = min_fpr if log_scale else 0.0
    fig.add_trace(
        go.Scatter(x=[low, 1], y=[low, 1], mode="lines", name="chance", line={"color": "#bbbbbb", "dash": "dot"}, hoverinfo="skip")
    )
    axis = {"type": "log", "range": [np.log10(min_fpr), 0]} if log_scale else {"range": [0, 1]}
    fig.update_layout(
        title=title or ("ROC, log-log axes" if log_scale else "ROC, linear axes"),
        xaxis={"title": "false positive rate", **axis},
        yaxis={"title": "true positive rate", **axis},
        legend={"orientation": "h", "y": -0.2},
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        height=420,
    )
    return fig


def class_histogram(counts: Mapping[str, int], *, title: str = "Samples per class") -> go.Figure:
    """A bar chart of how many samples of each class a request holds."""
    fig = go.Figure(go.Bar(x=list(counts), y=list(counts.values()), marker_color=MODEL_COLORS["unlearned"]))
    fig.update_layout(title=title, xaxis={"title": "class", "type": "category"}, yaxis={"title": "samples"}, height=300, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def gap_time_figure(rows: Mapping[str, Mapping], *, title: str = "Avg. Gap to retraining vs run time") -> go.Figure:
    """One point per method: run time (log scale) against Avg. Gap; retraining sits at gap 0."""
    names = list(rows)
    fig = go.Figure(
        go.Scatter(
            x=[max(float(rows[n]["seconds"]), 1e-3) for n in names],
            y=[100 * float(rows[n]["avg_gap"]) for n in names],
            mode="markers+text",
            text=names,
            textposition="top center",
            marker={"size": 12, "color": [MODEL_COLORS["retrained"] if n == "retrain" else MODEL_COLORS["unlearned"] for n in names]},
            hovertemplate="%{text}<br>%{x:.2f} s<br>Avg. Gap %{y:.2f} points<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        xaxis={"title": "seconds (log scale)", "type": "log"},
        yaxis={"title": "Avg. Gap (percentage points, lower is better)", "rangemode": "tozero"},
        height=380,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return fig
