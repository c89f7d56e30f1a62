"""Plotly figure builders shared by the pages and reports. Figures are built from results."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go

__all__ = ["MODEL_COLORS", "class_histogram", "gap_time_figure", "inversion_loss_figure", "label_change_figure", "roc_figure"]

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


def gap_time_figure(
    rows: Mapping[str, Mapping],
    *,
    original_gap: float | None = None,
    floor_gap: float | None = None,
    title: str = "Avg. Gap to retraining vs run time",
) -> go.Figure:
    """One point per method: run time (log scale) against Avg. Gap; retraining sits at gap 0.
    ``original_gap`` (a fraction) draws the gap of doing nothing as a dashed line: a method
    above it moved the model further from retraining than it was. ``floor_gap`` shades the band
    a second retrain with another seed already spans (the noise floor)."""
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
    if original_gap is not None:
        fig.add_hline(y=100 * float(original_gap), line_dash="dash", line_color="gray",
                      annotation_text=f"no unlearning (the original): {100 * float(original_gap):.2f}", annotation_position="top left")
    if floor_gap is not None:
        fig.add_hrect(y0=0, y1=100 * float(floor_gap), fillcolor="gray", opacity=0.15, line_width=0,
                      annotation_text=f"noise floor (retrain, another seed): {100 * float(floor_gap):.2f}", annotation_position="bottom right")
    return fig


def inversion_loss_figure(loss_history: list[list[float]], best_restart: int | None = None, *, title: str = "Cosine loss over steps") -> go.Figure:
    """Unlearning inversion: ``1 - cosine`` between the dummies' gradient and the parameter
    difference at every step, one line per restart (the kept restart drawn bold)."""
    fig = go.Figure()
    for restart, losses in enumerate(loss_history):
        kept = restart == best_restart
        fig.add_trace(go.Scatter(
            y=list(losses), mode="lines", name=f"restart {restart + 1}" + (" (kept)" if kept else ""),
            line={"width": 3 if kept else 1, "color": MODEL_COLORS["unlearned"] if kept else None},
            opacity=1.0 if kept or best_restart is None else 0.5,
            hovertemplate="step %{x}<br>1 - cos %{y:.4f}<extra></extra>",
        ))
    fig.update_layout(title=title, xaxis={"title": "step"}, yaxis={"title": "1 - cosine similarity", "rangemode": "tozero"},
                      height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def label_change_figure(change: list[float], class_names: list[str], true_labels: list[int] | None = None,
                        *, title: str = "Confidence change of each class's probes") -> go.Figure:
    """Black-box label inference: the mean confidence change (unlearned minus original) of each
    class's probes; the most negative class is the inferred removed label. True labels are marked."""
    true = set(true_labels or [])
    fig = go.Figure(go.Bar(
        x=[str(c) for c in class_names], y=list(change),
        marker_color=[MODEL_COLORS["original"] if i in true else MODEL_COLORS["unlearned"] for i in range(len(change))],
        hovertemplate="%{x}: %{y:.4f}<extra></extra>",
    ))
    fig.update_layout(title=title, xaxis={"title": "class (red: a forgotten sample's true class)", "type": "category"},
                      yaxis={"title": "confidence change"}, height=300, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def defense_figure(rows: list[Mapping], *, metric: str = "top1_share", title: str = "Inversion against defended models") -> go.Figure:
    """Defenses after unlearning: one point per defense and strength, the defended model's test
    accuracy (x) against the attack's ``metric`` (y: rank-1 share, label accuracy or mean SSIM).
    A good defense moves left as little as it moves down a lot."""
    labels = {"top1_share": "rank-1 share (singled out)", "label_accuracy": "label inference accuracy", "ssim": "mean SSIM"}
    fig = go.Figure()
    for kind in dict.fromkeys(r["defense"] for r in rows):
        mine = [r for r in rows if r["defense"] == kind]
        fig.add_trace(go.Scatter(
            x=[100 * float(r["test_acc"]) for r in mine], y=[r[metric] for r in mine], mode="markers+text", name=kind,
            text=["" if kind == "none" else f"{r['strength']:g}" for r in mine], textposition="top center",
            marker={"size": 12, "symbol": "star" if kind == "none" else "circle"},
            hovertemplate=kind + " %{text}<br>test accuracy %{x:.1f}%<br>" + labels.get(metric, metric) + " %{y:.3f}<extra></extra>",
        ))
    fig.update_layout(title=title, xaxis={"title": "defended model's test accuracy (%)"},
                      yaxis={"title": labels.get(metric, metric), "rangemode": "tozero"}, height=340,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def per_class_figure(per_model: Mapping[str, Mapping], *, title: str = "AUC per class") -> go.Figure:
    """Grouped bars: the attack's AUC within each class of the forget set, one bar per model."""
    fig = go.Figure()
    for role, result in per_model.items():
        slices = result.get("per_class") or {}
        fig.add_trace(go.Bar(x=list(slices), y=list(slices.values()), name=role, marker_color=MODEL_COLORS.get(role),
                             hovertemplate="%{x}: AUC %{y:.3f}<extra>" + role + "</extra>"))
    fig.add_hline(y=0.5, line_dash="dot", line_color="#999999", annotation_text="chance")
    fig.update_layout(title=title, barmode="group", yaxis={"title": "AUC", "range": [0, 1]}, height=320,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return fig


def exposure_figure(records: list[Mapping], *, title: str = "Per-record exposure") -> go.Figure:
    """Each forgotten record's exposure (-log2 p against held-out data) under the unlearned model,
    coloured by its verdict; with a retrained model, its exposure there on the x axis."""
    colors = {"not_forgotten": "#d62728", "inconclusive": "#ff7f0e", "forgotten": "#2ca02c"}
    fig = go.Figure()
    has_ref = any(r.get("retrained_p_value") is not None for r in records)
    for verdict, color in colors.items():
        rows = [r for r in records if r["verdict"] == verdict]
        if not rows:
            continue
        x = [-np.log2(r["retrained_p_value"]) for r in rows] if has_ref else [r["index"] for r in rows]
        fig.add_trace(go.Scatter(x=x, y=[r["exposure"] for r in rows], mode="markers", name=verdict.replace("_", " "),
                                 marker={"color": color, "size": 7}, text=[f"#{r['index']} ({r['class']})" for r in rows],
                                 hovertemplate="%{text}<br>exposure %{y:.2f}<extra></extra>"))
    fig.update_layout(title=title, height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis={"title": "exposure under the retrained model" if has_ref else "training index"},
                      yaxis={"title": "exposure under the unlearned model (-log2 p)"}, legend={"orientation": "h", "y": -0.25})
    return fig
