"""MU Audit: home page. What the tool does, the current case at a glance, the demo, saved cases."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import streamlit as st

from mu_core.case import MAX_NAME_CHARS
from mu_core.errors import AuditInputError
from pages._lib import cluster, ui

ui.setup_page("Home", ":material/cleaning_services:")

st.title(":material/cleaning_services: MU Audit")
st.markdown(
    "**Was this data really forgotten, and what does the unlearning itself leak?** "
    "Train or upload a PyTorch image classifier, choose training samples to forget, apply an "
    "unlearning method, and audit the result with membership-inference attacks, comparing the "
    "original, the unlearned and a retrained-from-scratch model."
)

case = ui.current_case()
if not ui.auth_enabled():
    st.caption(
        ":material/person: **Single-user install**: every case on this server is visible to whoever opens it, so it "
        "listens on 127.0.0.1 only (`make run`). For a team, configure sign-in in `.streamlit/secrets.toml` (see README)."
    )

# --- The current case at a glance -------------------------------------------------------------
st.subheader("Current case")
if case is None:
    st.info("No case is open. Try the demo below, or start on the **Model** page.")
    last = ui.last_case_offer()
    if last is not None:
        st.button(f"Resume {ui.plain(last.name)}", key="resume_last", on_click=ui.open_case, args=(last.id,),
                  help="The case this browser opened last.")
else:
    manifest = case.manifest
    steps = [
        ("original", "Model", "model"),
        ("forget", "Forget request", "forget"),
        ("unlearned", "Unlearned model", "unlearn"),
        ("retrained", "Retrained reference", "unlearn"),
        ("audit", "Membership audit", "membership"),
    ]
    cols = st.columns(len(steps))
    for col, (key, label, _) in zip(cols, steps, strict=True):
        entry = manifest.get(key)
        with col:
            st.markdown(f"{':material/check_circle:' if entry else ':material/radio_button_unchecked:'} **{label}**")
            if key in ("original", "unlearned", "retrained") and entry:
                summary = entry.get("summary", {})
                detail = f"{summary.get('arch', '')} on {summary.get('dataset', '')}"
                if summary.get("method"):
                    detail = f"{summary['method']} · {detail}"
                if "test_acc" in summary:
                    detail += f" · test {summary['test_acc']:.1%}"
                st.caption(detail)
            elif key == "forget" and entry:
                st.caption(entry.get("describe", f"{entry.get('count')} samples"))
            elif key == "audit" and entry:
                verdict = entry.get("verdict")
                st.caption((f"verdict: **{verdict.replace('_', ' ')}** · " if verdict else "") + "attacks: " + ", ".join(entry.get("attacks", [])))
    next_step = next(((label, page) for key, label, page in steps if not manifest.get(key)), None)
    if next_step:
        ui.link(next_step[1], f"Next: {next_step[0]}", ":material/arrow_forward:")

# --- The demo ---------------------------------------------------------------------------------
st.subheader("Try the demo")
st.caption(
    "Builds a ready case that teaches what the verdict means, on scikit-learn's bundled digits: a small MLP that "
    "overfits 300 training samples (so the audit has power), 100 of them to forget, a weak unlearning method (NegGrad) "
    "the audit catches, and the exact retrain it clears, both audited. Same as `python -m mu_core demo`; under a minute."
)
DEMO_KEY = ui.session_job_key("demo")  # this browser session's demo, not another user's


def _start_demo() -> None:
    from mu_core.workflow import make_demo_case

    ui.start_job(DEMO_KEY, "Building the demo case", lambda progress: make_demo_case(progress=progress).id)


def _open_demo(job) -> None:
    ui.open_case(job.result)


st.button("Try the demo", type="primary", on_click=_start_demo, disabled=any(j.key == DEMO_KEY for j in ui.jobs().running()))
ui.job_status(DEMO_KEY, on_done=_open_demo)

# --- Saved cases ------------------------------------------------------------------------------
st.subheader("Saved cases")
cases = ui.store().list()


def _new_case() -> None:
    ui.open_case(ui.store().create(st.session_state.get("new_case_name", "")).id)


with st.form("new-case", clear_on_submit=True, border=False):
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    c1.text_input("New case name", key="new_case_name", max_chars=MAX_NAME_CHARS, placeholder="e.g. Fashion-MNIST, class 3")
    c2.form_submit_button("New case", on_click=_new_case)

if not cases:
    st.caption("No saved cases yet.")
for saved in cases:
    try:
        m = saved.manifest
    except AuditInputError as exc:
        st.warning(str(exc))
        continue
    is_current = case is not None and saved.id == case.id
    with st.container(border=True):
        c1, c2, c3, c4 = st.columns([4, 1, 1, 1], vertical_alignment="center")
        dataset = (m.get("dataset") or {}).get("name", "no data yet")
        done = sum(1 for k in ("original", "forget", "unlearned", "retrained", "audit") if m.get(k))
        c1.markdown(f"**{ui.plain(m.get('name', saved.id))}**{'  ← current' if is_current else ''}  \n"
                    f"{ui.plain(dataset)} · {done}/5 steps · updated {m.get('updated', '')[:16].replace('T', ' ')}")
        c2.button("Open", key=f"open-{saved.id}", on_click=ui.open_case, args=(saved.id,), disabled=is_current)
        with c3.popover("Rename"):
            new_name = st.text_input("Name", value=m.get("name", ""), key=f"name-{saved.id}")
            if st.button("Save name", key=f"rename-{saved.id}"):
                try:
                    ui.store().rename(saved.id, new_name)
                    st.rerun()
                except AuditInputError as exc:
                    st.error(str(exc))
        with c4.popover("Delete"):
            st.write("Delete this case and everything derived from it (models, references, reconstructions, reports)? "
                     "A receipt without data is kept in purge-log.jsonl.")
            busy = ui.case_jobs(saved)
            if busy:
                st.caption(f"{busy[0].label} is running on it: cancel it first.")
            if st.button("Delete for good", key=f"delete-{saved.id}", type="primary", disabled=bool(busy)):
                from mu_core.report.purge import purge_case

                purge_case(saved.id, ui.store())
                if is_current:
                    ui.open_case(None)
                st.rerun()

# --- Where jobs run: this process or a Ray cluster ---------------------------------------------
cluster.cluster_setting()
