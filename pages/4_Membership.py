"""Membership: can an attacker still tell the forgotten samples from data the model never saw?"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st

from pages._lib import ui

ui.setup_page("Membership", ":material/policy:")
st.title(":material/policy: Membership inference")
st.caption(
    "Members are the forgotten samples; non-members are held-out test samples of the same classes in the "
    "same proportions. An attack scores each; the ROC shows how well the scores separate them."
)

case = ui.current_case()
if not ui.need(case, "original", "forget"):
    st.stop()

import pandas as pd  # noqa: E402

from mu_core.attacks import DEFAULT_ATTACKS, get_attack, list_attacks  # noqa: E402
from mu_core.plots import roc_figure  # noqa: E402
from mu_core.workflow import case_audit  # noqa: E402

missing = [role for role in ("unlearned", "retrained") if not case.entry(role)]
if missing:
    st.info(f"This case has no {' and no '.join(missing)} model yet; the audit covers the models it has.")
    ui.link("unlearn", "Go to Unlearn", ":material/arrow_forward:")

attacks = st.multiselect("Attacks", list_attacks(), default=list(DEFAULT_ATTACKS), key="audit_attacks",
                         format_func=lambda a: f"{a} – {get_attack(a).summary}")
audit_key = ui.job_key(case, "audit")


job = ui.jobs().get(audit_key)
if st.button("Run audit", type="primary", disabled=bool(job and job.running), key="audit_button"):
    chosen = list(attacks) or list(DEFAULT_ATTACKS)
    if ui.start_job(audit_key, "Membership audit", lambda progress: case_audit(case, chosen, progress=progress)):
        st.rerun()
ui.job_status(audit_key)

report_path = case.file("audit")
if report_path is None or not (report_path / "report.json").is_file():
    st.stop()
report = json.loads((report_path / "report.json").read_text())

st.subheader("Results")
st.markdown(report["summary"])
for attack, per_model in report["attacks"].items():
    info = report.get("attack_info", {}).get(attack, {})
    st.markdown(f"#### {attack}")
    st.caption(f"{info.get('summary', '')}. Score: {info.get('higher_means', '')}. Attacker knows: {info.get('knowledge', '')}.")
    left, right = st.columns(2)
    left.plotly_chart(roc_figure(per_model, log_scale=False, title=f"{attack}: ROC"), key=f"roc_lin_{attack}")
    right.plotly_chart(roc_figure(per_model, log_scale=True, title=f"{attack}: ROC, log-log"), key=f"roc_log_{attack}")
    rows = [
        {"model": role, "AUC": r["auc"], "TPR @ 1% FPR": r.get("tpr_at_1pct_fpr"), "TPR @ 0.1% FPR": r.get("tpr_at_0p1pct_fpr"),
         "members": r["n_members"], "non-members": r["n_nonmembers"]}
        for role, r in per_model.items()
    ]
    st.dataframe(pd.DataFrame(rows).set_index("model").style.format(
        {"AUC": "{:.3f}", "TPR @ 1% FPR": "{:.1%}", "TPR @ 0.1% FPR": "{:.1%}"}, na_rep="n/a (too few non-members)"), key=f"table_{attack}")
st.caption(
    "AUC 0.5 means the attack cannot tell forgotten samples from unseen ones. Compare the unlearned model with "
    "the retrained one (dashed): that is what perfect unlearning looks like. TPR at a low FPR needs at least "
    "1/FPR non-members to mean anything, so it is left out when there are fewer."
)
utility = pd.DataFrame(report["utility"]).T
st.dataframe(utility.style.format("{:.1%}"), key="audit_utility")
c1, c2 = st.columns(2)
c1.download_button("Download report.json", (report_path / "report.json").read_bytes(), "report.json", key="dl_report")
if (report_path / "scores.csv").is_file():
    c2.download_button("Download per-sample scores (CSV)", (report_path / "scores.csv").read_bytes(), "scores.csv", key="dl_scores")
