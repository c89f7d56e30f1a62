"""The ``processes`` executor (:mod:`mu_core.executor`): jobs in worker processes on this machine,
and the reference models' automatic choice of it.

The job functions are at the top level so that the workers can import them by name (a spawned
worker gets this process's import path).
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mu_core.errors import AuditInputError, RunCancelled
from mu_core.executor import ExecutorSettings, JobFailed, executor_settings, process_slots, run_jobs
from tests.mu_core.test_executor import _alive, flaky_job, waiting_job  # the same jobs as the inline and Ray tests

#: How long a test waits for a state (a process to go) before it fails.
PROCESSES = ExecutorSettings("processes", cpus_per_job=1)


def square_job(job: dict, shared, ctx) -> dict:
    """``x`` squared plus the shared offset, with the worker's pid and thread count."""
    ctx.progress(0.5, "halfway")
    return {"y": torch.tensor([float(job["x"]) ** 2]) + shared["offset"], "index": ctx.index, "executor": ctx.executor,
            "threads": torch.get_num_threads(), "pid": os.getpid()}


@pytest.fixture(autouse=True)
def no_workers_left():
    """Every test leaves no worker process behind."""
    yield
    assert multiprocessing.active_children() == []


def test_jobs_in_worker_processes_return_in_order_with_one_thread_each_and_progress() -> None:
    seen: list[tuple[float, str]] = []
    results = run_jobs(square_job, [{"x": x} for x in range(5)], shared={"offset": torch.tensor([0.5])}, executor="processes",
                       progress=lambda f, m: seen.append((f, m)), label="Square")
    assert [float(r["y"]) for r in results] == [0.5, 1.5, 4.5, 9.5, 16.5]
    assert [r["index"] for r in results] == list(range(5)) and {r["executor"] for r in results} == {"processes"}
    assert {r["threads"] for r in results} == {1} and os.getpid() not in {r["pid"] for r in results}
    workers = process_slots(PROCESSES, 5)[0]
    assert len({r["pid"] for r in results}) <= workers
    assert any(m.startswith(f"Squares 0/5 done in {workers} processes") for _, m in seen)
    assert seen[-1][0] == 1.0 and seen[-1][1].startswith("Squares 5/5 done")
    two = run_jobs(square_job, [{"x": 1}], shared={"offset": torch.zeros(1)}, executor=ExecutorSettings("processes", cpus_per_job=2))
    assert two[0]["threads"] == 2


def test_a_failing_job_in_a_worker_is_retried_once_then_reported(tmp_path: Path) -> None:
    ok = run_jobs(flaky_job, [{"dir": str(tmp_path), "fail_times": 1, "mode": "raise"}], executor=PROCESSES)
    assert ok[0]["attempts"] == 2
    (tmp_path / "attempts_0").unlink()
    with pytest.raises(JobFailed, match=r"Job 1 of 1 failed twice in a worker process .*attempt 2 failed"):
        run_jobs(flaky_job, [{"dir": str(tmp_path), "fail_times": 2, "mode": "raise"}], executor=PROCESSES)
    (tmp_path / "attempts_0").unlink()
    with pytest.raises(AuditInputError, match="This input is wrong"):
        run_jobs(flaky_job, [{"dir": str(tmp_path), "fail_times": 2, "mode": "user"}], executor=PROCESSES)
    assert (tmp_path / "attempts_0").read_text() == "x"  # the user's error is not retried


def test_a_job_whose_worker_dies_is_retried_in_a_new_worker_then_reported(tmp_path: Path) -> None:
    ok = run_jobs(flaky_job, [{"dir": str(tmp_path), "fail_times": 1, "mode": "die"}], executor=PROCESSES)
    assert ok[0]["attempts"] == 2
    (tmp_path / "attempts_0").unlink()
    with pytest.raises(JobFailed, match=r"Job 1 of 1 failed twice in a worker process .*exit code 3"):
        run_jobs(flaky_job, [{"dir": str(tmp_path), "fail_times": 2, "mode": "die"}], executor=PROCESSES)
    assert (tmp_path / "attempts_0").read_text() == "xx"


def test_a_cancel_terminates_the_worker_processes(tmp_path: Path) -> None:
    jobs = [{"dir": str(tmp_path)} for _ in range(4)]
    workers = process_slots(PROCESSES, len(jobs))[0]

    def progress(fraction: float, message: str) -> None:
        if len(list(tmp_path.glob("pid_*"))) == workers and "waiting" in message:
            raise RunCancelled("cancelled")

    with pytest.raises(RunCancelled):
        run_jobs(waiting_job, jobs, executor=PROCESSES, progress=progress, label="Wait")
    pids = [int(p.read_text()) for p in tmp_path.glob("pid_*")]
    assert len(pids) == workers and os.getpid() not in pids
    assert not any(_alive(pid) for pid in pids), "the cancelled workers are still running"
    assert not list(tmp_path.glob("finished_*"))


def test_the_processes_executor_comes_from_the_environment_and_a_fallback_never_overrides_a_choice(monkeypatch) -> None:
    monkeypatch.delenv("MU_AUDIT_EXECUTOR", raising=False)
    shared = {"offset": torch.zeros(1)}
    assert run_jobs(square_job, [{"x": 2}], shared=shared, fallback="processes")[0]["executor"] == "processes"
    assert run_jobs(square_job, [{"x": 2}], shared=shared, executor="inline", fallback="processes")[0]["executor"] == "inline"
    monkeypatch.setenv("MU_AUDIT_EXECUTOR", "inline")
    assert run_jobs(square_job, [{"x": 2}], shared=shared, fallback="processes")[0]["executor"] == "inline"
    monkeypatch.setenv("MU_AUDIT_EXECUTOR", "processes")
    assert executor_settings().kind == "processes"
    assert run_jobs(square_job, [{"x": 2}], shared=shared)[0]["executor"] == "processes"


def test_reference_models_in_worker_processes_are_the_same_as_in_process_at_one_thread(digits) -> None:
    from mu_core.attacks.reference import heldout_pool, train_references
    from mu_core.train import TrainConfig, fit_model

    for arch, epochs in (("mlp", 6), ("cnn", 2)):
        _, record = fit_model(digits, arch, TrainConfig(epochs=epochs, seed=0), train_size=150, device="cpu")
        pool = heldout_pool(len(record.train_indices), digits.n_test)
        refs = {settings.kind: train_references(record, digits, pool, 4, batched=False, device=torch.device("cpu"), executor=settings)
                for settings in (ExecutorSettings("inline", cpus_per_job=1), PROCESSES)}
        assert torch.equal(refs["inline"].logits, refs["processes"].logits), arch
        assert all(torch.equal(a[n], b[n]) for a, b in zip(refs["inline"].states, refs["processes"].states, strict=True) for n in a)
        first = next(iter(refs["processes"].states[0]))
        assert not torch.equal(refs["processes"].states[0][first], refs["processes"].states[1][first])  # K different models
        assert np.array_equal(refs["inline"].keep, refs["processes"].keep)


def test_reference_models_take_worker_processes_on_a_cpu_only_when_it_pays(digits, digits_mlp) -> None:
    from mu_core.attacks.reference import PROCESSES_MIN_ESTIMATE, parallel_executor

    _, record = digits_mlp
    cpu, many = torch.device("cpu"), 2 * PROCESSES_MIN_ESTIMATE
    expected = "processes" if process_slots(ExecutorSettings("processes"), 16)[0] > 1 else None
    assert parallel_executor(record, digits, 16, cpu, inline_seconds=many) == expected
    assert parallel_executor(record, digits, 16, cpu, inline_seconds=PROCESSES_MIN_ESTIMATE / 4) is None
    assert parallel_executor(record, digits, 16, torch.device("cuda"), inline_seconds=many) is None  # a GPU stays in process
    assert parallel_executor(record, digits, 4, cpu) is None  # timed here: 4 small mlps take about a second
