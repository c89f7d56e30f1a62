"""Shared test set-up: the repository on sys.path and a temporary MU_AUDIT_HOME for every test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
_INTERRUPTED = False


def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo) -> None:
    global _INTERRUPTED
    _INTERRUPTED = True


def pytest_unconfigure(config: pytest.Config) -> None:
    """After Ctrl-C and pytest's summary, leave at once (exit status 2, as pytest's own): Python
    would otherwise wait for every non-daemon thread still running (a page script under AppTest, a
    torch worker), and the run would seem to ignore Ctrl-C."""
    if _INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(pytest.ExitCode.INTERRUPTED)


@pytest.fixture(autouse=True)
def audit_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own MU_AUDIT_HOME, never the user's ~/.mu_audit."""
    home = tmp_path / "mu_audit_home"
    monkeypatch.setenv("MU_AUDIT_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def fashion_root() -> Path:
    """The Fashion-MNIST IDX folder (MU_AUDIT_FASHION_MNIST, else ../shared/datasets/fashion-mnist)."""
    root = Path(os.environ.get("MU_AUDIT_FASHION_MNIST") or ROOT.parent / "shared" / "datasets" / "fashion-mnist")
    if not root.is_dir():
        pytest.skip(f"Fashion-MNIST folder not found at {root}")
    return root
