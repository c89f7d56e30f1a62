"""Inversion: what an attacker holding the original and the unlearned model reconstructs of the forgotten samples."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st

from pages._lib import family, ui

ui.setup_page("Inversion", ":material/image_search:")
st.title(":material/image_search: Unlearning inversion")
st.caption(
    "Hu et al. (IEEE S&P 2024): the difference between the original and the unlearned model is a proxy for the "
    "forgotten samples' gradient. The attack optimises dummy images until their gradient points the same way, and "
    "infers the removed labels by querying both models. Reconstructions stay inside this case and are deleted with it."
)

case = ui.current_case()
if family.classifiers_only(case, "The Inversion page"):
    st.stop()
if not ui.need(case, "original", "forget", "unlearned"):
    st.stop()

import pandas as pd  # noqa: E402

from mu_core.inversion import DEFENSES, MAX_SAMPLES, SETTINGS, InversionConfig, to_uint8_image  # noqa: E402
from mu_core.models import sha256_file  # noqa: E402
from mu_core.plots import defense_figure, inversion_loss_figure, label_change_figure  # noqa: E402
from mu_core.workflow import (  # noqa: E402
    case_defense_sweep,
    case_forget_request,
    case_inversion_live,
    case_inversion_setting,
    case_invert,
)

request = case_forget_request(case)
targets = ["unlearned"] + (["retrained"] if case.file("retrained") is not None else [])
target = st.radio("Model to attack", targets, horizontal=True, key="inv_target",
                  format_func=lambda t: {"unlearned": "the unlearned model", "retrained": "the retrained model (exact unlearning)"}[t])
setting = case_inversion_setting(case, target)
st.info(f"Setting the attack assumes: **{setting}**. {SETTINGS[setting].capitalize()}.", icon=":material/info:")
if target == "retrained" and setting == "approximate":
    st.warning("The original was trained from scratch, not fine-tuned from a recorded base, so the retrained model shares "
               "nothing with it but the recipe: expect the attack to fail here (the exact setting needs `train --init BASE`).")
if len(request) > MAX_SAMPLES:
    st.warning(f"This request forgets {len(request)} samples; the attack reconstructs at most {MAX_SAMPLES} at once "
               "(the paper's setting is one sample). Choose a smaller request on the Forget page.")
    ui.link("forget", "Go to Forget", ":material/arrow_forward:")
    st.stop()
if len(request) > 8:
    st.caption(f"{len(request)} samples are reconstructed jointly from one difference; the paper's attack is strongest on one.")

defaults = InversionConfig()
c1, c2, c3, c4 = st.columns(4)
steps = int(c1.number_input("Steps per restart", 10, 10000, defaults.steps, step=100, key="inv_steps"))
restarts = int(c2.number_input("Restarts", 1, 10, defaults.restarts, key="inv_restarts"))
tv_weight = float(c3.number_input("TV weight", 0.0, 1.0, defaults.tv_weight, step=0.005, format="%.4f", key="inv_tv"))
known = c4.toggle("Attacker knows the labels", value=False, key="inv_known",
                  help="Off: the labels come from the black-box label inference, as in the paper's full attack.")

invert_key = ui.job_key(case, "invert")
job = ui.jobs().get(invert_key)
if st.button("Run the inversion", type="primary", icon=":material/play_arrow:", disabled=bool(job and job.running), key="inv_button"):
    chosen = {"target": target, "steps": steps, "restarts": restarts, "tv_weight": tv_weight, "known_label": known}
    if ui.start_job(invert_key, "Unlearning inversion", lambda progress: case_invert(case, progress=progress, **chosen)):
        st.rerun()
ui.job_status(invert_key)


def defenses_section() -> None:
    """Defenses after unlearning: the attack against defended copies of the unlearned model."""
    st.subheader("Defenses")
    st.caption(
        "Does a cheap change to the unlearned model stop the attack? Each defense is applied to a copy of the unlearned "
        "model, the attack runs against it, and the chart sets the attack's success against the defended model's test "
        "accuracy. " + "; ".join(f"**{k}**: {v}" for k, v in DEFENSES.items() if k != "none") + "."
    )
    sweep_key = ui.job_key(case, "defenses")
    d1, d2, d3, d4 = st.columns(4)
    noise = d1.text_input("noise (std)", "0.001, 0.01", key="def_noise")
    prune = d2.text_input("prune (share)", "0.2, 0.5", key="def_prune")
    finetune = d3.text_input("finetune (steps)", "5, 20", key="def_finetune")
    sweep_steps = int(d4.number_input("Steps per attack", 10, 10000, 300, step=50, key="def_steps",
                                      help="Fewer than a single attack's default: the sweep runs one attack per defense."))
    sweep = ui.jobs().get(sweep_key)
    if st.button("Run the defense sweep", icon=":material/shield:", disabled=bool(sweep and sweep.running), key="def_button"):
        try:
            grid = {"none": [0.0], **{kind: _strengths(text, kind) for kind, text in (("noise", noise), ("prune", prune), ("finetune", finetune))}}
        except ValueError as exc:
            st.error(str(exc))
        else:
            grid = {k: v for k, v in grid.items() if v}
            runs = sum(len(v) for v in grid.values())
            if ui.start_job(sweep_key, f"Defense sweep ({runs} attacks)",
                            lambda progress: case_defense_sweep(case, grid, steps=sweep_steps, restarts=1, progress=progress)):
                st.rerun()
    ui.job_status(sweep_key)
    entry, path = case.entry("defenses"), case.file("defenses")
    if not entry or path is None:
        return
    data = json.loads(path.read_text())
    metric = st.radio("Attack success", ["top1_share", "label_accuracy", "ssim"], horizontal=True, key="def_metric",
                      format_func={"top1_share": "rank-1 share", "label_accuracy": "label accuracy", "ssim": "mean SSIM"}.get)
    st.plotly_chart(defense_figure(data["rows"], metric=metric), key="def_chart")
    st.dataframe(pd.DataFrame(data["rows"]), key="def_table", hide_index=True)
    st.caption(f"Setting: {data['setting']}; {data['steps']} steps, {data['restarts']} restart per attack.")


def _strengths(text: str, kind: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"The {kind} strengths must be numbers separated by commas, e.g. 0.001, 0.01.") from None
    if any(v < 0 for v in values) or (kind == "prune" and any(v >= 1 for v in values)):
        raise ValueError(f"The {kind} strengths must be non-negative" + (" and below 1." if kind == "prune" else "."))
    return values


def _gallery(truths, reconstructions, captions) -> None:
    for truth, reconstruction, caption in zip(truths, reconstructions, captions, strict=True):
        left, middle, right = st.columns([1, 1, 3])
        left.image(to_uint8_image(truth), caption="forgotten", width=96)
        middle.image(to_uint8_image(reconstruction), caption="reconstruction", width=96)
        right.markdown(caption)


job = ui.jobs().get(invert_key)
if job is not None and job.running:
    @st.fragment(run_every=1.0)
    def live_view() -> None:
        current = ui.jobs().get(invert_key)
        if current is None or not current.running:
            st.rerun()
        snap = case_inversion_live(case)
        if snap is None:
            st.caption("Inferring the labels; the reconstruction appears here once feature recovery starts.")
            return
        st.subheader(f"Live: restart {snap['restart'] + 1}/{snap['restarts']}, step {snap['step']}/{snap['steps']}")
        images = snap["images"][:8]
        cols = st.columns(len(images))
        for col, image in zip(cols, images, strict=True):
            col.image(to_uint8_image(image), width=96)
        st.plotly_chart(inversion_loss_figure([snap["losses"]], 0, title="Cosine loss, current restart"), key="inv_live_loss")

    live_view()
    st.stop()

entry = case.entry("inversion")
folder = case.file("inversion")
if not entry or folder is None or not (folder / "inversion.json").is_file():
    defenses_section()
    st.stop()
attacked = case.file(entry.get("target", "unlearned"))
if attacked is None or sha256_file(attacked) != entry.get("target_sha256"):
    st.info("The model these reconstructions came from has been replaced; run the inversion again.")
    defenses_section()
    st.stop()

import numpy as np  # noqa: E402

result = json.loads((folder / "inversion.json").read_text())
arrays = np.load(folder / "reconstructions.npz")
names = result["class_names"]
st.subheader("Results")
m1, m2, m3, m4 = st.columns(4)
m1.metric("Rank 1 (singled out)", f"{result['top1_share']:.0%}", help="Share of forgotten samples that are the closest of "
          "all training samples of their class to their reconstruction (by MSE).")
m2.metric("Label inference accuracy", f"{result['label_accuracy']:.0%}", help=f"Chance: {1 / len(names):.0%}.")
m3.metric("Mean SSIM", f"{result['mean_ssim']:.3f}", help=result["ssim_window"])
m4.metric("Seconds", f"{sum(result['seconds'].values()):.1f}")
st.caption(f"Setting: **{result['setting']}** (attacked: the {entry.get('target', 'unlearned')} model). "
           f"SSIM: {result['ssim_window']}. PSNR in dB against data range 1.0.")

captions = []
for s in result["samples"]:
    psnr = "∞" if s["psnr"] is None else f"{s['psnr']:.1f} dB"
    verdict = ":red[**singled out**]" if s["rank"] == 1 else f"rank {s['rank']} of {s['class_size']}"
    white_box = f" (white-box output-layer read: {names[s['weight_label']]})" if s.get("weight_label") is not None else ""
    captions.append(f"**#{s['index']}**: true label **{names[s['true_label']]}**, inferred **{names[s['inferred_label']]}**{white_box}  \n"
                    f"MSE {s['mse']:.4f} · PSNR {psnr} · SSIM {s['ssim']:.3f} · {verdict}")
_gallery(arrays["truths"], arrays["reconstructions"], captions)

left, right = st.columns(2)
left.plotly_chart(inversion_loss_figure(result["loss_history"], result["best_restart"]), key="inv_loss")
right.plotly_chart(label_change_figure(result["label_confidence_change"], names, [s["true_label"] for s in result["samples"]]),
                   key="inv_labels")
st.dataframe(pd.DataFrame(result["samples"]).drop(columns=["png"]).set_index("index"), key="inv_table")
st.download_button("Download inversion.json", (folder / "inversion.json").read_bytes(), "inversion.json", key="inv_download")
defenses_section()
