"""Generate: samples per class from the original, unlearned and retrained diffusion models, side by side."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st

from pages._lib import family, ui

ui.setup_page("Generate", ":material/auto_awesome:")
st.title(":material/auto_awesome: Generate")
st.caption(
    "Samples of every class from each diffusion model, with the same seeds. A class that was forgotten "
    "should stop appearing in the unlearned model's row, as it does in the retrained model's."
)

case = ui.current_case()
if not ui.need(case, "original") or family.diffusion_only(case, "Generating samples"):
    st.stop()

from mu_core.generate import case_generate, case_generated  # noqa: E402

c1, c2, c3, c4 = st.columns(4)
per_class = int(c1.number_input("Samples per class", 1, 32, 8, key="gen_per_class"))
sampler = c2.selectbox("Sampler", ["ddim", "ddpm"], key="gen_sampler", help="DDIM: a few deterministic steps; DDPM: all T steps")
steps = int(c3.number_input("DDIM steps", 2, 1000, 50, key="gen_steps", disabled=sampler == "ddpm"))
seed = int(c4.number_input("Seed", 0, 2**31 - 1, 0, key="gen_seed"))

gen_key = ui.job_key(case, "generate")
job = ui.jobs().get(gen_key)
if st.button("Generate", type="primary", icon=":material/play_arrow:", disabled=bool(job and job.running), key="gen_button"):
    settings = {"per_class": per_class, "sampler": sampler, "steps": steps, "seed": seed}
    if ui.start_job(gen_key, "Generating samples", lambda progress: case_generate(case, progress=progress, **settings)):
        st.rerun()
ui.job_status(gen_key)

grids = case_generated(case)
if not grids:
    st.stop()
forget = case.entry("forget") or {}
if forget:
    st.markdown(f"Forget request: {forget.get('describe', '')}")
columns = st.columns(len(grids))
for column, (role, meta) in zip(columns, grids.items(), strict=True):
    column.markdown(f"**{role}**")
    column.image(meta["grid"], caption=f"rows: classes {', '.join(meta['classes'])}; {meta['per_class']} per class, "
                                       f"{meta['sampler']}, seed {meta['seed']}", width="stretch")
