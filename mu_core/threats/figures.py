"""Plotly figures of threat results (built from ``threat.json`` data, never stored)."""

from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go

__all__ = ["screen_figure", "threat_figure"]

_ATTACK, _BASELINE, _SCREEN = "#d62728", "#7f7f7f", "#2ca02c"


def _bars(groups: list[str], series: Mapping[str, tuple[list[float], str]], *, title: str, y_title: str, percent: bool = True) -> go.Figure:
    fig = go.Figure()
    for name, (values, color) in series.items():
        fig.add_trace(go.Bar(x=groups, y=values, name=name, marker_color=color,
                             hovertemplate="%{x}: %{y:" + (".1%" if percent else ".2f") + "}<extra>" + name + "</extra>"))
    fig.update_layout(barmode="group", title=title, yaxis_title=y_title, legend={"orientation": "h", "y": -0.2},
                      margin={"l": 40, "r": 10, "t": 50, "b": 40})
    if percent:
        fig.update_yaxes(tickformat=".0%", range=[0, 1.05])
    return fig


def threat_figure(data: Mapping) -> go.Figure:
    """The chart of one threat's result (``threat.json`` as a dict)."""
    name, n = data["threat"], data["numbers"]
    if name == "targeted_request":
        methods = list(n["methods"])
        return _bars(methods, {"chosen by gradient alignment": ([n["methods"][m]["success_rate"] for m in methods], _ATTACK),
                               "random, same size": ([n["methods"][m]["random_success_rate"] for m in methods], _BASELINE)},
                     title="Targets misclassified after unlearning", y_title="success rate")
    if name == "accuracy_burn":
        methods = list(n["methods"])
        rows = n["methods"]
        return _bars(methods, {"before": ([n["test_acc_before"]] * len(methods), _BASELINE),
                               "after the crafted request": ([rows[m]["test_acc_after"] for m in methods], _ATTACK),
                               "after the same samples untouched": ([rows[m]["benign_test_acc_after"] for m in methods], "#ff7f0e"),
                               "with screening": ([rows[m]["test_acc_with_screening"] for m in methods], _SCREEN)},
                     title="Test accuracy", y_title="test accuracy")
    if name == "over_unlearning":
        methods = list(n["methods"])
        rows = n["methods"]
        return _bars(methods, {"blended request": ([rows[m]["victim_drop_blended"] for m in methods], _ATTACK),
                               "as many genuine samples": ([rows[m]["victim_drop_plain"] for m in methods], _BASELINE)},
                     title=f"Drop of class {n['victim_class']}'s test accuracy", y_title="accuracy drop", percent=False)
    if name in ("backdoor_verify", "verification_evasion"):
        providers = list(n["providers"])
        fig = _bars(providers, {"triggered queries hitting the target": ([n["providers"][p]["hits"] / n["queries"] for p in providers], _ATTACK)},
                    title=f"Backdoor verification ({n['queries']} queries; deletion confirmed at <= {n['tau']} hits)", y_title="share of queries")
        fig.add_hline(y=n["tau"] / n["queries"], line_dash="dash", line_color=_SCREEN, annotation_text="threshold")
        if name == "verification_evasion":
            for p in providers:
                verdict = n["providers"][p].get("verdict")
                if verdict:
                    fig.add_annotation(x=p, y=1.0, text=f"verdict: {verdict}", showarrow=False)
        return fig
    if name == "backdoor_removal":
        methods = ["before", *n["methods"]]
        rows = {"before": n["before"], **n["methods"]}
        return _bars(methods, {"backdoor success": ([rows[m]["attack_success"] for m in methods], _ATTACK),
                               "test accuracy": ([rows[m]["test_acc"] for m in methods], _BASELINE)},
                     title="The backdoor before and after unlearning the poisoned samples", y_title="rate")
    raise ValueError(f"no figure for threat '{name}'")


def screen_figure(data: Mapping) -> go.Figure:
    """The gradient-influence z-scores of a screening, with its threshold."""
    z = data["numbers"]["influence"].get("z", {})
    fig = _bars(list(z), {"z-score against random requests": (list(z.values()), _ATTACK)}, title="Gradient influence of the request",
                y_title="z-score", percent=False)
    fig.add_hline(y=data["settings"]["threshold"], line_dash="dash", line_color=_SCREEN, annotation_text="threshold")
    return fig
