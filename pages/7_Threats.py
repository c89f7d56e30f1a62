"""Threats: unlearning as an attack surface, backdoors as a deletion check, and request screening."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st

from pages._lib import ui

ui.setup_page("Threats", ":material/gpp_maybe:")
st.title(":material/gpp_maybe: Threats lab")
st.caption(
    "Unlearning is itself an attack surface: crafted requests can misclassify a chosen sample, burn test accuracy or erase more "
    "than they ask; backdoors are both a threat unlearning should remove and a way for a data owner to check deletion, which a "
    "dishonest provider may try to fool. Each threat runs on this case's original model (threats that poison training data "
    "retrain with its recipe) and keeps its numbers in the case."
)

case = ui.current_case()
if not ui.need(case, "original"):
    st.stop()

from mu_core.threats import get_threat, list_threats, threat_params  # noqa: E402
from mu_core.threats.figures import screen_figure, threat_figure  # noqa: E402
from mu_core.threats.workflow import case_screen, case_screen_result, case_threat, case_threat_results  # noqa: E402
from mu_core.unlearn import list_methods  # noqa: E402

# --- Threats ------------------------------------------------------------------------------------------
st.subheader("Threats")
name = st.selectbox("Threat", list_threats(), key="threat_name")
threat = get_threat(name)
st.markdown(f"**{threat.summary.capitalize()}.**  \n_{threat.paper}._")

defaults = threat_params(name)
chosen = {}
cols = st.columns(min(4, len(defaults)))
for i, (key, default) in enumerate(defaults.items()):
    col, label, help_text = cols[i % len(cols)], key.replace("_", " "), threat.help.get(key)
    widget_key = f"threat_{name}_{key}"
    if isinstance(default, bool):
        chosen[key] = col.toggle(label, value=default, key=widget_key, help=help_text)
    elif isinstance(default, int):
        chosen[key] = int(col.number_input(label, value=default, step=1, key=widget_key, help=help_text))
    elif isinstance(default, float):
        chosen[key] = float(col.number_input(label, value=default, step=0.01, format="%.3f", key=widget_key, help=help_text))
    else:
        chosen[key] = col.text_input(label, value=str(default), key=widget_key, help=help_text)

threat_key = ui.job_key(case, f"threat:{name}")
job = ui.jobs().get(threat_key)
if st.button(f"Run {name}", type="primary", icon=":material/play_arrow:", disabled=bool(job and job.running), key="threat_run"):
    if ui.start_job(threat_key, f"Threat {name}", lambda progress: case_threat(case, name, chosen, progress=progress)):
        st.rerun()
ui.job_status(threat_key)

results = case_threat_results(case)
data = results.get(name)
if data is None:
    st.caption("No result yet for this threat on this case's model.")
else:
    st.info(data["conclusion"], icon=":material/lightbulb:")
    st.plotly_chart(threat_figure(data), key=f"threat_chart_{name}")
    with st.expander("Settings and numbers"):
        st.json({"settings": data["settings"], "numbers": data["numbers"]}, expanded=False)
    st.download_button("Download threat.json", json.dumps(data, indent=1), f"{name}.json", key="threat_download")
others = [n for n in results if n != name]
if others:
    st.caption("Also kept in this case: " + ", ".join(others) + ".")

# --- Screening ---------------------------------------------------------------------------------------
st.subheader("Screen the forget request")
st.caption(
    "Before running a request: are all its samples training samples (by index and content), does its gradient influence "
    "concentrate on a few samples or one class compared with random requests of the same size (Qian et al.'s defense), "
    "and does a dry run of the method on a copy keep test accuracy? Decision: reject, review or accept."
)
if not ui.need(case, "forget"):
    st.stop()
methods = list_methods()
c1, c2 = st.columns(2)
method = c1.selectbox("Method of the dry run", methods, index=methods.index("neggrad"), key="screen_method")
tolerance = float(c2.number_input("Accuracy tolerance", 0.001, 0.5, 0.05, step=0.01, format="%.3f", key="screen_tolerance"))
screen_key = ui.job_key(case, "screen")
screen_job = ui.jobs().get(screen_key)
if st.button("Screen the request", icon=":material/policy:", disabled=bool(screen_job and screen_job.running), key="screen_run"):
    if ui.start_job(screen_key, "Screening", lambda progress: case_screen(case, method, tolerance=tolerance, progress=progress)):
        st.rerun()
ui.job_status(screen_key)
screened = case_screen_result(case)
if screened is not None:
    decision = screened["decision"]
    show = {"accept": st.success, "review": st.warning, "reject": st.error}[decision]
    show(f"Decision: **{decision}** (dry run with {screened['settings']['method']}).")
    for check in screened["checks"]:
        st.markdown(f"{':material/check_circle:' if check['passed'] else ':material/cancel:'} **{check['name']}**: {check['detail']}")
    if screened["numbers"]["influence"]:
        st.plotly_chart(screen_figure(screened), key="screen_chart")
