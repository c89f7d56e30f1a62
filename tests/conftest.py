"""Shared test set-up: the repository on sys.path and a temporary MU_AUDIT_HOME for every test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


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
