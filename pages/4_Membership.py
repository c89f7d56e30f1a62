"""Membership: can an attacker still tell the forgotten samples from data the model never saw?"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st

from pages._lib import family, ui

ui.setup_page("Membership", ":material/policy:")
st.title(":material/policy: Membership inference")
st.caption(
    "Members are the forgotten samples; non-members are held-out samples of the same classes in the "
    "same proportions. Each attack scores both; the ROC shows how well the scores separate them, and the "
    "retrained model shows what perfect unlearning looks like."
)

case = ui.current_case()
if not ui.need(case, "original", "forget"):
    st.stop()

import pandas as pd  # noqa: E402

from mu_core.attacks import get_attack, list_attacks  # noqa: E402
from mu_core.audit.verdict import VERDICT_RULE  # noqa: E402
from mu_core.plots import exposure_figure, per_class_figure, roc_figure  # noqa: E402
from mu_core.workflow import case_audit  # noqa: E402

if not case.entry("unlearned"):
    st.info("This case has no unlearned model yet: the audit measures the original (and the retrained model, if any), "
            "but there is nothing to give a verdict on.")
    ui.link("unlearn", "Go to Unlearn", ":material/arrow_forward:")
elif not case.entry("retrained"):
    st.info("This case has no retrained model yet: the audit trains the exact retrains its reference needs "
            "(see Retrains below); with 0 retrains the reference is chance, AUC 0.5.")

with st.container(border=True):
    st.markdown("**Attacks**")
    offered, defaults = family.attacks(case)
    attacks = st.multiselect(
        "Attacks", offered, default=defaults, key="audit_attacks", label_visibility="collapsed",
        format_func=lambda a: f"{a}{' (reference models)' if get_attack(a).reference_models else ''}",
        help="The default attacks need no reference models. LiRA, RMIA, shadow, gradient_norm, U-LiRA and kaggle_epsilon train them once per case.",
    )
    with st.expander("What each attack assumes the attacker knows"):
        st.dataframe(pd.DataFrame([{"attack": a, "what it does": get_attack(a).summary, "score": get_attack(a).higher_means,
                                    "attacker knows": get_attack(a).knowledge} for a in list_attacks()]).set_index("attack"),
                     key="attack_table")
    needs_refs = any(get_attack(a).reference_models for a in attacks)
    needs_method = any(get_attack(a).needs_method for a in attacks)
    k = 16
    method = None
    if needs_refs:
        left, right = st.columns(2)
        k = left.slider("Reference models", 2, 64, 16, step=2, key="audit_refs",
                        help="Trained once with the original's recipe on random halves of the population, kept in the case and reused.")
        refs_file = case.path("references", "references.safetensors")
        if refs_file.is_file():
            right.caption("Reference models from an earlier audit are in this case; they are reused when their number matches.")
        from mu_core.executor import executor_settings, parallel_slots

        slots = parallel_slots()  # jobs at once under the executor in force (1 in this process)
        est_key = f"ref_estimate_{case.id}_{k}_{executor_settings().kind}_{slots}"
        if right.button("Estimate the training time", key="audit_estimate"):
            from mu_core.attacks.reference import estimate_reference_seconds
            from mu_core.data import DatasetSpec, load_dataset
            from mu_core.workflow import load_case_model

            _, record = load_case_model(case, "original")
            st.session_state[est_key] = estimate_reference_seconds(record, load_dataset(DatasetSpec.from_dict(record.dataset)), k)
        if est_key in st.session_state:
            side = f" ({slots} at a time on Ray, when trained one by one)" if slots > 1 else ""
            right.markdown(f"Estimated training time for {k} reference models: **{st.session_state[est_key]:.0f} s**{side}")
    if needs_method:
        from mu_core.unlearn import list_methods

        recorded = (case.entry("unlearned") or {}).get("method")
        options = ["(from the unlearned model)", *list_methods()]
        chosen = st.selectbox("Unlearning method to replicate (U-LiRA, kaggle_epsilon)", options, key="audit_method",
                              help=f"The unlearned model records '{recorded}'." if recorded else "The unlearned model records no method.")
        method = None if chosen == options[0] else chosen
    from mu_core.audit.retrains import DEFAULT_RETRAINS, MAX_RETRAINS, retrains_note
    from mu_core.models.io import read_record

    left, right = st.columns(2)
    retrains = left.number_input(  # a diffusion model's retrain costs minutes: none by default, as on the CLI
        "Retrains", 0, MAX_RETRAINS, 0 if family.is_diffusion(case) else DEFAULT_RETRAINS, 1, key="audit_retrains",
        help="Exact retrains (the original's recipe, consecutive seeds) whose spread the verdict's test includes: two retrains "
             "differ by chance, and an unlearned model must be judged against that spread. The case's retrained model counts "
             "as the first; the rest are trained once and kept in the case.")
    from mu_core.executor import parallel_slots

    note_key = (f"retrains_note_{case.id}_{(case.entry('original') or {}).get('sha256')}_{int(retrains)}_{bool(case.entry('retrained'))}"
                f"_{parallel_slots()}")
    if note_key not in st.session_state:  # an imported model without a recorded training time is timed once
        original = read_record(case.file("original"))
        trained_in = (case.entry("original") or {}).get("summary", {}).get("train_seconds")  # model files keep no timings
        if trained_in:
            original = original.with_updates(metrics={**original.metrics, "train_seconds": trained_in})
        st.session_state[note_key] = retrains_note(original, int(retrains), int(bool(case.entry("retrained"))),
                                                   int((case.entry("forget") or {}).get("count", 0)), case.path("references"))
    right.caption(st.session_state[note_key])
    with st.expander("Verdict settings"):
        c1, c2, c3 = st.columns(3)
        margin = c1.number_input("Equivalence margin (AUC)", 0.01, 0.49, 0.1, 0.01, key="audit_margin")
        alpha = c2.number_input("alpha", 0.001, 0.2, 0.05, 0.005, format="%.3f", key="audit_alpha")
        bootstrap = c3.number_input("Bootstrap resamples", 20, 2000, 200, 20, key="audit_bootstrap")
        st.caption(VERDICT_RULE)

audit_key = ui.job_key(case, "audit")
job = ui.jobs().get(audit_key)
if st.button("Run audit", type="primary", icon=":material/play_arrow:", disabled=bool(job and job.running), key="audit_button"):
    chosen_attacks = list(attacks) or defaults
    settings = {"reference_models": int(k), "method": method, "margin": float(margin), "alpha": float(alpha), "bootstrap": int(bootstrap),
                "retrains": int(retrains)}
    if ui.start_job(audit_key, "Membership audit", lambda progress: case_audit(case, chosen_attacks, progress=progress, **settings)):
        st.rerun()
ui.job_status(audit_key)

report_path = case.file("audit")
if report_path is None or not (report_path / "report.json").is_file():
    st.stop()
report = json.loads((report_path / "report.json").read_text())

st.subheader("Verdict")
verdict = report.get("verdict", "inconclusive")
show = {"forgotten": st.success, "not_forgotten": st.error}.get(verdict, st.warning)
icon = {"forgotten": ":material/check_circle:", "not_forgotten": ":material/error:"}.get(verdict, ":material/help:")
show(f"**{verdict.replace('_', ' ').capitalize()}.** {report.get('verdict_reason', '')}", icon=icon)
if report.get("over_unlearning"):
    st.warning("Over-unlearning: the forget set now looks less member-like than retraining would leave it.", icon=":material/warning:")
demo = case.entry("demo") or {}
if demo and demo.get("unlearned_sha256") == (case.entry("unlearned") or {}).get("sha256"):
    show_retrain = {"forgotten": st.success, "not_forgotten": st.error}.get(demo["retrain_verdict"], st.warning)
    show_retrain(f"**The exact retrain, audited the same way: {demo['retrain_verdict'].replace('_', ' ')}.** {demo['retrain_reason']} "
                 f"(demo: {demo['weak_method']} is the weak method above; built in {demo['seconds']['cpu']:.0f} s of CPU time)",
                 icon=":material/school:")
power = report.get("power") or {}
reference = report.get("reference") or {}
if power:
    st.markdown("**Power**: can the audit tell even the untouched original from the reference? "
                + ("Yes: at least one attack does, with confidence." if report.get("has_power") else
                   "No: so a verdict of *forgotten* cannot be given (see the reason above)."))
    rows = [{"attack": a, "original - reference (AUC)": p["d"], "low": p["d_ci"][0], "high": p["d_ci"][1],
             "retrains' AUC sd": (reference.get("auc_spread", {}).get(a) or {}).get("sd"),
             "retrains' AUC range": (reference.get("auc_spread", {}).get(a) or {}).get("range")} for a, p in power.items()]
    st.dataframe(pd.DataFrame(rows).style.format({c: "{:+.3f}" for c in ("original - reference (AUC)", "low", "high")} |
                                                 {"retrains' AUC sd": "{:.3f}", "retrains' AUC range": "{:.3f}"}, na_rep="n/a"),
                 hide_index=True, key="power_table")
if reference:
    st.caption(f"Reference: {reference.get('retrains', 0)} exact retrain(s), seeds {reference.get('seeds')}"
               + (f", {reference['trained']} trained by this audit." if reference.get("trained") else "."))
with st.expander("How the verdict is decided"):
    st.markdown(report.get("verdict_rule", VERDICT_RULE))
    detail = report.get("verdict_detail") or {}
    if detail:
        st.dataframe(pd.DataFrame(detail).T, key="verdict_detail")

roc_attacks = {a: r for a, r in report["attacks"].items() if report["attack_info"][a]["kind"] == "roc" and "not_run" not in r}
rows = []
for attack, per_model in roc_attacks.items():
    for role, r in per_model.items():
        ci = r.get("auc_ci") or [None, None]
        rows.append({"attack": attack, "model": role, "AUC": r["auc"], "AUC 95% low": ci[0], "AUC 95% high": ci[1],
                     "epsilon lower bound": r.get("epsilon_lower"),
                     "TPR @ 1% FPR": r.get("tpr_at_1pct_fpr"), "TPR @ 0.1% FPR": r.get("tpr_at_0p1pct_fpr"),
                     "seconds": report["provenance"].get("attack_seconds", {}).get(attack)})
if rows:
    st.subheader("Attacks at a glance")
    summary = pd.DataFrame(rows)
    numeric = [c for c in summary.columns if c not in ("attack", "model")]
    summary[numeric] = summary[numeric].apply(pd.to_numeric, errors="coerce")  # None -> NaN, shown as n/a
    st.dataframe(summary.style.format(
        {"AUC": "{:.3f}", "AUC 95% low": "{:.3f}", "AUC 95% high": "{:.3f}", "epsilon lower bound": "{:.2f}", "TPR @ 1% FPR": "{:.1%}",
         "TPR @ 0.1% FPR": "{:.1%}",
         "seconds": "{:.1f}"}, na_rep="n/a"), key="attack_summary", hide_index=True)
    st.caption("TPR at a low FPR needs at least 1/FPR non-members to mean anything; it shows n/a when there are fewer. "
               + report.get("epsilon_note", ""))

for attack, result in report["attacks"].items():
    if "not_run" in result:
        st.info(result["not_run"], icon=":material/info:")
    elif report["attack_info"][attack]["kind"] != "roc":
        st.markdown(f"#### {attack}")
        st.caption(report["attack_info"][attack]["summary"])
        cols = st.columns(3)
        cols[0].metric("Forgetting quality (of 1)", f"{result.get('forgetting_quality', 0):.3f}")
        cols[1].metric("Score", f"{result.get('score', 0):.3f}")
        cols[2].metric("Median epsilon", "n/a" if result.get("epsilon_median") is None else f"{result['epsilon_median']:.2f}")
        st.json(result, expanded=False)

if roc_attacks:
    st.subheader("ROC curves")
    picked = st.selectbox("Attack", list(roc_attacks), key="roc_attack")
    per_model = roc_attacks[picked]
    info = report["attack_info"][picked]
    st.caption(f"{info['summary']}. Score: {info['higher_means']}. Attacker knows: {info['knowledge']}.")
    left, right = st.columns(2)
    left.plotly_chart(roc_figure(per_model, log_scale=False, title=f"{picked}: ROC"), key="roc_lin")
    right.plotly_chart(roc_figure(per_model, log_scale=True, title=f"{picked}: ROC, log-log"), key="roc_log")
    st.plotly_chart(per_class_figure(per_model, title=f"{picked}: AUC within each class"), key="per_class")

records = report.get("records") or []
if records:
    from mu_core.data import DatasetSpec, load_dataset

    st.subheader("Forgotten records")
    counts = report.get("record_counts") or pd.Series([r["verdict"] for r in records]).value_counts().to_dict()
    cols = st.columns(3)
    for col, (name, label) in zip(cols, [("forgotten", "Forgotten"), ("not_forgotten", "Not forgotten"), ("inconclusive", "Inconclusive")],
                                  strict=True):
        col.metric(label, int(counts.get(name, 0)))
    st.caption(f"Per-record verdicts under the {records[0]['attack']} attack. *Forgotten* needs positive evidence: the original "
               "exposed the record (more than any retrain) and the unlearned model no longer does; a record the original never "
               "exposed is *inconclusive*, not forgotten. Exposure = -log2 of the share of held-out samples that score at least "
               "as high (0: typical of unseen data).")
    st.plotly_chart(exposure_figure(records), key="exposure")
    data = load_dataset(DatasetSpec.from_dict(report["provenance"]["dataset"]))
    table = pd.DataFrame(records)
    table.insert(0, "image", [ui.data_uri(data.x_train[i]) for i in table["index"]])
    st.dataframe(
        table[["image", "index", "class", "score", "p_value", "exposure", "retrained_p_value", "original_p_value", "verdict"]],
        column_config={"image": st.column_config.ImageColumn("sample", width="small"),
                       "p_value": st.column_config.NumberColumn("p (unlearned)", format="%.3f"),
                       "retrained_p_value": st.column_config.NumberColumn("p (retrains, median)", format="%.3f"),
                       "original_p_value": st.column_config.NumberColumn("p (original)", format="%.3f"),
                       "exposure": st.column_config.NumberColumn(format="%.2f"), "score": st.column_config.NumberColumn(format="%.3f")},
        hide_index=True, key="records_table",
    )

st.subheader("Utility")
st.dataframe(pd.DataFrame(report["utility"]).T.style.format("{:.1%}"), key="audit_utility")
cols = st.columns(4)
for col, (name, label) in zip(cols, [("report.json", "report.json"), ("scores.csv", "per-sample scores (CSV)"),
                                     ("roc.csv", "ROC points (CSV)"), ("records.csv", "per-record verdicts (CSV)")], strict=True):
    if (report_path / name).is_file():
        col.download_button(f"Download {label}", (report_path / name).read_bytes(), name, key=f"dl_{name}")
