"""The home page's "where jobs run" setting: in this process or on a Ray cluster, and the cluster's
resources (engine: :mod:`mu_core.executor`; the setting is saved in ``MU_AUDIT_HOME/executor.json``)."""

from __future__ import annotations

import os

import streamlit as st

from mu_core.errors import AuditInputError
from mu_core.executor import ENV_EXECUTOR, ExecutorSettings, cluster_resources, executor_settings, save_settings

from . import ui

CHOICES = {"inline": "In this process", "processes": "In worker processes here", "ray": "On a Ray cluster"}


def _save() -> None:
    kind = st.session_state["executor_kind"]
    address = st.session_state.get("executor_address", "").strip() or None
    cpus = st.session_state.get("executor_cpus") or None
    try:
        save_settings(ExecutorSettings(kind, address, None if cpus is None else float(cpus)))
        st.session_state["executor_saved"] = True
    except AuditInputError as exc:
        st.session_state["executor_error"] = str(exc)


def _check() -> None:
    ui.start_job(ui.session_job_key("cluster"), "Connecting to the cluster", lambda progress: cluster_resources(executor_settings("ray")))


def _show(job) -> None:
    st.session_state["cluster_resources"] = job.result


def cluster_setting() -> None:
    """The setting, what overrides it, and (after a check) the cluster's nodes, CPUs, GPUs and memory."""
    current = executor_settings()
    with st.expander(f"Where jobs run: **{CHOICES[current.kind]}**" + (f" ({current.address})" if current.address else ""),
                     icon=":material/hub:"):
        st.caption("Reference models, retrains and comparisons are independent jobs. In this process they run one after "
                   "another; in worker processes here, one per core; on a Ray cluster, one per CPU (or GPU). Same seeds, "
                   "same numbers. Unless you save a choice, reference models on a CPU use one worker process per core when "
                   "that is faster.")
        st.radio("Run jobs", list(CHOICES), format_func=CHOICES.get, key="executor_kind",
                 index=list(CHOICES).index(current.kind), horizontal=True)
        c1, c2 = st.columns([3, 1])
        c1.text_input("Ray address", value=current.address or "", key="executor_address",
                      placeholder="empty: RAY_ADDRESS, else a local Ray on this machine", help="host:port of the cluster's head")
        c2.number_input("CPUs per job", min_value=0, max_value=1024, value=int(current.cpus_per_job or 0), key="executor_cpus",
                        help="0: as many as this process uses")
        b1, b2 = st.columns(2)
        b1.button("Save setting", on_click=_save)
        b2.button("Check cluster", on_click=_check, disabled=current.kind != "ray")
        if st.session_state.pop("executor_saved", False):
            st.success("Saved: new jobs use this setting.")
        if error := st.session_state.pop("executor_error", None):
            st.error(error)
        if os.environ.get(ENV_EXECUTOR):
            st.info(f"{ENV_EXECUTOR}={os.environ[ENV_EXECUTOR]} is set for this server and overrides the saved setting.")
        ui.job_status(ui.session_job_key("cluster"), on_done=_show)
        resources = st.session_state.get("cluster_resources")
        if resources:
            cols = st.columns(4)
            cols[0].metric("Nodes", resources["nodes"])
            cols[1].metric("CPUs", f"{resources['cpus']:.0f}")
            cols[2].metric("GPUs", f"{resources['gpus']:.0f}")
            cols[3].metric("Memory", f"{resources.get('memory_gb', 0):.0f} GB")
            st.caption(f"Cluster: {resources.get('address') or 'local'}")
