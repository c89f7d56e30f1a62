"""Unlearn: run an unlearning method, compute the retrained reference, compare accuracy."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st

from pages._lib import ui

ui.setup_page("Unlearn", ":material/cleaning_services:")
st.title(":material/cleaning_services: Unlearn")
st.caption("Apply an unlearning method to the forget request, and retrain from scratch as the yardstick.")

case = ui.current_case()
if not ui.need(case, "original", "forget"):
    st.stop()

import pandas as pd  # noqa: E402

from mu_core.errors import AuditInputError  # noqa: E402
from mu_core.unlearn import get_method, list_methods  # noqa: E402
from mu_core.workflow import case_forget_request, case_retrain, case_unlearn, case_utility  # noqa: E402

request = case_forget_request(case)
st.markdown(f"Forget request: **{request.describe()}**.")

# --- Method -------------------------------------------------------------------------------------
methods = [m for m in list_methods() if m != "retrain"]
left, right = st.columns(2)
with left:
    st.subheader("Unlearning method")
    method = st.selectbox("Method", methods, key="unlearn_method", format_func=lambda m: f"{m} – {get_method(m).summary}")
    impl = get_method(method)
    params = {}
    for name, default in impl.defaults.items():
        key = f"param_{method}_{name}"
        help_text = impl.help.get(name)
        if isinstance(default, bool):
            params[name] = st.checkbox(name, value=default, key=key, help=help_text)
        elif isinstance(default, int):
            params[name] = int(st.number_input(name, value=default, step=1, key=key, help=help_text))
        elif isinstance(default, float):
            params[name] = float(st.number_input(name, value=default, format="%.6g", key=key, help=help_text))
        else:
            params[name] = st.text_input(name, value=str(default), key=key, help=help_text)
    with st.expander("About this method"):
        st.markdown((type(impl).__doc__ or "").strip())
    unlearn_key = ui.job_key(case, "unlearn")

    job = ui.jobs().get(unlearn_key)
    if st.button("Unlearn", type="primary", disabled=bool(job and job.running), key="unlearn_button"):
        if ui.start_job(unlearn_key, f"Unlearning with {method}", lambda progress: case_unlearn(case, method, params, progress=progress)):
            st.rerun()
    ui.job_status(unlearn_key)

with right:
    st.subheader("Retrained reference")
    st.caption(
        "Retraining from scratch without the forget set, with the original's recipe and seed, is "
        "exact unlearning: every method and every attack is compared with it."
    )
    retrain_key = ui.job_key(case, "retrain")
    job = ui.jobs().get(retrain_key)
    label = "Recompute retrained model" if case.entry("retrained") else "Compute retrained model"
    if st.button(label, disabled=bool(job and job.running), key="retrain_button"):
        if ui.start_job(retrain_key, "Retraining from scratch", lambda progress: case_retrain(case, progress=progress)):
            st.rerun()
    ui.job_status(retrain_key)

# --- Comparison -----------------------------------------------------------------------------------
st.subheader("Accuracy: original, unlearned, retrained")


@st.cache_data(show_spinner="Measuring accuracy…", max_entries=32)
def utility(case_id: str, fingerprint: tuple) -> dict:
    return case_utility(ui.store().get(case_id))


fingerprint = tuple((case.entry(k) or {}).get("sha256") for k in ("original", "forget", "unlearned", "retrained"))
try:
    table = utility(case.id, fingerprint)
except AuditInputError as exc:
    ui.show_error(exc)
    st.stop()
rows = []
for role, acc in table.items():
    entry = case.entry(role) or {}
    rows.append({"model": role, "method": entry.get("summary", {}).get("method", "–"),
                 "forget accuracy": acc["forget_acc"], "retain accuracy": acc["retain_acc"], "test accuracy": acc["test_acc"]})
frame = pd.DataFrame(rows).set_index("model")
st.dataframe(frame.style.format({c: "{:.1%}" for c in frame.columns if "accuracy" in c}), key="utility_table")
st.caption(
    "A good unlearning method brings forget accuracy close to the retrained model's while keeping retain "
    "and test accuracy. Lower than retrained is not better: it can itself reveal which samples were forgotten."
)
if case.entry("unlearned"):
    ui.link("membership", "Next: audit membership", ":material/arrow_forward:")
