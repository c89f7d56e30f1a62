"""Forget: choose the training samples to forget, and look at them."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st

from pages._lib import ui

ui.setup_page("Forget", ":material/delete_sweep:")
st.title(":material/delete_sweep: Forget request")
st.caption("Which training samples the data owners ask the model to forget.")

case = ui.current_case()
if not ui.need(case, "original"):
    st.stop()
ui.lock_notice(case)

import numpy as np  # noqa: E402

from mu_core.data import DatasetSpec, load_dataset  # noqa: E402
from mu_core.errors import AuditInputError  # noqa: E402
from mu_core.forget import class_request, explicit_request, parse_indices, random_request  # noqa: E402
from mu_core.models.io import read_record  # noqa: E402
from mu_core.plots import class_histogram  # noqa: E402
from mu_core.workflow import case_forget_request, case_set_forget  # noqa: E402

record = read_record(case.file("original"))
try:
    data = load_dataset(DatasetSpec.from_dict(record.dataset))
except AuditInputError as exc:
    ui.show_error(exc)
    st.stop()
train_idx = record.train_indices
labels = data.y_train.numpy()
st.caption(f"The model was trained on {len(train_idx)} samples of **{data.spec.name}** ({data.num_classes} classes).")

# --- Choose -------------------------------------------------------------------------------------
mode = st.radio("Choose by", ["Random samples", "A class (or part of one)", "Indices"], horizontal=True, key="forget_mode")
try:
    if mode == "Random samples":
        c1, c2 = st.columns(2)
        k = c1.number_input("How many", min_value=1, max_value=max(1, len(train_idx) - 1), value=min(100, len(train_idx) - 1), key="forget_k")
        seed = c2.number_input("Seed", min_value=0, value=0, key="forget_seed")
        make = lambda: random_request(train_idx, int(k), seed=int(seed))  # noqa: E731
    elif mode == "A class (or part of one)":
        c1, c2, c3 = st.columns(3)
        cls = c1.selectbox("Class", range(data.num_classes), format_func=lambda c: f"{c}: {data.class_names[c]}", key="forget_class")
        share = c2.slider("Share of the class", 0.05, 1.0, 1.0, 0.05, key="forget_share", help="1.0 forgets the whole class")
        seed = c3.number_input("Seed", min_value=0, value=0, key="forget_class_seed")
        make = lambda: class_request(train_idx, labels, int(cls), share=float(share), seed=int(seed), class_names=data.class_names)  # noqa: E731
    else:
        text = st.text_area("Training-split indices, one per line (or comma-separated)", key="forget_text")
        upload = st.file_uploader("…or a file: one index per line, or a CSV with an 'index' column", type=["txt", "csv"], key="forget_file")

        def make():
            if upload is not None:
                values = parse_indices(upload.getvalue().decode("utf-8", errors="replace"), source=f"'{upload.name}'")
            else:
                values = parse_indices(text.replace(",", "\n"), source="the list")
            return explicit_request(values, train_idx, record.n_train_split)
except AuditInputError as exc:
    ui.show_error(exc)
    st.stop()

if case.entry("unlearned") or case.entry("retrained"):
    st.caption("Saving a new request replaces the unlearned and retrained models and the audit made for the current one.")
if st.button("Save forget request", type="primary", key="forget_save", disabled=ui.locked(case)):
    try:
        case_set_forget(case, make())
        st.rerun()
    except AuditInputError as exc:
        ui.show_error(exc)

# --- The current request --------------------------------------------------------------------------
if case.entry("forget"):
    request = case_forget_request(case)
    st.subheader("Current request")
    st.markdown(f"**{request.describe()}**")
    counts = np.bincount(labels[request.indices], minlength=data.num_classes)
    left, right = st.columns([2, 3])
    with left:
        st.plotly_chart(class_histogram({data.class_names[c]: int(n) for c, n in enumerate(counts)}), key="forget_hist")
    with right:
        shown = request.indices[:60]
        thumbs = [ui.thumbnail(data.x_train[int(i)]) for i in shown]
        st.image(thumbs, caption=[f"#{int(i)} · {data.class_names[labels[i]]}" for i in shown], width=56)
        if len(request) > len(shown):
            st.caption(f"Showing the first {len(shown)} of {len(request)} samples.")
    st.download_button("Download the request (one index per line)", "".join(f"{int(i)}\n" for i in request.indices), "forget.txt", key="forget_download")
    ui.link("unlearn", "Next: unlearn these samples", ":material/arrow_forward:")
