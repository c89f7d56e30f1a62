"""AppTest helpers: ready-made cases copied into each test's MU_AUDIT_HOME, and polling."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
#: AppTest's limit on one script run: a guard against a hung page, not a speed goal (a run takes
#: seconds; a busy 2-core machine importing torch can take minutes).
TIMEOUT = 600


#: Names the case the current test installed last: :func:`app` opens it by URL (``?case=``), as a
#: session never opens a case by itself. (An environment variable, not a module global: pytest may
#: import this conftest under two module names.)
OPENED_ENV = "MU_AUDIT_TEST_OPEN_CASE"


@pytest.fixture(autouse=True)
def _no_case_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OPENED_ENV, raising=False)


def open_by_url(case_id: str) -> None:
    """Make the next :func:`app` open ``case_id`` through its URL (until the test ends)."""
    os.environ[OPENED_ENV] = case_id


def app(page: str | None = None) -> AppTest:
    """An AppTest of ``app.py`` or of ``pages/<page>.py`` run on its own, as Streamlit does by URL,
    with ``?case=`` naming the case the test installed last (if any)."""
    path = ROOT / "app.py" if page is None else ROOT / "pages" / f"{page}.py"
    at = AppTest.from_file(str(path), default_timeout=TIMEOUT)
    if os.environ.get(OPENED_ENV):
        at.query_params["case"] = os.environ[OPENED_ENV]
    return at


def run_until(at: AppTest, done: Callable[[AppTest], bool]) -> AppTest:
    """Re-run the script until ``done(at)`` (background jobs finish between runs). No clock: a
    busy machine only makes it slower, and pytest-timeout stops a hang. A background job that
    crashes meanwhile (an unexpected error, never a user's mistake) fails the test at once; so does
    a page that stays short of ``done`` for :data:`IDLE_RUNS` runs while no job runs at all (a job
    that failed with a user's error, was cancelled, or never started), saying what the page shows."""
    from pages._lib import ui

    before = {job.key: (job.status, job.started) for job in ui.jobs().all()}
    idle = 0
    while True:
        at.run()
        if at.exception:
            raise AssertionError(at.exception)
        if done(at):
            return at
        ended = [job for job in ui.jobs().all() if not job.running and before.get(job.key) != (job.status, job.started)]
        crashed = [job for job in ended if _crashed(job)]
        if crashed:
            raise AssertionError(f"{crashed[0].label}: {crashed[0].error}")
        idle = 0 if ui.jobs().running() else idle + 1
        if idle >= IDLE_RUNS:
            raise AssertionError(f"no job runs and the page is not there yet; {_describe(at, ended)}")
        time.sleep(0.3)


#: Runs of the page with no job running before :func:`run_until` gives up (a count, not a clock).
IDLE_RUNS = 30


def _describe(at: AppTest, ended) -> str:
    jobs = "; ".join(f"{job.label}: {job.status} ({job.error or job.message})" for job in ended) or "no job ended"
    shown = {kind: texts(getattr(at, kind)) for kind in ("error", "warning", "success", "info")}
    return f"jobs: {jobs}; page: " + "; ".join(f"{kind} {values}" for kind, values in shown.items() if values)


def _crashed(job) -> bool:
    return job.status == "failed" and (job.error or "").startswith("Unexpected")


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory):
    """A digits case (the default cnn, 100 random samples forgotten, retrained) and a copy with an unlearned model.
    (Built step by step: the home page's demo itself is the teaching case of :mod:`mu_core.demo`.)"""
    from mu_core.case import CaseStore
    from mu_core.forget import random_request
    from mu_core.models.io import read_record
    from mu_core.workflow import case_retrain, case_set_forget, case_train, case_unlearn

    store = CaseStore(tmp_path_factory.mktemp("demo_home"))
    demo = store.create("Digits demo")
    case_train(demo, "digits", "cnn")
    case_set_forget(demo, random_request(read_record(demo.file("original")).train_indices, 100, seed=0))
    case_retrain(demo)
    unlearned = store.create("Demo, unlearned")
    shutil.copytree(demo.dir, unlearned.dir, dirs_exist_ok=True)
    unlearned.update(name="Demo, unlearned", id=unlearned.id)
    case_unlearn(unlearned, "finetune", {"epochs": 1})
    return store, demo.id, unlearned.id


@pytest.fixture
def install_case(demo_store, audit_home: Path) -> Callable[[str], str]:
    """Copy a ready case into this test's home and open it by URL in the next :func:`app`; returns its id."""

    def install(which: str) -> str:
        store, demo_id, unlearned_id = demo_store
        case_id = {"demo": demo_id, "unlearned": unlearned_id}[which]
        shutil.copytree(store.root / case_id, audit_home / "cases" / case_id)
        open_by_url(case_id)
        return case_id

    return install
