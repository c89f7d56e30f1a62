"""Unlearn: run an unlearning method, compute the retrained reference, compare accuracy."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st

from pages._lib import family, ui

ui.setup_page("Unlearn", ":material/cleaning_services:")
st.title(":material/cleaning_services: Unlearn")
st.caption("Apply an unlearning method to the forget request, and retrain from scratch as the yardstick.")

case = ui.current_case()
if not ui.need(case, "original", "forget"):
    st.stop()
ui.lock_notice(case, shown=("unlearn", "retrain", "compare"))

import pandas as pd  # noqa: E402

from mu_core.errors import AuditInputError  # noqa: E402
from mu_core.models.io import read_record  # noqa: E402
from mu_core.unlearn import LARGE_TRAINING_SET  # noqa: E402
from mu_core.workflow import (  # noqa: E402
    case_compare,
    case_forget_request,
    case_retrain,
    case_unlearn,
    case_use_method,
    case_utility,
)

request = case_forget_request(case)
original_record = read_record(case.file("original"))
n_train = len(original_record.train_indices) if original_record is not None else None
st.markdown(f"Forget request: **{request.describe()}**.")

# --- Method -------------------------------------------------------------------------------------
methods = family.methods(case)
left, right = st.columns(2)
with left:
    st.subheader("Unlearning method")
    method = st.selectbox("Method", methods, key="unlearn_method", format_func=lambda m: f"{m} – {family.method(case, m).summary}")
    impl = family.method(case, method)
    params = {}
    if n_train is not None and n_train >= LARGE_TRAINING_SET and impl.large:
        st.caption(f"The original trained on {n_train:,} samples, so this method starts from its large-data preset "
                   f"({', '.join(f'{k} {v}' for k, v in impl.large.items())}).")
    for name, default in family.method_preset(case, method, n_train).items():
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
    if st.button("Unlearn", type="primary", disabled=bool(job and job.running) or ui.locked(case, allow=("retrain", "compare")), key="unlearn_button"):
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
    if st.button(label, disabled=bool(job and job.running) or ui.locked(case, allow=("unlearn",)), key="retrain_button"):
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
family.model_note(case)
st.caption(
    "A good unlearning method brings forget accuracy close to the retrained model's while keeping retain "
    "and test accuracy. Lower than retrained is not better: it can itself reveal which samples were forgotten."
)
if case.entry("unlearned"):
    ui.link("membership", "Next: audit membership", ":material/arrow_forward:")

# --- Compare several methods ------------------------------------------------------------------------
st.subheader("Compare methods against retraining")
st.caption(
    "Runs each method with its default preset (or a small grid of learning rates and epochs, keeping the "
    "setting closest to retraining) and scores it as the SalUn paper does: UA = 1 - forget accuracy, RA = "
    "retain accuracy, TA = test accuracy (for a forgotten class, on the other classes), MIA-efficacy, and "
    "Avg. Gap = mean distance to retraining over those four. Lower gap is better; retraining is the ideal."
)
if family.classifiers_only(case, "Comparing methods (UA, RA, TA, MIA-efficacy)"):
    st.stop()
compare_key = ui.job_key(case, "compare")
c1, c2, c3, c4 = st.columns([4, 1, 1, 1], vertical_alignment="bottom")
chosen = c1.multiselect("Methods", methods, default=[m for m in ("finetune", "neggrad") if m in methods], key="compare_methods")
grid = c2.checkbox("Grid search", key="compare_grid", help="a few learning rates x epochs per method, scored by Avg. Gap")
floor = c3.checkbox("Noise floor", key="compare_floor",
                    help="retrain once more with another seed: the Avg. Gap exact unlearning itself shows; smaller gaps mean nothing")
repeats = int(c4.number_input("Repeats", 1, 10, 1, key="compare_repeats",
                              help="run every method and the retrain this many times with consecutive seeds and average, as papers do"))
job = ui.jobs().get(compare_key)
if st.button("Compare", type="primary", disabled=bool(job and job.running) or not chosen or ui.locked(case, allow=("unlearn",)), key="compare_button"):
    picked, use_grid, use_floor, use_repeats = list(chosen), bool(grid), bool(floor), repeats
    if ui.start_job(compare_key, f"Comparing {len(picked)} method(s)",
                    lambda progress: case_compare(case, picked, grid=use_grid, floor=use_floor, repeats=use_repeats, progress=progress)):
        st.rerun()
ui.job_status(compare_key)

compare_dir = case.file("compare")
if compare_dir is not None and (compare_dir / "compare.json").is_file():
    import json

    from mu_core.plots import gap_time_figure

    compared = json.loads((compare_dir / "compare.json").read_text())
    table = compared["methods"]
    for name, reason in compared.get("skipped", {}).items():
        st.warning(f"{name} was skipped: {reason}")
    frame = pd.DataFrame.from_dict(table, orient="index")[["ua", "ra", "ta", "mia_efficacy", "avg_gap", "seconds", "speedup"]]
    frame.index.name = "method"
    st.dataframe(
        frame.rename(columns={"ua": "UA", "ra": "RA", "ta": "TA", "mia_efficacy": "MIA-efficacy", "avg_gap": "Avg. Gap",
                              "seconds": "seconds", "speedup": "speed-up"}).style.format(
            {"UA": "{:.2%}", "RA": "{:.2%}", "TA": "{:.2%}", "MIA-efficacy": "{:.2%}", "Avg. Gap": "{:.2%}", "seconds": "{:.1f}", "speed-up": "{:.1f}x"}),
        key="compare_table",
    )
    original, noise = compared.get("original"), compared.get("noise_floor")
    if original:
        st.caption(
            f"Doing nothing (the original model, scored the same way) has Avg. Gap {original['avg_gap']:.2%}: a method "
            "should come in below it. MIA-efficacy is a mean over 16 SVC draws; its standard error is in the "
            "compare.json (`mia_efficacy_se`)."
        )
    if noise:
        st.info(
            f"Noise floor: retraining once more with seed {noise['seed']} lands {noise['avg_gap']:.2%} from the first "
            "retrain. Gaps below that cannot be told from exact unlearning.", icon=":material/equalizer:"
        )
    st.plotly_chart(gap_time_figure(table, original_gap=(original or {}).get("avg_gap"), floor_gap=(noise or {}).get("avg_gap")),
                    key="compare_chart")
    notes = {name: row["notes"] for name, row in table.items() if row.get("notes")}
    if notes:
        with st.expander("Notes from the methods (early stops, deviations)"):
            st.json(notes)
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    use = c1.selectbox("Audit this method's model", [m for m in table if m != "retrain"], key="compare_use")
    if c2.button("Use for the audit", key="compare_use_button", disabled=use is None or ui.locked(case, allow=("retrain", "compare"))):
        try:
            case_use_method(case, use)
            st.rerun()
        except AuditInputError as exc:
            ui.show_error(exc)
