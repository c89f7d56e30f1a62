"""The executor seam (:mod:`mu_core.executor`): in-process jobs, and a local Ray (2 CPUs) shared by
this module's Ray tests and shut down after them.

The job functions below are at the top level so that Ray workers can import them by name (a
local Ray started on demand gives its workers this process's import path).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mu_core.errors import AuditInputError, RunCancelled
from mu_core.executor import (
    ExecutorSettings,
    JobFailed,
    decode_result,
    encode_result,
    executor_settings,
    run_jobs,
    save_settings,
    set_default_executor,
)

#: How long a test waits for a state (a process to go, files to appear) before it fails.
WAIT_S = 120


def square_job(job: dict, shared, ctx) -> dict:
    """``x`` squared plus the shared offset, with two progress reports."""
    ctx.progress(0.5, "halfway")
    offset = shared["offset"] if shared else torch.zeros(1)
    ctx.progress(1.0, "squared")
    return {"y": torch.tensor([float(job["x"]) ** 2]) + offset, "index": ctx.index, "executor": ctx.executor,
            "threads": torch.get_num_threads()}


def flaky_job(job: dict, shared, ctx) -> dict:
    """Fails (``mode``: raise an error, die with its process, or say the input is bad) while
    fewer than ``fail_times`` attempts were made; counts its attempts in a file."""
    marker = Path(job["dir"]) / f"attempts_{ctx.index}"
    attempts = len(marker.read_text()) if marker.exists() else 0
    marker.write_text("x" * (attempts + 1))
    if attempts < job["fail_times"]:
        if job["mode"] == "die":
            os._exit(3)  # not 1, which a crashing interpreter also gives
        if job["mode"] == "user":
            raise AuditInputError("This input is wrong.")
        raise RuntimeError(f"attempt {attempts + 1} failed")
    return {"attempts": attempts + 1}


def waiting_job(job: dict, shared, ctx) -> dict:
    """Writes its pid, then waits (reporting progress) until ``stop`` exists, at most ``WAIT_S``."""
    folder = Path(job["dir"])
    (folder / f"pid_{ctx.index}").write_text(str(os.getpid()))
    deadline = time.monotonic() + WAIT_S
    while not (folder / "stop").exists() and time.monotonic() < deadline:
        ctx.progress(0.1, "waiting")
        time.sleep(0.05)
    (folder / f"finished_{ctx.index}").write_text("yes")
    return {}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


# ---------------------------------------------------------------- in-process

def test_results_travel_as_safetensors_with_json_values() -> None:
    values = {"weights": torch.arange(6, dtype=torch.float32).view(2, 3).t(), "mask": np.array([True, False]),
              "name": "model 3", "seconds": 1.5, "params": {"lr": 0.01}}
    data = encode_result(values)
    assert data[8:9] == b"{"  # a safetensors header, nothing pickled
    back = decode_result(data)
    assert torch.equal(back["weights"], values["weights"]) and back["mask"].tolist() == [True, False]
    assert (back["name"], back["seconds"], back["params"]) == ("model 3", 1.5, {"lr": 0.01})


def test_local_jobs_return_results_in_order_with_one_progress_bar() -> None:
    seen: list[tuple[float, str]] = []
    results = run_jobs(square_job, [{"x": 1}, {"x": 2}, {"x": 3}], shared={"offset": torch.tensor([0.5])},
                       executor="inline", progress=lambda f, m: seen.append((f, m)), label="Square")
    assert [float(r["y"]) for r in results] == [1.5, 4.5, 9.5]
    assert [r["index"] for r in results] == [0, 1, 2] and {r["executor"] for r in results} == {"inline"}
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(m.startswith("Square 2/3: halfway") for _, m in seen)
    assert run_jobs(square_job, [], executor="inline") == []


def test_local_jobs_pin_their_thread_count_and_restore_it() -> None:
    before = torch.get_num_threads()
    results = run_jobs(square_job, [{"x": 1}], executor=ExecutorSettings("inline", cpus_per_job=1))
    assert results[0]["threads"] == 1 and torch.get_num_threads() == before


def test_a_failing_local_job_is_retried_once_then_reported(tmp_path: Path) -> None:
    ok = run_jobs(flaky_job, [{"dir": str(tmp_path), "fail_times": 1, "mode": "raise"}], executor="inline")
    assert ok[0]["attempts"] == 2
    (tmp_path / "attempts_0").unlink()
    with pytest.raises(JobFailed, match=r"Job 1 of 1 failed twice .*attempt 2 failed"):
        run_jobs(flaky_job, [{"dir": str(tmp_path), "fail_times": 2, "mode": "raise"}], executor="inline")
    (tmp_path / "attempts_0").unlink()
    with pytest.raises(AuditInputError, match="This input is wrong"):
        run_jobs(flaky_job, [{"dir": str(tmp_path), "fail_times": 2, "mode": "user"}], executor="inline")
    assert (tmp_path / "attempts_0").read_text() == "x"  # the user's error is not retried


def test_a_cancel_stops_local_jobs_before_the_next_one(tmp_path: Path) -> None:
    def progress(fraction: float, message: str) -> None:
        if "finished" not in message and (tmp_path / "pid_0").exists():
            (tmp_path / "stop").write_text("")
            raise RunCancelled("cancelled")

    with pytest.raises(RunCancelled):
        run_jobs(waiting_job, [{"dir": str(tmp_path)}, {"dir": str(tmp_path)}], executor="inline", progress=progress)
    assert not (tmp_path / "pid_1").exists()


def test_job_functions_must_be_importable_by_name() -> None:
    def inner(job, shared, ctx):
        return {}

    with pytest.raises(ValueError, match="top level"):
        run_jobs(inner, [{}], executor="inline")


def test_the_executor_comes_from_the_argument_the_cli_the_environment_or_the_app(monkeypatch) -> None:
    monkeypatch.delenv("MU_AUDIT_EXECUTOR", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert executor_settings().kind == "inline"
    save_settings(ExecutorSettings("ray", "127.0.0.1:6390", cpus_per_job=2))
    assert executor_settings() == ExecutorSettings("ray", "127.0.0.1:6390", 2.0)
    monkeypatch.setenv("MU_AUDIT_EXECUTOR", "inline")
    monkeypatch.setenv("MU_AUDIT_JOB_CPUS", "1")
    assert executor_settings().kind == "inline" and executor_settings().cpus_per_job == 1.0
    set_default_executor("ray", "10.0.0.5:6379")
    try:
        assert executor_settings().address == "10.0.0.5:6379"
        assert executor_settings("inline").kind == "inline"
    finally:
        set_default_executor(None)
    monkeypatch.setenv("MU_AUDIT_EXECUTOR", "dask")
    with pytest.raises(AuditInputError, match="Unknown executor 'dask'"):
        executor_settings()


def test_estimates_divide_by_the_jobs_a_ray_cluster_runs_at_once(monkeypatch, digits_mlp) -> None:
    from mu_core.audit.retrains import estimate_retrain_seconds, retrains_note
    from mu_core.executor import parallel_slots

    monkeypatch.delitem(sys.modules, "ray", raising=False)  # not imported, so nothing to ask: the estimate never starts Ray
    monkeypatch.setenv("MU_AUDIT_RAY_CPUS", "4")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    _, record = digits_mlp
    timed = record.with_updates(metrics={**record.metrics, "train_seconds": 10.0})
    n = len(record.train_indices)
    assert parallel_slots("inline") == 1
    from mu_core.executor import process_slots

    assert parallel_slots("processes") == process_slots(ExecutorSettings("processes"), 1 << 20)[0] >= 1  # one per core
    assert parallel_slots(ExecutorSettings("ray", cpus_per_job=1)) == 4 and parallel_slots(ExecutorSettings("ray", cpus_per_job=2)) == 2
    assert parallel_slots(ExecutorSettings("ray", "10.0.0.5:6379", cpus_per_job=1)) == 1  # a remote cluster not joined yet
    inline = estimate_retrain_seconds(timed, 4, 0, executor="inline")
    assert inline == pytest.approx(10.0 * 4 * 1.1)
    assert estimate_retrain_seconds(timed, 4, 0, executor=ExecutorSettings("ray", cpus_per_job=1)) == pytest.approx(inline / 4)
    two_waves = 10.0 * (n - n // 2) / n * 2 * 1.1  # 5 retrains on 4 slots: two rounds, each on half the data
    assert estimate_retrain_seconds(timed, 5, n // 2, executor=ExecutorSettings("ray", cpus_per_job=1)) == pytest.approx(two_waves)
    set_default_executor(ExecutorSettings("ray", cpus_per_job=1))
    try:
        assert "estimated 11 s on Ray, 4 at a time" in retrains_note(timed, 4, 0, 0, None)
    finally:
        set_default_executor(None)
    assert "estimated 44 s (pass" in retrains_note(timed, 4, 0, 0, None)


# ---------------------------------------------------------------- a local Ray, 2 CPUs

@pytest.fixture(scope="module")
def local_ray():
    """A local Ray started on demand by the executor (2 CPUs, 128 MB object store, loopback), shut down afterwards."""
    pytest.importorskip("ray")
    from mu_core import executor

    saved = {k: os.environ.get(k) for k in ("MU_AUDIT_RAY_CPUS", "MU_AUDIT_RAY_OBJECT_STORE_MB", "RAY_ADDRESS")}
    os.environ.update({"MU_AUDIT_RAY_CPUS": "2", "MU_AUDIT_RAY_OBJECT_STORE_MB": "128"})
    os.environ.pop("RAY_ADDRESS", None)
    settings = ExecutorSettings("ray", cpus_per_job=1)
    try:
        resources = executor.cluster_resources(settings)
        assert resources["cpus"] == 2 and resources["nodes"] == 1 and resources["address"] == "local"
        yield settings
    finally:
        executor.shutdown_ray()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.mark.slow
def test_reference_models_on_ray_give_the_same_attack_numbers_as_in_process(local_ray, digits, tmp_path: Path) -> None:
    from mu_core.attacks.reference import FILE_NAME, ReferenceSet
    from mu_core.audit.report import run_audit
    from mu_core.forget import random_request
    from mu_core.train import TrainConfig, default_config, fit_model

    config = TrainConfig(**{**default_config("mlp", 120).to_dict(), "epochs": 15})
    model, record = fit_model(digits, "mlp", config, train_size=120, device="cpu")
    request = random_request(record.train_indices, 40, seed=0)
    attacks = ["lira_online", "lira_offline"]
    reports, messages = {}, []
    for settings in (ExecutorSettings("inline", cpus_per_job=1), local_ray):
        set_default_executor(settings)
        try:
            reports[settings.kind] = run_audit({"original": (model, record), "unlearned": (model, record)}, request.indices,
                                               device="cpu", attacks=attacks, reference_models=4, batched=False, bootstrap=20,
                                               reference_dir=tmp_path / settings.kind,
                                               progress=lambda f, m: messages.append(m)).data
        finally:
            set_default_executor(None)
    assert any("Reference models" in m and "on Ray" in m for m in messages)
    for attack in attacks:
        for who in ("original", "unlearned"):
            local, ray = reports["inline"]["attacks"][attack][who], reports["ray"]["attacks"][attack][who]
            assert local["auc"] != 0.5 and len(local["roc"]["fpr"]) > 10, (attack, local)  # a real score, not a constant
            assert (ray["auc"], ray["tpr_at_1pct_fpr"], ray["roc"]) == (local["auc"], local["tpr_at_1pct_fpr"], local["roc"])
    refs = {kind: ReferenceSet.load(tmp_path / kind / FILE_NAME) for kind in ("inline", "ray")}
    assert not refs["inline"].batched and torch.equal(refs["inline"].logits, refs["ray"].logits)
    assert all(torch.equal(a[n], b[n]) for a, b in zip(refs["inline"].states, refs["ray"].states, strict=True) for n in a)
    assert not torch.equal(refs["ray"].states[0]["fc1.weight"], refs["ray"].states[1]["fc1.weight"])


def test_compare_runs_on_ray_give_the_same_rows_as_in_process(local_ray, digits) -> None:
    from mu_core.compare import compare_methods
    from mu_core.forget import random_request
    from mu_core.train import TrainConfig, fit_model

    model, record = fit_model(digits, "mlp", TrainConfig(epochs=8, seed=0), train_size=300, device="cpu")
    request = random_request(record.train_indices, 30, seed=0)
    rows = {}
    for settings in (ExecutorSettings("inline", cpus_per_job=1), local_ray):
        result = compare_methods(model, record, request.indices, ["finetune"], dataset=digits, device="cpu", executor=settings,
                                 params={"finetune": {"epochs": 1}})
        rows[settings.kind] = {m: {k: v for k, v in row.items() if k not in ("seconds", "speedup")} for m, row in result.rows.items()}
        rows[settings.kind]["weights"] = result.models["finetune"].model.fc1.weight.detach().clone()
    assert set(rows["ray"]) == {"retrain", "finetune", "weights"}
    assert torch.equal(rows["ray"].pop("weights"), rows["inline"].pop("weights"))
    assert rows["ray"] == rows["inline"]


def test_the_inversion_defense_sweep_on_ray_gives_the_same_rows_as_in_process(local_ray, digits, digits_mlp) -> None:
    from mu_core.inversion import InversionConfig, defense_sweep
    from mu_core.unlearn import unlearn

    model, record = digits_mlp
    unlearned = unlearn(model, record, [7], method="neggrad", dataset=digits, device="cpu")
    rows = {}
    for settings in (ExecutorSettings("inline", cpus_per_job=1), local_ray):
        set_default_executor(settings)
        try:
            rows[settings.kind] = defense_sweep(model, unlearned.model, [7], record=record, unlearned_record=unlearned.record, dataset=digits,
                                                grid={"none": [0.0], "noise": [0.01], "prune": [0.5]},
                                                config=InversionConfig(steps=30, restarts=1))
        finally:
            set_default_executor(None)
    assert [(r["defense"], r["strength"]) for r in rows["ray"]] == [("none", 0.0), ("noise", 0.01), ("prune", 0.5)]
    assert rows["ray"] == rows["inline"]
    assert rows["ray"][2]["test_acc"] != rows["ray"][0]["test_acc"]  # the defenses changed the model


@pytest.mark.slow
def test_a_dying_ray_task_is_retried_once_then_reported(local_ray, tmp_path: Path) -> None:
    ok = run_jobs(flaky_job, [{"dir": str(tmp_path), "fail_times": 1, "mode": "die"}], executor=local_ray)
    assert ok[0]["attempts"] == 2  # its worker died once; Ray ran it again
    (tmp_path / "attempts_0").unlink()
    with pytest.raises(JobFailed, match="Job 1 of 1 failed twice on Ray"):
        run_jobs(flaky_job, [{"dir": str(tmp_path), "fail_times": 2, "mode": "die"}], executor=local_ray)
    assert (tmp_path / "attempts_0").read_text() == "xx"
    (tmp_path / "attempts_0").unlink()
    with pytest.raises(AuditInputError, match="This input is wrong"):
        run_jobs(flaky_job, [{"dir": str(tmp_path), "fail_times": 2, "mode": "user"}], executor=local_ray)
    assert (tmp_path / "attempts_0").read_text() == "x"


def test_a_cancel_stops_the_remote_tasks(local_ray, tmp_path: Path) -> None:
    seen: list[float] = []

    def progress(fraction: float, message: str) -> None:
        seen.append(fraction)
        if (tmp_path / "pid_0").exists() and (tmp_path / "pid_1").exists() and fraction > 0:
            raise RunCancelled("cancelled")

    jobs = [{"dir": str(tmp_path)}, {"dir": str(tmp_path)}]
    with pytest.raises(RunCancelled):
        run_jobs(waiting_job, jobs, executor=local_ray, progress=progress, label="Wait")
    pids = [int((tmp_path / f"pid_{i}").read_text()) for i in range(2)]
    assert os.getpid() not in pids
    deadline = time.monotonic() + WAIT_S
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids), "the cancelled tasks' workers are still running"
    assert not list(tmp_path.glob("finished_*"))
    assert 0 < max(seen) < 1  # the tasks' own progress reached the one bar


def test_retrains_on_ray_have_the_same_weights_as_in_process_and_are_kept_alike(local_ray, digits, tmp_path: Path) -> None:
    from mu_core.audit.retrains import train_retrains
    from mu_core.executor import parallel_slots
    from mu_core.forget import random_request
    from mu_core.train import TrainConfig, fit_model

    model, record = fit_model(digits, "mlp", TrainConfig(epochs=5, seed=0), train_size=200, device="cpu")
    request = random_request(record.train_indices, 30, seed=0)
    assert parallel_slots(local_ray) == 2  # read from the Ray this module started
    retrains, messages = {}, []
    for settings in (ExecutorSettings("inline", cpus_per_job=1), local_ray):
        retrains[settings.kind] = train_retrains(model, record, request.indices, 2, taken=[0], dataset=digits, folder=tmp_path / settings.kind,
                                                 device="cpu", executor=settings, progress=lambda f, m: messages.append(m))
    assert any(m.startswith("Retrains") and "on Ray" in m for m in messages)
    assert [rec.recipe["seed"] for _, rec in retrains["ray"]] == [1, 2]
    for (local, local_rec), (ray, ray_rec) in zip(retrains["inline"], retrains["ray"], strict=True):
        assert all(torch.equal(a, b) for a, b in zip(local.state_dict().values(), ray.state_dict().values(), strict=True))
        assert local_rec.metrics["test_acc"] == ray_rec.metrics["test_acc"] and ray_rec.metrics["unlearn_seconds"] > 0
    first, second = (dict(m.named_parameters())["fc1.weight"] for m, _ in retrains["ray"])
    assert not torch.equal(first, second)  # two seeds, two models
    files = {kind: sorted((tmp_path / kind / "retrains").iterdir()) for kind in ("inline", "ray")}
    assert [f.name for f in files["inline"]] == [f.name for f in files["ray"]] and len(files["ray"]) == 2
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(files["inline"], files["ray"], strict=True))
    messages.clear()
    again = train_retrains(model, record, request.indices, 2, taken=[0], dataset=digits, folder=tmp_path / "ray", executor=local_ray,
                           progress=lambda f, m: messages.append(m))
    assert messages == ["Reusing retrain 1/2 (seed 1)", "Reusing retrain 2/2 (seed 2)"]
    assert torch.equal(dict(again[1][0].named_parameters())["fc1.weight"], second)


def test_threat_sweeps_on_ray_give_the_same_numbers_as_in_process(local_ray, digits_mlp) -> None:
    from mu_core.threats import run_threat

    model, record = digits_mlp
    runs = {"targeted_request": {"targets": 2, "budget": 10, "methods": "neggrad"},
            "over_unlearning": {"requests": 20, "methods": "neggrad"},
            "backdoor_verify": {"methods": "finetune"}}
    numbers, messages = {}, []
    for settings in (ExecutorSettings("inline", cpus_per_job=1), local_ray):
        set_default_executor(settings)
        try:
            numbers[settings.kind] = {name: run_threat(name, model, record, params=params, device="cpu",
                                                       progress=lambda f, m: messages.append(m)).numbers
                                      for name, params in runs.items()}
        finally:
            set_default_executor(None)
    assert any("on Ray" in m for m in messages)
    assert numbers["ray"] == numbers["inline"]
    targeted = numbers["ray"]["targeted_request"]
    assert len(targeted["targets"]) == 2 and {"malicious_misclassified", "random_test_acc"} <= set(targeted["targets"][0])
    assert numbers["ray"]["backdoor_verify"]["providers"]["none"]["honest"] is False
