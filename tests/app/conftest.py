"""AppTest helpers: ready-made cases copied into each test's MU_AUDIT_HOME, and polling."""

from __future__ import annotations

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


def app(page: str | None = None) -> AppTest:
    """An AppTest of ``app.py`` or of ``pages/<page>.py`` run on its own, as Streamlit does by URL."""
    path = ROOT / "app.py" if page is None else ROOT / "pages" / f"{page}.py"
    return AppTest.from_file(str(path), default_timeout=TIMEOUT)


def run_until(at: AppTest, done: Callable[[AppTest], bool]) -> AppTest:
    """Re-run the script until ``done(at)`` (background jobs finish between runs). No clock: a
    busy machine only makes it slower, and pytest-timeout stops a hang."""
    while True:
        at.run()
        if at.exception:
            raise AssertionError(at.exception)
        if done(at):
            return at
        time.sleep(0.3)


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory):
    """A digits demo case (model, 100 forgotten samples, retrained) and a copy with an unlearned model."""
    from mu_core.case import CaseStore
    from mu_core.workflow import case_unlearn, make_demo_case

    store = CaseStore(tmp_path_factory.mktemp("demo_home"))
    demo = make_demo_case(store)
    unlearned = store.create("Demo, unlearned")
    shutil.copytree(demo.dir, unlearned.dir, dirs_exist_ok=True)
    unlearned.update(name="Demo, unlearned", id=unlearned.id)
    case_unlearn(unlearned, "finetune", {"epochs": 1})
    return store, demo.id, unlearned.id


@pytest.fixture
def install_case(demo_store, audit_home: Path) -> Callable[[str], str]:
    """Copy a ready case into this test's home and make it the last opened; returns its id."""

    def install(which: str) -> str:
        store, demo_id, unlearned_id = demo_store
        case_id = {"demo": demo_id, "unlearned": unlearned_id}[which]
        shutil.copytree(store.root / case_id, audit_home / "cases" / case_id)
        (audit_home / "last_case").write_text(case_id)
        return case_id

    return install
