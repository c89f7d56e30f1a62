"""Shared fixtures for the engine tests.

Every test runs with its own ``MU_AUDIT_HOME`` under ``tmp_path`` and on the CPU (this
``audit_home`` overrides the one in ``tests/conftest.py`` for the engine tests). The digits models
are trained once per session and shared: tests must never modify them in place
(``copy.deepcopy`` first).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

#: Images per synthetic CIFAR-10 batch file (five training batches, one test batch).
CIFAR_BATCH_SIZE = 4


@pytest.fixture(autouse=True)
def audit_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty MU Audit home for every test; no data folder and no GPU from the environment."""
    home = tmp_path / "home"
    monkeypatch.setenv("MU_AUDIT_HOME", str(home))
    monkeypatch.delenv("MU_AUDIT_DATA", raising=False)
    monkeypatch.delenv("MU_AUDIT_DEBUG", raising=False)
    monkeypatch.setenv("MU_AUDIT_DEVICE", "cpu")
    return home


@pytest.fixture(scope="session")
def digits():
    from mu_core.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_mlp(digits):
    """``(model, record)``: an mlp trained on all 1,437 digits for 15 epochs, seed 0 (~1 s)."""
    from mu_core.train import TrainConfig, fit_model

    return fit_model(digits, "mlp", TrainConfig(epochs=15, seed=0), device="cpu")


@pytest.fixture(scope="session")
def digits_cnn(digits):
    """``(model, record)``: the cnn with its default recipe on all digits (~6 s)."""
    from mu_core.train import fit_model

    return fit_model(digits, "cnn", device="cpu")


def _write_cifar_batch(path: Path, data: np.ndarray, labels: list[int]) -> None:
    with open(path, "wb") as fh:
        pickle.dump({b"batch_label": b"synthetic", b"data": data, b"labels": labels}, fh, protocol=2)


@pytest.fixture
def cifar10_root(tmp_path: Path) -> Path:
    """A CIFAR-10 python-batches folder: 5 x 4 training images and 4 test images, seeded."""
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(CIFAR_BATCH_SIZE, 3 * 32 * 32), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=CIFAR_BATCH_SIZE)]
        _write_cifar_batch(root / name, data, labels)
    return root
