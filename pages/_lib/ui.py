"""Page setup, the current case, background jobs and small shared widgets.

Every page starts with :func:`setup_page`, so it renders the same whether opened through
``app.py`` or run on its own (by its URL, or by AppTest).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from mu_core.case import Case, CaseStore
from mu_core.errors import AuditInputError
from mu_core.jobs import Job, JobManager

ROOT = Path(__file__).resolve().parents[2]
PAGES = {
    "home": "app.py",
    "model": "pages/1_Model.py",
    "forget": "pages/2_Forget.py",
    "unlearn": "pages/3_Unlearn.py",
    "membership": "pages/4_Membership.py",
}
#: The cookie holding the id of the case this browser opened last.
LAST_CASE_COOKIE = "mu_audit_last_case"


ICON = ROOT / "assets" / "icon.png"
_ROUTER = threading.local()


def setup_page(title: str, icon: str = ":material/cleaning_services:") -> None:
    """Page config, the navigation, sign-in (when configured), session defaults and the sidebar (current case, jobs).

    The browser tab shows the bundled ``assets/icon.png``: a Material icon as ``page_icon`` would be
    fetched from fonts.gstatic.com, and the app makes no request beyond its own server. ``icon`` (a
    Material icon, drawn from the font Streamlit bundles) heads the sidebar.
    """
    st.set_page_config(page_title=f"{title} · MU Audit", page_icon=str(ICON), layout="wide")
    _route()
    _sign_in_gate()
    case = current_case()
    refused = st.query_params.get("case")
    if case is None and refused:
        try:
            store().get(refused)
        except AuditInputError as exc:
            st.error(str(exc))
    with st.sidebar:
        st.markdown(f"### {icon} MU Audit")
        if case is None:
            st.caption("No case open.")
        else:
            st.caption(f"Case: **{plain(case.name)}**")
        _sidebar_jobs(case)
        if auth_enabled():
            st.caption(f"Signed in as **{plain(user_label())}**")
            st.button("Sign out", key="sign_out", on_click=st.logout)
    _remember_in_browser(case)


def _route() -> None:
    """Run the app through ``st.navigation`` so that ``app.py`` is labelled "Home" in the sidebar
    (a ``pages/`` folder alone names it after its file, "app"). The chosen page runs inside this
    call, and the script that called it stops afterwards. Nothing happens inside that page's own
    run, or when a page runs on its own (by AppTest), where no ``app.py`` leads."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or getattr(_ROUTER, "inside", False) or Path(ctx.pages_manager.main_script_path).resolve() != ROOT / PAGES["home"]:
        return
    numbered = sorted((p for p in (ROOT / "pages").glob("*.py") if p.stem.split("_", 1)[0].isdigit()),
                      key=lambda p: (int(p.stem.split("_", 1)[0]), p.name))
    page = st.navigation([st.Page(ROOT / PAGES["home"], title="Home", default=True),
                          *(st.Page(p) for p in numbered)])
    _ROUTER.inside = True
    try:
        page.run()
    finally:
        _ROUTER.inside = False
    st.stop()


def _mine(case: Case | None) -> tuple[str, ...]:
    """Key prefixes of the jobs this session shows: the open case's and its own."""
    return tuple(k for k in (f"{case.id}:" if case else None, session_job_key("")) if k)


def _sidebar_jobs(case: Case | None) -> None:
    """This session's jobs in the sidebar, redrawn every second while one runs (so the sidebar and
    the page agree), and each one this session saw running shown as done, failed or cancelled
    once it ends."""
    prefixes = _mine(case)
    seen = st.session_state.setdefault("jobs_seen", {})
    was_running = any(job.key.startswith(prefixes) for job in jobs().running())

    @st.fragment(run_every=1.0 if was_running else None)
    def panel() -> None:
        mine = [job for job in jobs().all() if job.key.startswith(prefixes)]
        running = [job for job in mine if job.running]
        for job in running:
            seen[job.key] = job.started
            st.progress(job.fraction, text=f"{job.label}: {job.message} ({job.elapsed:.0f} s)")
        if running:
            st.caption("Work continues while you switch pages.")
        for job in mine:
            if not job.running and seen.get(job.key) == job.started:
                if job.status == "done":
                    st.caption(f":material/check_circle: {job.label} — done ({job.elapsed:.0f} s)")
                elif job.status == "cancelled":
                    st.caption(f":material/cancel: {job.label} — cancelled")
                else:
                    st.caption(f":material/error: {job.label} — failed")
        if was_running and not running:  # a job ended: redraw the page with its result
            st.rerun()

    panel()



# --- Sign-in (Streamlit's native OIDC, when .streamlit/secrets.toml has [auth]) ------------------


def auth_enabled() -> bool:
    """Whether sign-in is configured: an ``[auth]`` section in Streamlit's secrets."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def owner_id() -> str | None:
    """The signed-in user's stable id (issuer and subject), ``None`` in a single-user install."""
    if not auth_enabled() or not st.user.get("is_logged_in"):
        return None
    return f"{st.user.get('iss') or ''}|{st.user.get('sub')}"


def user_label() -> str:
    """How to show the signed-in user: e-mail, else name, else subject."""
    return str(st.user.get("email") or st.user.get("name") or st.user.get("sub") or "")


def _sign_in_gate() -> None:
    """With sign-in configured, nothing but the sign-in button shows until the user signs in."""
    if not auth_enabled() or st.user.get("is_logged_in"):
        return
    st.title(":material/cleaning_services: MU Audit")
    st.markdown("This MU Audit server is shared by a team: sign in to see your own cases. Nobody else can see, open, download or delete them.")
    st.button("Sign in", type="primary", key="sign_in", on_click=st.login)
    st.stop()


def plain(text: object) -> str:
    """``text`` escaped for Markdown, so names show as typed and never as links, markup or icons."""
    import re

    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~:$&])", r"\\\1", str(text))


def store() -> CaseStore:
    """The cases this user may see: their own when signed in, every case in a single-user install."""
    return CaseStore(owner=owner_id())


def _prepare_job_thread() -> None:
    """Before each job's work, in its thread: load the engine and set torch's thread count for the
    machine's load now (the app's jobs then run as fast as the same call from the CLI)."""
    from mu_core.device import configure_threads

    configure_threads(refresh=True)


@st.cache_resource
def _job_manager() -> JobManager:
    return JobManager(prepare=_prepare_job_thread)


def jobs() -> JobManager:
    """The process-wide job manager (shared by every session and page)."""
    return _job_manager()


def _remember(case_id: str | None) -> None:
    st.session_state["case_id"] = case_id
    if case_id:
        st.query_params["case"] = case_id
    elif "case" in st.query_params:
        del st.query_params["case"]


def _remember_in_browser(case: Case | None) -> None:
    """Keep the open case's id in a cookie of this browser only (for :func:`last_case_offer`)."""
    if case is None or st.session_state.get("_cookie_case") == case.id or st.context.cookies.get(LAST_CASE_COOKIE) == case.id:
        return
    st.session_state["_cookie_case"] = case.id
    st.html(
        f"<script>document.cookie = '{LAST_CASE_COOKIE}={case.id}; path=/; max-age=2592000; SameSite=Strict';</script>",
        unsafe_allow_javascript=True,
    )


def last_case_offer() -> Case | None:
    """The case this browser opened last (from its own cookie), if this user may still open it."""
    case_id = st.context.cookies.get(LAST_CASE_COOKIE)
    if not case_id:
        return None
    try:
        return store().get(case_id)
    except AuditInputError:
        return None


def current_case() -> Case | None:
    """The open case: this session's, else the URL's (``?case=``). A new session without
    ``?case=`` opens none (the home page offers to resume this browser's last case)."""
    for case_id in (st.session_state.get("case_id"), st.query_params.get("case")):
        if not case_id:
            continue
        try:
            case = store().get(case_id)
        except AuditInputError:
            continue
        if st.session_state.get("case_id") != case.id or st.query_params.get("case") != case.id:
            _remember(case.id)
        return case
    st.session_state["case_id"] = None
    return None


def open_case(case_id: str | None) -> None:
    """Make ``case_id`` the current case (``None``: no case)."""
    _remember(case_id)


def ensure_case(name: str = "") -> Case:
    """The current case, creating a new one if none is open."""
    case = current_case()
    if case is None:
        case = store().create(name)
        open_case(case.id)
    return case


def link(page: str, label: str, icon: str | None = None) -> None:
    """A link to another page; plain text where page links are unavailable (a page run alone)."""
    try:
        st.page_link(PAGES[page], label=label, icon=icon)
    except Exception:  # the page is not part of a multipage app here
        st.markdown(f"{label} (page **{Path(PAGES[page]).stem.split('_', 1)[-1]}**)")


def need(case: Case | None, *keys: str) -> bool:
    """Say what to do first when an earlier step is missing; ``True`` when all is there."""
    steps = {
        "original": ("model", "First train or upload a model on the **Model** page.", "Go to Model"),
        "forget": ("forget", "First choose the samples to forget on the **Forget** page.", "Go to Forget"),
        "unlearned": ("unlearn", "First run an unlearning method on the **Unlearn** page.", "Go to Unlearn"),
    }
    if case is None:
        st.info("No case is open. Start one on the **Model** page, or try the demo on the home page.")
        link("home", "Home", ":material/home:")
        return False
    for key in keys:
        if case.file(key) is None:
            page, text, label = steps[key]
            st.info(text)
            link(page, label, ":material/arrow_forward:")
            return False
    return True


def show_error(exc: Exception) -> None:
    st.error(str(exc))


def start_job(key: str, label: str, work: Callable[[Callable[[float, str], None]], Any]) -> bool:
    """Start background work; ``False`` with a clear message if the same work is already running."""
    try:
        jobs().submit(key, label, work)
    except AuditInputError as exc:
        show_error(exc)
        return False
    return True


def job_key(case: Case | None, kind: str) -> str:
    """Jobs on a case are keyed by the case, so every page and session sees them."""
    return f"{case.id if case else 'none'}:{kind}"


def session_job_key(kind: str) -> str:
    """A key private to this browser session (for work whose result only this session wants)."""
    if "session_token" not in st.session_state:
        import secrets

        st.session_state["session_token"] = secrets.token_hex(8)
    return f"session-{st.session_state['session_token']}:{kind}"


def case_jobs(case: Case | None, *, allow: tuple[str, ...] = ()) -> list[Job]:
    """Jobs running on ``case``, except those of the kinds in ``allow``."""
    if case is None:
        return []
    prefix = f"{case.id}:"
    return [job for job in jobs().running() if job.key.startswith(prefix) and job.key[len(prefix):] not in allow]


def locked(case: Case | None, *, allow: tuple[str, ...] = ()) -> bool:
    """Whether a job runs on ``case`` (other than the kinds in ``allow``) that replacing a file would
    pull the rug from under: the caller disables its button and :func:`lock_notice` says why."""
    return bool(case_jobs(case, allow=allow))


def lock_notice(case: Case | None, *, shown: tuple[str, ...] = ()) -> None:
    """Say what runs on ``case`` (jobs whose progress this page does not already show in ``shown``)
    and offer to cancel it: while it runs, its model, request and unlearned model cannot be replaced."""
    for job in case_jobs(case, allow=shown):
        st.warning(
            f"**{job.label}** is running on this case ({job.message}). Until it ends, the model, the forget request "
            "and the unlearned model it works on cannot be replaced here or in another tab."
        )
        st.button(f"Cancel: {job.label}", key=f"lock-cancel-{job.key}", on_click=jobs().cancel, args=(job.key,))


def confirm_replace(case: Case | None, what: str, key: str) -> bool:
    """Ask before a new model replaces the case's current one (and what was built on it)."""
    if case is None or not case.entry("original"):
        return True
    st.caption(f"{what} replaces the current model, and the forget request, unlearned model and audit built on it.")
    return st.checkbox("Yes, replace the current model", key=key)


def job_status(key: str, *, on_done: Callable[[Job], None] | None = None) -> Job | None:
    """Show a job's progress (refreshing every second while it runs) with a Cancel button."""
    job = jobs().get(key)
    if job is None:
        return None
    was_running = job.running

    @st.fragment(run_every=1.0 if was_running else None)
    def panel() -> None:
        current = jobs().get(key)
        if current is None:
            return
        if current.running:
            st.progress(current.fraction, text=f"{current.label}: {current.message} ({current.elapsed:.0f} s)")
            st.button("Cancel", key=f"cancel-{key}", on_click=jobs().cancel, args=(key,))
            return
        if current.status == "done":
            if on_done is not None and not st.session_state.get(f"handled-{key}-{current.started}"):
                st.session_state[f"handled-{key}-{current.started}"] = True
                on_done(current)
            st.success(f"{current.label}: done in {current.elapsed:.1f} s.")
        elif current.status == "cancelled":
            st.warning(f"{current.label} was cancelled; nothing was changed.")
        else:
            st.error(current.error or f"{current.label} failed.")
        if was_running:  # it finished while this fragment was refreshing: redraw the whole page
            st.rerun()

    panel()
    return job


def data_root_default(dataset: str) -> str:
    """A sensible default folder for a dataset on disk (MU_AUDIT_DATA, or the shared folder)."""
    env = os.environ.get("MU_AUDIT_DATA")
    if env:
        return str(Path(env) / dataset)
    shared = ROOT.parent / "shared" / "datasets" / dataset
    return str(shared) if shared.is_dir() else ""


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def thumbnail(image, size: int = 56):
    """A PIL image of one sample (C x H x W tensor in [0, 1]), enlarged without smoothing."""
    import numpy as np
    from PIL import Image

    arr = (image.numpy() * 255).clip(0, 255).astype(np.uint8)
    return Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)).resize((size, size), Image.NEAREST)


def data_uri(image, size: int = 40) -> str:
    """A PNG data URI of one sample, for ``st.column_config.ImageColumn``."""
    import base64
    import io

    buf = io.BytesIO()
    thumbnail(image, size).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
