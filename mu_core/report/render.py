"""The report as one self-contained HTML file (Plotly inline, images as data URIs, no network).

Sections, in the order a reviewer reads them: the request and the model; the verdict, its rule,
its reason and the audit's power; utility against retraining; per attack AUC, TPR at low FPR and
the epsilon lower bound with intervals, with the log-log ROC; the per-record answers (the part
a data subject receives); inversion, neuron and threat results when there are any; the limits of
what this audit can show; the trail and the evidence; the signature block. Figures come from
:mod:`mu_core.plots`, the builders the pages use.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["render_html"]

_CSS = """
body{font-family:-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;max-width:900px;margin:24px auto;padding:0 16px;color:#222;
line-height:1.45;font-size:14px}
h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:28px}
h3{font-size:15px;margin-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:12.5px}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-size:20px;font-weight:bold;padding:8px 12px;border-radius:6px;display:inline-block;margin:6px 0}
.forgotten{background:#e3f4e3;color:#1b6e1b}.not_forgotten{background:#fbe3e3;color:#a61b1b}.inconclusive{background:#fdf0dc;color:#8a5a00}
.muted{color:#666;font-size:12px}.hash{font-family:monospace;font-size:11px;word-break:break-all}
.fig{page-break-inside:avoid;break-inside:avoid}.pair img{image-rendering:pixelated;height:56px;border:1px solid #ccc}
section{page-break-inside:auto}pre{white-space:pre-wrap;font-size:12px;background:#f7f7f7;padding:6px}
@media print{body{margin:0 auto;max-width:none}h2{break-after:avoid}.modebar-container{display:none!important}}
"""

_ROLES = ("original", "unlearned", "retrained")


def _e(value) -> str:
    return html.escape(str(value))


def _num(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return _e(value)


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}%"


def _ci(ci) -> str:
    return "" if not ci else f" [{_num(ci[0])}, {_num(ci[1])}]"


def _table(headers: Iterable[str], rows: Iterable[Iterable], numeric: Iterable[int] = ()) -> str:
    num = set(numeric)
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td{' class=n' if i in num else ''}>{c}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fig(fig) -> str:
    fig.update_layout(template="plotly_white")
    return '<div class="fig">' + fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True}) + "</div>"


def _short(sha: str | None) -> str:
    return f'<span class="hash">{_e(sha[:16])}…</span>' if sha else "n/a"


def _request_and_model(report: Mapping, evidence: Mapping) -> str:
    from ..plots import class_histogram

    req = evidence["forget_request"]
    forget = report.get("forget", {})
    parts = [f"<p><b>Request:</b> {_e(req['kind'])}, {req['count']:,} training samples to forget"]
    params = {k: v for k, v in (req.get("params") or {}).items() if k not in ("indices",)}
    if params:
        parts.append(f" ({_e(', '.join(f'{k} {v}' for k, v in params.items()))})")
    per_class = forget.get("per_class") or {}
    parts.append(f"; classes: {_e(', '.join(f'{c} ({n})' for c, n in per_class.items()))}.</p>")
    data = evidence["dataset"]
    parts.append(f"<p><b>Data:</b> {_e(data['spec']['name'])}, {data['n_train']:,} training / {data['n_test']:,} test samples, "
                 f"{len(data['classes'])} classes; split digest {_short(data['split_sha256'])}.</p>")
    rows = []
    for role, m in evidence["models"].items():
        unl = m.get("unlearning") or {}
        how = "trained" if not unl else f"{unl.get('method')} {json.dumps(unl.get('params') or {}, sort_keys=True)}"
        rows.append([_e(role), _e(m.get("arch")), _e(how), _num(m.get("train_samples")), _short(m["sha256"]), _short(m["weights_sha256"])])
    parts.append(_table(["model", "architecture", "how it was made", "training samples", "file SHA-256", "weights digest"], rows, [3]))
    if per_class:
        parts.append(_fig(class_histogram(per_class, title="Forgotten samples per class")))
    return "".join(parts)


def _verdict(report: Mapping) -> str:
    verdict = report.get("verdict", "inconclusive")
    settings = report.get("verdict_settings", {})
    parts = [f'<div class="verdict {_e(verdict)}">{_e(verdict.replace("_", " "))}</div>',
             f"<p><b>Reason:</b> {_e(report.get('verdict_reason', ''))}</p>"]
    if report.get("over_unlearning"):
        parts.append(f"<p><b>Over-unlearning:</b> {_e(report['over_unlearning'])}</p>")
    parts.append(f"<p><b>The rule:</b> {_e(report.get('verdict_rule', ''))}</p>")
    parts.append(f"<p class=muted>Settings: margin {_num(settings.get('margin'))} in AUC, alpha {_num(settings.get('alpha'))}, "
                 f"{settings.get('bootstrap')} bootstrap resamples, reference: {_e(settings.get('reference'))}, "
                 f"attacks in the verdict: {_e(', '.join(settings.get('attacks', [])))}.</p>")
    detail = report.get("verdict_detail") or {}
    rows = [[_e(a), _num(d.get("auc_difference")), f"[{_num(d.get('lower_bound'))}, {_num(d.get('upper_bound'))}]",
             _ci(d.get("equivalence_interval")).strip() or "n/a", "yes" if d.get("within_margin") else "no"]
            for a, d in detail.items() if isinstance(d, Mapping)]
    if rows:
        parts.append("<h3>Per attack: d = AUC(unlearned) - AUC(reference)</h3>")
        parts.append(_table(["attack", "d", "simultaneous bounds", "equivalence interval", "within margin"], rows, [1]))
    power = report.get("power")
    if power:
        has = report.get("has_power")
        parts.append("<h3>The audit's power</h3><p>Can these attacks tell the untouched original from the reference at all? "
                     "d = AUC(original) - AUC(reference) with its simultaneous bounds; a lower bound above 0 means the audit "
                     "could have seen unforgotten data." + ("" if has is None else f" Power: <b>{'yes' if has else 'no'}</b>.") + "</p>")
        parts.append(_table(["attack", "d", "bounds"],
                            [[_e(a), _num(p.get("d")), _ci(p.get("d_ci")).strip() or "n/a"] for a, p in power.items() if isinstance(p, Mapping)], [1]))
    else:
        parts.append("<p class=muted>This audit's report carries no power analysis: whether these attacks could tell the original "
                     "from the reference is not stated.</p>")
    ref = report.get("reference")
    if isinstance(ref, Mapping):
        parts.append(f"<p><b>Reference:</b> {_e(ref.get('retrains'))} exact retrain(s), seeds {_e(ref.get('seeds'))}.</p>")
        spread = ref.get("auc_spread")
        if isinstance(spread, Mapping) and spread:
            parts.append(_table(["attack", "retrains' AUCs", "range", "sd"],
                                [[_e(a), _e(", ".join(_num(v) for v in s.get("aucs", []))), _num(s.get("range")), _num(s.get("sd"))]
                                 for a, s in spread.items() if isinstance(s, Mapping)], [2, 3]))
    return "".join(parts)


def _utility(report: Mapping) -> str:
    util = report.get("utility") or {}
    ref = util.get("retrained")
    rows = []
    for role in (r for r in _ROLES if r in util):
        u = util[role]
        cells = [_e(role)]
        for key in ("forget_acc", "retain_acc", "test_acc"):
            gap = "" if ref is None or role == "retrained" or u.get(key) is None or ref.get(key) is None else \
                f" ({100 * (u[key] - ref[key]):+.1f})"
            cells.append(_pct(u.get(key)) + gap)
        rows.append(cells)
    note = "Differences to the retrained model in percentage points in brackets." if ref else "No retrained model: no yardstick."
    return _table(["model", "forget accuracy", "retain accuracy", "test accuracy"], rows, [1, 2, 3]) + f"<p class=muted>{note}</p>"


def _attacks(report: Mapping) -> str:
    from ..plots import roc_figure

    info = report.get("attack_info", {})
    parts, figures = [], []
    rows = []
    for attack, per_model in (report.get("attacks") or {}).items():
        if not isinstance(per_model, Mapping):
            continue
        if "not_run" in per_model:
            rows.append([_e(attack), "", f"<i>{_e(per_model['not_run'])}</i>", "", "", ""])
            continue
        if info.get(attack, {}).get("kind", "roc") != "roc":
            summary = ", ".join(f"{k} {_num(v)}" for k, v in per_model.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
            rows.append([_e(attack), "", _e(summary), "", "", ""])
            continue
        for role in (r for r in _ROLES if r in per_model):
            res = per_model[role]
            eps = res.get("epsilon_lower")
            rows.append([_e(attack), _e(role), _num(res.get("auc")) + _ci(res.get("auc_ci")),
                         _num(res.get("tpr_at_1pct_fpr")) + _ci(res.get("tpr_at_1pct_fpr_ci")),
                         _num(res.get("tpr_at_0p1pct_fpr")) + _ci(res.get("tpr_at_0p1pct_fpr_ci")),
                         "n/a" if eps is None else (_num(eps) + _ci(res.get("epsilon_lower_ci")))])
        curves = {r: per_model[r] for r in _ROLES if r in per_model and "roc" in per_model[r]}
        if curves:
            figures.append(_fig(roc_figure(curves, log_scale=True, title=f"{attack}: ROC, log-log axes")))
    parts.append(_table(["attack", "model", "AUC [95% CI]", "TPR at 1% FPR", "TPR at 0.1% FPR", "epsilon lower bound"], rows, [2, 3, 4, 5]))
    note = report.get("epsilon_note") or ("the differential-privacy epsilon the attack's TPR and FPR rule out; n/a when the audit "
                                          "did not compute it")
    parts.append(f"<p class=muted>A TPR at an FPR is n/a when there are fewer than 1/FPR held-out samples. Epsilon lower bound: {_e(note)}</p>")
    described = [f"<li><b>{_e(a)}</b>: {_e(i.get('summary'))} <span class=muted>({_e(i.get('knowledge'))})</span></li>" for a, i in info.items()]
    parts.append("<ul>" + "".join(described) + "</ul>")
    return "".join(parts + figures)


def _records(report: Mapping, redacted: bool) -> str:
    from ..plots import exposure_figure

    records = report.get("records") or []
    if not records:
        return "<p>The audit gave no per-record answers (no membership attack in the verdict ran).</p>"
    counts = {v: sum(1 for r in records if r.get("verdict") == v) for v in ("forgotten", "inconclusive", "not_forgotten")}
    attack = records[0].get("attack")
    parts = [f"<p>Each forgotten record's score under <b>{_e(attack)}</b> against held-out data: the p-value (exposure = -log2 p), "
             f"and the answer: {counts['forgotten']} forgotten, {counts['inconclusive']} inconclusive, "
             f"{counts['not_forgotten']} not forgotten.</p>"]
    if redacted:
        parts.append("<p>Records are named by a keyed hash. A data subject checks theirs with the key they were given: "
                     "<code>python -m mu_core check-record bundle.zip --index N --key KEY</code>.</p>")
    key = "record" if redacted else "index"
    rows = [[f'<span class="hash">{_e(r.get(key))}</span>' if redacted else _num(r.get(key)), _e(r.get("class")), _num(r.get("p_value")),
             _num(r.get("exposure"), 2), _num(r.get("retrained_p_value")), f'<span class="{_e(r.get("verdict"))}">{_e(r.get("verdict"))}</span>']
            for r in records]
    parts.append(_table(["record" if redacted else "training index", "class", "p-value", "exposure", "p under retrained", "answer"], rows, [2, 3, 4]))
    if not redacted:
        parts.append(_fig(exposure_figure(records)))
    return "".join(parts)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _inversion(inv: Mapping, defenses: Mapping | None, images: Mapping[str, Path] | None, redacted: bool) -> str:
    from ..plots import defense_figure, inversion_loss_figure

    names = inv.get("class_names") or []

    def cls(i) -> str:
        return _e(names[i]) if isinstance(i, int) and 0 <= i < len(names) else _e(i)

    parts = [f"<p>{_e(inv.get('paper', 'Unlearning inversion'))}. Setting: <b>{_e(inv.get('setting'))}</b> "
             f"({_e(inv.get('setting_describe', ''))}). Rank 1 (the reconstruction singles out the sample): {_pct(inv.get('top1_share'))}; "
             f"label inference accuracy {_pct(inv.get('label_accuracy'))}; mean SSIM {_num(inv.get('mean_ssim'))}.</p>"]
    rows = []
    for s in inv.get("samples", []):
        name = s.get("record") if redacted else s.get("index")
        picture = ""
        png = None if redacted or images is None else images.get(f"inversion/{s.get('png')}")
        if png is not None:
            picture = f'<span class="pair"><img alt="sample | reconstruction" src="{_data_uri(png)}"></span>'
        rows.append([_e(name), cls(s.get("true_label")), cls(s.get("inferred_label")), _num(s.get("mse"), 4), _num(s.get("psnr"), 2),
                     _num(s.get("ssim")), f"{s.get('rank')}/{s.get('class_size')}", picture])
    parts.append(_table(["record" if redacted else "index", "true", "inferred", "MSE", "PSNR", "SSIM", "rank", "" if redacted else
                         "sample | reconstruction"], rows, [3, 4, 5]))
    if redacted:
        parts.append("<p class=muted>Redacted: no pictures of forgotten samples or their reconstructions.</p>")
    if inv.get("loss_history"):
        parts.append(_fig(inversion_loss_figure(inv["loss_history"], inv.get("best_restart"))))
    if defenses and defenses.get("rows"):
        parts.append("<h3>Defenses</h3>" + _fig(defense_figure(defenses["rows"])))
    return "".join(parts)


def _neurons(neu: Mapping) -> str:
    counts = neu.get("forgotten_concept_neurons") or {}
    parts = [f"<p>Layers: {_e(', '.join(layer['name'] for layer in neu.get('layers', [])))}; labeller {_e(neu.get('labeller'))}. "
             f"Final-layer label agreement (original): {_pct(neu.get('final_layer_label_agreement'))}.</p>"]
    if counts.get("classes"):
        parts.append(f"<p>Neurons labelled with a forgotten class ({_e('/'.join(counts['classes']))}): before {counts.get('before')}, "
                     f"after {counts.get('after')}, retrained {counts.get('retrained', 'n/a')}.</p>")
    elif counts.get("note"):
        parts.append(f"<p>Forgotten-concept neurons not counted: {_e(counts['note'])}.</p>")
    rows = []
    for layer, pairs in (neu.get("cka") or {}).items():
        for pair, values in pairs.items():
            rows.append([_e(layer), _e(pair.replace("_", " ")), _num(values.get("forget")), _num(values.get("retain"))])
    if rows:
        parts.append("<h3>Linear CKA between models (1 = same representation)</h3>" + _table(["layer", "models", "forget", "retain"], rows, [2, 3]))
    changed = sorted((n for n in neu.get("neurons", []) if n.get("change") is not None and n.get("model", "unlearned") == "unlearned"),
                     key=lambda n: -abs(n["change"]))[:10]
    if changed:
        parts.append("<h3>Neurons unlearning changed most</h3>" + _table(
            ["layer", "neuron", "change", "label", "score"],
            [[_e(n["layer"]), _num(n["index"]), _num(n["change"]), _e(n.get("label") or "-"), _num(n.get("score"))] for n in changed], [1, 2, 4]))
    return "".join(parts)


def _threats(threats: Mapping[str, Mapping], redacted: bool) -> str:
    parts = []
    for name, data in threats.items():
        title = data.get("name") or data.get("threat") or Path(name).parent.name or name
        parts.append(f"<h3>{_e(title)}</h3>")
        for key in ("verdict", "summary", "reason", "verdict_reason"):
            if isinstance(data.get(key), str):
                parts.append(f"<p><b>{_e(key.replace('_', ' '))}:</b> {_e(data[key])}</p>")
        scalars = [[_e(k), _num(v) if isinstance(v, (int, float)) else _e(v)] for k, v in data.items()
                   if isinstance(v, (int, float, str)) and k not in ("name", "threat", "verdict", "summary", "reason", "verdict_reason")
                   and not (redacted and "index" in k)]
        if scalars:
            parts.append(_table(["quantity", "value"], scalars))
    return "".join(parts)


def _limits(report: Mapping, evidence: Mapping, redacted: bool) -> str:
    prov = report.get("provenance", {})
    n_non = prov.get("nonmembers") or 0
    items = [
        "Membership attacks show what an attacker with the stated knowledge can tell apart; passing them does not prove that no "
        "information about the forgotten records remains in the weights, only that these attacks cannot see it at this sample size.",
        f"{prov.get('members', 'n/a')} forgotten records were tested against {n_non} held-out ones: the smallest false-positive rate "
        f"this data can show is {1 / n_non:.4f}; TPR at lower FPRs is not measured." if n_non else "The held-out sample size is unknown.",
        "The verdict compares the unlearned model with the retrained one (or with chance when there is none): a retrained model from "
        "another seed differs too, so gaps inside the margin are treated as equivalence, not as zero.",
        "Per-record answers are individual tests on one record each; an 'inconclusive' answer means this audit cannot tell, not that "
        "the record is remembered.",
    ]
    not_run = [a for a, r in (report.get("attacks") or {}).items() if isinstance(r, Mapping) and "not_run" in r]
    if not_run:
        items.append(f"Attacks that did not run: {', '.join(not_run)} (their reasons are in the attack table).")
    if not prov.get("reference_models"):
        items.append("No reference-model attack (LiRA, RMIA, U-LiRA) ran: the strongest per-example attacks are not part of this verdict.")
    if redacted:
        items.append("This is a redacted report: the models, the forget request and the scores are not in the bundle (their SHA-256 are), "
                     "so it cannot be replayed; the full bundle can.")
    items.append("Hashes prove that these files are the ones the audit used and produced; they do not prove how the models were trained.")
    return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def _trail_and_evidence(evidence: Mapping) -> str:
    parts = []
    trail = evidence.get("trail")
    if trail:
        state = "intact" if trail.get("intact") else f"BROKEN: {trail.get('problem')}"
        parts.append(f"<p><b>Audit trail</b> (log.jsonl, each entry carrying the hash of the one before): {trail['entries']} entries, "
                     f"chain {_e(state)}, head {_short(trail.get('head'))}.</p>")
    rows = [[_e(name), _short(info["sha256"]), _num(info["bytes"]), "yes" if info.get("in_bundle") else "no (hash only)"]
            for name, info in {**evidence.get("references_and_retrains", {}), **evidence.get("results", {})}.items()]
    if rows:
        parts.append(_table(["file", "SHA-256", "bytes", "in the bundle"], rows, [2]))
    versions = ", ".join(f"{k} {v}" for k, v in evidence.get("versions", {}).items())
    plat = evidence.get("platform", {})
    parts.append(f"<p class=muted>Versions: {_e(versions)}. Platform: {_e(plat.get('system'))} {_e(plat.get('release'))} "
                 f"{_e(plat.get('machine'))}, device {_e(plat.get('device'))}. Audit {_e(evidence['times'].get('audit'))}, "
                 f"report {_e(evidence['times'].get('report'))}.</p>")
    return "".join(parts)


def _signature(evidence: Mapping) -> str:
    sig = evidence.get("signature")
    if not sig:
        return ("<p>This report's bundle is <b>not signed</b>. Its manifest still lists every file's SHA-256; "
                "<code>python -m mu_core verify bundle.zip</code> checks them.</p>")
    return (f"<table><tr><th>algorithm</th><td>{_e(sig['algorithm'])}</td></tr><tr><th>key fingerprint</th><td class=hash>"
            f"{_e(sig['fingerprint'])}</td></tr><tr><th>signed</th><td>{_e(sig['time'])}</td></tr></table>"
            "<p>The bundle's manifest (every file's SHA-256, this report included) is signed with this key. Check it with "
            "<code>python -m mu_core verify bundle.zip --public-key KEY.pub</code>, which prints this fingerprint.</p>")


def render_html(report: Mapping, evidence: Mapping, extras: Mapping, *, redacted: bool = False,
                images: Mapping[str, Path] | None = None) -> str:
    """The whole report as one HTML document (``extras``: ``inversion``, ``defenses``, ``neurons``,
    ``threats`` results when the case has them; ``images`` maps bundle paths to PNG files)."""
    from plotly.offline import get_plotlyjs

    source = evidence["source"]
    title = f"Unlearning audit: {source.get('name') or source.get('id')}"
    sections = [("1. The request and the model", _request_and_model(report, evidence)),
                ("2. The verdict", _verdict(report)),
                ("3. Utility against retraining", _utility(report)),
                ("4. Membership attacks", _attacks(report)),
                ("5. Per-record answers", _records(report, redacted))]
    number = 6
    if extras.get("inversion"):
        sections.append((f"{number}. Unlearning inversion", _inversion(extras["inversion"], extras.get("defenses"), images, redacted)))
        number += 1
    if extras.get("neurons"):
        sections.append((f"{number}. Neurons", _neurons(extras["neurons"])))
        number += 1
    if extras.get("threats"):
        sections.append((f"{number}. Threats", _threats(extras["threats"], redacted)))
        number += 1
    sections += [(f"{number}. What this audit cannot show", _limits(report, evidence, redacted)),
                 (f"{number + 1}. Trail and evidence", _trail_and_evidence(evidence)),
                 (f"{number + 2}. Signature", _signature(evidence))]
    body = "".join(f"<section><h2>{_e(h)}</h2>{content}</section>" for h, content in sections)
    flag = " · <b>redacted</b>: no training pixels, no raw indices" if redacted else ""
    header = (f"<h1>{_e(title)}</h1><p class=muted>MU Audit report · {_e(source['kind'])} {_e(source.get('id'))} · "
              f"created {_e(evidence['times'].get('report'))}{flag}</p>")
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><style>{_CSS}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>{header}{body}</body></html>")
