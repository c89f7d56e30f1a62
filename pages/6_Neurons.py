"""Neurons: which units did unlearning change, what did they encode, is the forgotten concept still there?"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st

from pages._lib import family, ui

ui.setup_page("Neurons", ":material/psychology:")
st.title(":material/psychology: Neurons")
st.caption(
    "Which neurons did unlearning change, what do they respond to, and is the forgotten class still represented? "
    "Each model's neurons are labelled on their own, automatically, from the dataset's class names and rendered "
    "patterns (strokes, stripes, checkers, blobs, shapes); attributions come from Captum. When the operator configured an "
    "open_clip checkpoint, a foundation model labels every neuron a second time from a concept vocabulary, side by side."
)

case = ui.current_case()
if family.classifiers_only(case, "The Neurons page"):
    st.stop()
if not ui.need(case, "original", "forget"):
    st.stop()
if not (case.entry("unlearned") or case.entry("retrained")):
    st.info("First run an unlearning method, or compute the retrained model, on the **Unlearn** page.")
    ui.link("unlearn", "Go to Unlearn", ":material/arrow_forward:")
    st.stop()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mu_core.errors import AuditInputError  # noqa: E402
from mu_core.neurons.figures import attribution_figure, cka_figure, conductance_figure, crop, stats_figure  # noqa: E402
from mu_core.neurons.foundation import agreement_totals, configured_clip  # noqa: E402
from mu_core.neurons.results import array_key, load_explanation  # noqa: E402

# --- Compute (a background job; results are cached in the case) ---------------------------------
explain_key = ui.job_key(case, "neurons")
entry = case.entry("neurons")
job = ui.jobs().get(explain_key)
label = "Recompute explanations" if entry else "Explain neurons"
clip = configured_clip()
if clip:
    st.caption(f"Foundation-model labels: open_clip **{Path(clip['model_name']).name}** from `{Path(clip['checkpoint']).name}`, "
               f"concepts from `{Path(clip['vocabulary']).name if clip['vocabulary'] else 'assets/concepts.txt'}`.")
else:
    st.caption("Foundation-model labels are off: set MU_AUDIT_CLIP_CHECKPOINT (an open_clip .safetensors file on disk) and, if "
               "needed, MU_AUDIT_CLIP_MODEL and MU_AUDIT_CLIP_VOCABULARY before starting the app (see the README).")
if st.button(label, type="primary", disabled=bool(job and job.running), key="neurons_button"):
    from mu_core.neurons.labels import get_labeller
    from mu_core.workflow import case_explain

    try:
        compare = get_labeller("open_clip", **clip) if clip else None
    except AuditInputError as exc:
        ui.show_error(exc)
        st.stop()
    if ui.start_job(explain_key, "Explaining neurons", lambda progress: case_explain(case, compare_labeller=compare, progress=progress)):
        st.rerun()
ui.job_status(explain_key)

folder = case.file("neurons")
if folder is None or not (folder / "neurons.json").is_file():
    st.caption("Explains every conv/linear layer of the original, unlearned and retrained models; takes a few seconds for "
               "the small built-in models.")
    st.stop()


@st.cache_data(show_spinner=False, max_entries=8)
def stored(path: str, stamp: float) -> tuple[dict, dict]:
    return load_explanation(path)


@st.cache_data(show_spinner="Computing the neuron's attribution with Captum…", max_entries=64)
def neuron_map(model_path: str, stamp: float, layer: str, neuron: int, x: np.ndarray, method: str, target: int) -> np.ndarray:
    """A neuron attribution that was not precomputed, for one forget sample (cached per model file)."""
    import torch

    from mu_core.models import load_model
    from mu_core.neurons.attributions import neuron_attribution

    model, _ = load_model(model_path)
    return neuron_attribution(model, layer, neuron, torch.from_numpy(x), method=method, target=target)


try:
    data, arrays = stored(str(folder), (folder / "neurons.npz").stat().st_mtime)
except (AuditInputError, OSError) as exc:
    ui.show_error(exc)
    st.stop()
current = {role: (case.entry(role) or {}).get("sha256") for role in data["models"]}
if current != entry.get("sources", current):
    st.warning("The case's models changed since these explanations were computed; recompute them.")
models = data["models"]

# --- Is the forgotten concept still there? ------------------------------------------------------
st.subheader("Is the forgotten concept still there?")
counts = data["forgotten_concept_neurons"]
if counts["classes"]:
    st.caption(f"Neurons (over {len(data['layers'])} layers) whose automatic label is the forgotten class "
               f"{', '.join(counts['classes'])}: each model labelled on its own.")
    cols = st.columns(4)
    cols[0].metric("Original (before)", counts["before"])
    if counts.get("after") is not None:
        cols[1].metric("Unlearned (after)", counts["after"], delta=counts["after"] - counts["before"], delta_color="inverse")
    if counts.get("retrained") is not None:
        cols[2].metric("Retrained", counts["retrained"], delta=counts["retrained"] - counts["before"], delta_color="inverse")
    agreement = data["final_layer_label_agreement"]
    cols[3].metric("Output units labelled with their class", "–" if agreement is None else f"{agreement:.0%}")
else:
    st.info(f"No class was forgotten as a whole ({counts.get('note', '')}), so no concept is counted; the layer explorer "
            "below still shows what changed.")

st.plotly_chart(cka_figure(data["cka"]), key="neurons_cka")
st.caption("CKA compares whole representations, so it also compares a model retrained from scratch, whose units do not "
           "match the original's. Unlearning that worked leaves retain data represented as before (high CKA) and moves "
           "forget data towards the retrained model's representation.")

# --- Layer explorer -------------------------------------------------------------------------------
st.subheader("Layer explorer")
layer_names = [layer["name"] for layer in data["layers"]]
layer = st.selectbox("Layer", layer_names, key="neurons_layer",
                     format_func=lambda n: f"{n} ({next(x for x in data['layers'] if x['name'] == n)['units']} neurons)")
split = st.radio("Data", ["forget", "retain", "test"], horizontal=True, key="neurons_split")
st.plotly_chart(stats_figure(arrays, models, layer, split), key="neurons_stats")

by_model = {role: [n for n in data["neurons"] if n["layer"] == layer and n["model"] == role] for role in models}
table = pd.DataFrame({"neuron": range(len(by_model["original"]))})
change = arrays.get(array_key("change", layer))
if change is not None:
    table["change (forget)"] = change
    table["change (retain)"] = arrays[array_key("change_retain", layer)]
for role in models:
    table[f"{role} label"] = [n["label"] or "–" for n in by_model[role]]
    table[f"{role} score"] = [n["score"] for n in by_model[role]]
if change is not None:
    table = table.sort_values("change (forget)", ascending=False)
st.dataframe(table.set_index("neuron").style.format({c: "{:.2f}" for c in table.columns if "change" in c or "score" in c}),
             height=280, key="neurons_table")
st.caption("Change: mean absolute change of the neuron's activation on forget (or retain) samples between the original and "
           "the unlearned model, in units of the original's spread. Score: selectivity, the AUC of the label's probes against "
           "the other classes' (for a class) or against the other patterns and real images (for a pattern); 0.5 = none. "
           "Classes come first; a neuron is unlabelled when no concept is significant. Retrained units are numbered "
           "independently.")
with st.expander("Label counts in this layer"):
    st.dataframe(pd.DataFrame({role: pd.Series(data["label_counts"][role][layer]) for role in models}).fillna(0).astype(int),
                 key="neurons_label_counts")

# --- Two labellings side by side --------------------------------------------------------------------
compared = data.get("compared_labeller")
if compared:
    first = data["labeller"]
    st.subheader("Two labellings side by side")
    totals = agreement_totals(data)
    cols = st.columns(len(models))
    for col, role in zip(cols, models, strict=True):
        t = totals.get(role, {})
        col.metric(f"{role}: labels agree", "–" if t.get("share") is None else f"{t['share']:.0%}",
                   help=f"{t.get('agree', 0)} of {t.get('labelled_by_both', 0)} neurons labelled by both, over {len(data['layers'])} layers")
    side_role = st.radio("Model", models, horizontal=True, key="neurons_side_model")
    rows = [n for n in data["neurons"] if n["layer"] == layer and n["model"] == side_role]

    def best(concepts: list[dict] | None) -> str:
        return ", ".join(f"{c['name']} ({c['score']:.2f})" for c in concepts or []) or "–"

    side = pd.DataFrame({
        "neuron": [n["index"] for n in rows],
        f"{first} label": [n["label"] or "–" for n in rows],
        f"{first} score": [n["score"] for n in rows],
        f"{compared} label": [n["compared"]["label"] or "–" for n in rows],
        f"{compared} score": [n["compared"]["score"] for n in rows],
        "best concepts": [best(n["compared"].get("concepts") or n.get("concepts")) for n in rows],
        "agree": [{True: "yes", False: "no", None: "–"}[n["compared"]["agree"]] for n in rows],
    })
    if change is not None and side_role in ("original", "unlearned"):
        side = side.iloc[np.argsort(-change[side["neuron"].to_numpy()], kind="stable")]
    st.dataframe(side.set_index("neuron").style.format({c: "{:.2f}" for c in side.columns if c.endswith("score")}), height=280,
                 key="neurons_side_table")
    settings = data.get("labeller_settings", {}).get("open_clip", {})
    st.caption("Agree: both label the neuron, and one's label is the other's label or among its best concepts. The open_clip "
               "score is CLIP-Dissect's soft-WPMI (higher: the concept fits the neuron's most-activating probes better than the "
               f"probes at large); its concepts come from a vocabulary of {settings.get('vocabulary_size', '?')} words plus the "
               "dataset's class and pattern names. The open_clip labels' quality is the checkpoint's: a small or untrained "
               "model gives arbitrary words.")

# --- Top-activating examples ------------------------------------------------------------------------
st.subheader("Top-activating examples")
order = list(table["neuron"])
neuron = st.selectbox("Neuron", order, key="neurons_neuron", format_func=lambda i: f"neuron {i}")
kind = next(x for x in data["layers"] if x["name"] == layer)["kind"]
st.caption("The dataset samples (forget, retain and test) on which the neuron responds most"
           + (", cropped to the input region its peak response depends on." if kind == "conv" else "."))
for role in models:
    top = arrays[array_key("top_idx", role, layer)][neuron]
    boxes = arrays.get(array_key("top_box", role, layer))
    label_text = by_model[role][neuron]["label"] or "unlabelled"
    description = by_model[role][neuron].get("description") or (by_model[role][neuron].get("compared") or {}).get("description")
    st.markdown(f"**{role}** · neuron {neuron} · {label_text}" + (f" · {description}" if description else ""))
    split_names = np.array(["forget", "retain", "test"])
    images = [crop(arrays["pool_images"][i], None if boxes is None else boxes[neuron][j]) for j, i in enumerate(top)]
    captions = [f"{split_names[arrays['pool_split'][i]]} #{arrays['pool_index'][i]}" for i in top]
    st.image(images, caption=captions, width=72)

# --- Attributions -------------------------------------------------------------------------------------
st.subheader("Attributions")
attr = data["attributions"]
class_names = data["class_names"]
sample = st.selectbox("Forget sample", range(len(attr["samples"])), key="neurons_sample",
                      format_func=lambda s: f"#{attr['samples'][s]} (class {class_names[attr['targets'][s]]})")
cols = st.columns(len(models) + 1)
cols[0].image(crop((arrays["attr_x"][sample] * 255).astype(np.uint8), None, 160), caption="input")
for col, role in zip(cols[1:], models, strict=True):
    col.plotly_chart(attribution_figure(arrays[array_key("attr", "integrated_gradients", role)][sample], f"{role}: Integrated Gradients"),
                     key=f"neurons_ig_{role}")
    col.plotly_chart(attribution_figure(arrays[array_key("attr", "saliency", role)][sample], f"{role}: saliency", signed=False),
                     key=f"neurons_sal_{role}")
st.plotly_chart(conductance_figure({role: arrays[array_key("lc", role, layer)][sample] for role in models}, layer), key="neurons_lc")
top_neurons = attr["top_neurons"].get(layer, [])
if attr["neuron_models"]:
    c1, c2 = st.columns(2)
    # The most-changed neurons (precomputed) first, then every other neuron of the layer (computed when picked).
    options = [*top_neurons, *[int(n) for n in order if int(n) not in top_neurons]]
    picked = c1.selectbox("Neuron", options, key="neurons_attr_neuron",
                          format_func=lambda n: f"neuron {n}" + (" (most changed, precomputed)" if n in top_neurons else ""))
    method = c2.radio("Method", attr["neuron_methods"], horizontal=True, key="neurons_attr_method")
    cols = st.columns(len(attr["neuron_models"]))
    for col, role in zip(cols, attr["neuron_models"], strict=True):
        if picked in top_neurons:
            image = arrays[array_key("nattr", method, role, layer)][top_neurons.index(picked)][sample]
        else:
            model_file = case.file(role)
            if model_file is None:
                col.info(f"The {role} model is no longer in this case; recompute the explanations.")
                continue
            try:
                image = neuron_map(str(model_file), model_file.stat().st_mtime, layer, int(picked), arrays["attr_x"][sample], method,
                                   int(attr["targets"][sample]))
            except AuditInputError as exc:
                ui.show_error(exc)
                continue
        col.plotly_chart(attribution_figure(image, f"{role}: neuron {picked}"), key=f"neurons_nattr_{role}")
st.caption("Red pixels raise the true class's logit (or the neuron), blue lower it. Saliency is the gradient's size. "
           "After unlearning, attributions on forget samples should look like the retrained model's.")
st.download_button("Download neurons.json", (folder / "neurons.json").read_bytes(), "neurons.json", key="neurons_download")
