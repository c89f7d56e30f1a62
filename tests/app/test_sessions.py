"""Private sessions: a running job locks the files it works on (pages say what runs and offer to
cancel), a model is replaced only after confirmation, and case names show as plain text."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from mu_core.case import CaseStore
from pages._lib import ui
from tests.app.conftest import app, open_by_url, texts


@pytest.fixture
def running_audit(install_case) -> Iterator[tuple[str, str]]:
    """A ready case with a (stand-in) membership audit running on it until cancelled."""
    case_id = install_case("unlearned")
    key = f"{case_id}:audit"
    stop = threading.Event()

    def work(progress) -> None:
        while not stop.is_set():
            progress(0.5, "scoring")  # raises once cancelled
            stop.wait(0.05)

    ui.jobs().submit(key, "Membership audit", work)
    yield case_id, key
    stop.set()
    ui.jobs().wait(key)


def test_a_running_job_locks_the_model_request_and_unlearned_model(running_audit) -> None:
    _, key = running_audit
    for page, buttons in (("1_Model", ["train_button", "import_button"]), ("2_Forget", ["forget_save"]),
                          ("3_Unlearn", ["unlearn_button", "retrain_button", "compare_button"])):
        at = app(page).run()
        assert not at.exception, page
        assert any("Membership audit" in t and "is running on this case" in t for t in texts(at.warning)), page
        assert all(at.button(key=b).disabled for b in buttons), page
    at.button(key=f"lock-cancel-{key}").click().run()
    assert ui.jobs().wait(key).status == "cancelled"
    at = app("2_Forget").run()
    assert not at.button(key="forget_save").disabled
    assert not any("is running on this case" in t for t in texts(at.warning))


def test_replacing_a_model_asks_for_confirmation_in_train_and_upload(install_case) -> None:
    install_case("demo")
    at = app("1_Model").run()
    assert at.button(key="train_button").disabled
    assert at.checkbox(key="import_confirm").value is False
    at.checkbox(key="train_confirm").check().run()
    assert not at.button(key="train_button").disabled


def test_a_new_case_needs_no_confirmation(audit_home) -> None:
    at = app("1_Model").run()
    assert not at.button(key="train_button").disabled
    assert "train_confirm" not in [c.key for c in at.checkbox]


def test_case_names_are_plain_text_capped_and_never_markup(audit_home) -> None:
    store = CaseStore(audit_home)
    hostile = store.create("[click](javascript:alert(1)) <b>x</b> :material/home:\x00" + "y" * 5000)
    assert len(hostile.name) <= 120 and "\x00" not in hostile.name
    open_by_url(hostile.id)
    at = app().run()
    shown = [t for t in texts(at.markdown) if "click" in t]
    assert shown and all(r"\[click\]\(javascript\:alert\(1\)\)" in t and r"\<b\>" in t and r"\:material/home\:" in t for t in shown)
