"""Background jobs: results, clear failures, cancellation that leaves the case as it was."""

from __future__ import annotations

import threading

import pytest

from mu_core.case import CaseStore
from mu_core.errors import AuditInputError
from mu_core.jobs import JobManager


def test_job_returns_its_result_and_reports_progress() -> None:
    jobs = JobManager()

    def work(progress):
        progress(0.5, "half way")
        return 42

    jobs.submit("k", "Answer", work)
    job = jobs.wait("k")
    assert (job.status, job.result, job.fraction) == ("done", 42, 1.0)


def test_bad_input_in_a_job_fails_with_its_sentence() -> None:
    jobs = JobManager()

    def work(progress):
        raise AuditInputError("The forget request is empty: choose at least one training sample.")

    jobs.submit("k", "Unlearning", work)
    job = jobs.wait("k")
    assert job.status == "failed"
    assert job.error == "The forget request is empty: choose at least one training sample."


def test_a_second_job_with_the_same_key_is_refused_while_the_first_runs() -> None:
    jobs = JobManager()
    release = threading.Event()
    jobs.submit("k", "Training", lambda progress: release.wait())
    with pytest.raises(AuditInputError, match="still running"):
        jobs.submit("k", "Training", lambda progress: None)
    release.set()
    assert jobs.wait("k").status == "done"


def test_cancelled_training_leaves_the_case_without_a_model(audit_home) -> None:
    from mu_core.workflow import case_train

    case = CaseStore().create("cancel me")
    jobs = JobManager()
    started = threading.Event()

    def progress_watcher(progress):
        def tracked(fraction, message):
            started.set()
            progress(fraction, message)

        return case_train(case, "digits", "mlp", epochs=500, progress=tracked)

    jobs.submit("train", "Training", progress_watcher)
    started.wait()
    jobs.cancel("train")
    job = jobs.wait("train")
    assert job.status == "cancelled"
    assert case.entry("original") is None and case.file("original") is None


def test_a_job_says_it_is_preparing_while_the_engine_loads_then_runs() -> None:
    preparing, release = threading.Event(), threading.Event()

    def prepare() -> None:
        preparing.set()
        release.wait()

    jobs = JobManager(prepare=prepare)
    jobs.submit("k", "Training", lambda progress: progress(0.25, "epoch 1/4") or "trained")
    preparing.wait()
    job = jobs.get("k")
    assert (job.status, job.message, job.fraction) == ("running", "Preparing (loading the engine)", 0.0)
    release.set()
    assert (jobs.wait("k").status, job.result, job.message) == ("done", "trained", "Done")
