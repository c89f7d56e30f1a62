"""The executor: independent jobs inline or in worker processes give the same results, in order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mu_core.attacks.reference import train_one_by_one
from mu_core.data import load_dataset
from mu_core.errors import AuditInputError, RunCancelled
from mu_core.executor import JobSpec, pick_backend, run_jobs


class _Record:
    recipe = {"epochs": 1, "batch_size": 64, "lr": 1e-3, "optimizer": "adam"}


def _population(k: int = 3, n: int = 400):
    data = load_dataset("digits")
    keep = np.random.default_rng(0).random((k, n)) < 0.5
    return data, data.x_train[:n], data.y_train[:n], keep


def test_reference_models_are_the_same_inline_and_in_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    data, x, y, keep = _population()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a worker: the same float sums
    try:
        inline = train_one_by_one("cnn", data.in_shape, data.num_classes, x, y, keep, _Record, device=torch.device("cpu"), backend="inline")
    finally:
        torch.set_num_threads(threads)
    workers = train_one_by_one("cnn", data.in_shape, data.num_classes, x, y, keep, _Record, device=torch.device("cpu"), backend="processes")
    assert len(inline) == len(workers) == 3
    for a, b in zip(inline, workers, strict=True):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=name)
    # different seeds and halves: the models differ from each other
    assert not torch.equal(inline[0].state_dict()["fc2.weight"], inline[1].state_dict()["fc2.weight"])


def test_inline_jobs_report_labelled_progress_and_stop_when_cancelled() -> None:
    data, x, y, keep = _population(k=2, n=200)
    seen: list[str] = []

    def progress(fraction: float, message: str) -> None:
        seen.append(message)
        if fraction > 0.5:
            raise RunCancelled("cancelled")

    with pytest.raises(RunCancelled):
        train_one_by_one("mlp", data.in_shape, data.num_classes, x, y, keep, _Record, device=torch.device("cpu"), backend="inline",
                         progress=progress)
    assert seen[0].startswith("Reference model 1/2: training: epoch 1/1")
    assert any(m.startswith("Reference model 2/2") for m in seen)


def test_backend_choice_follows_the_setting_and_refuses_unknown_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MU_AUDIT_EXECUTOR", "inline")
    assert pick_backend(16) == ("inline", 1)
    monkeypatch.setenv("MU_AUDIT_EXECUTOR", "processes")
    assert pick_backend(16)[0] == "processes"
    assert pick_backend(16, "cuda")[0] == "processes"  # asked for explicitly
    monkeypatch.delenv("MU_AUDIT_EXECUTOR")
    assert pick_backend(16, "cuda") == ("inline", 1)  # one process keeps a GPU busy
    assert pick_backend(1) == ("inline", 1)
    monkeypatch.setenv("MU_AUDIT_EXECUTOR", "ray")
    with pytest.raises(AuditInputError, match="MU_AUDIT_EXECUTOR"):
        run_jobs([JobSpec("math:gcd", {"a": 4, "b": 6})])
