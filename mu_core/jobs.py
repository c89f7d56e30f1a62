"""Long work in background threads, with progress and cancellation.

The app starts training, unlearning and audits here so they keep running while the user moves
between pages; any page can show their progress or cancel them.

>>> jobs = JobManager()
>>> job = jobs.submit("demo", "Counting", lambda progress: 42)
>>> jobs.wait("demo").result
42
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._types import Progress
from .errors import AuditInputError, RunCancelled

__all__ = ["Job", "JobManager"]

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One piece of background work. ``status`` is running, done, failed or cancelled."""

    key: str
    label: str
    status: str = "running"
    fraction: float = 0.0
    message: str = "Started"
    error: str | None = None
    result: Any = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    finished_event: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def elapsed(self) -> float:
        return (self.finished or time.time()) - self.started

    def progress(self, fraction: float, message: str) -> None:
        """The callback handed to the engine: records progress, raises if cancelled."""
        if self.cancel_event.is_set():
            raise RunCancelled(f"{self.label} was cancelled")
        self.fraction, self.message = fraction, message


class JobManager:
    """Background jobs by key; one running job per key.

    ``prepare`` (optional) runs in each job's thread before its work, while the job says
    "Preparing"; the app sets torch's thread count there (:func:`mu_core.device.configure_threads`).
    """

    def __init__(self, prepare: Callable[[], Any] | None = None) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._prepare = prepare

    def submit(self, key: str, label: str, work: Callable[[Progress], Any]) -> Job:
        """Start ``work(progress)`` in a thread unless a job with ``key`` is already running."""
        with self._lock:
            current = self._jobs.get(key)
            if current is not None and current.running:
                raise AuditInputError(f"'{current.label}' is still running; wait for it or cancel it first.")
            job = Job(key, label)
            self._jobs[key] = job
        threading.Thread(target=self._run, args=(job, work), name=f"mu-audit-{key}", daemon=True).start()
        return job

    def _run(self, job: Job, work: Callable[[Progress], Any]) -> None:
        try:
            if self._prepare is not None:
                job.message = "Preparing (loading the engine)"
                self._prepare()
                job.progress(0.0, "Started")
            job.result = work(job.progress)
            job.fraction, job.message, job.status = 1.0, "Done", "done"
        except RunCancelled:
            job.status, job.message = "cancelled", "Cancelled"
        except AuditInputError as exc:
            job.status, job.error = "failed", str(exc)
        except BaseException as exc:  # keep the app alive and never leave a job "running" without its thread
            log.error("job %s failed:\n%s", job.key, traceback.format_exc())
            job.status, job.error = "failed", f"Unexpected {type(exc).__name__}: {exc}"
        finally:
            job.finished = time.time()
            job.finished_event.set()

    def get(self, key: str) -> Job | None:
        return self._jobs.get(key)

    def cancel(self, key: str) -> None:
        job = self._jobs.get(key)
        if job is not None and job.running:
            job.cancel_event.set()
            job.message = "Cancelling…"

    def forget(self, key: str) -> None:
        """Drop a finished job from the list."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not job.running:
                del self._jobs[key]

    def running(self) -> list[Job]:
        return [job for job in list(self._jobs.values()) if job.running]

    def all(self) -> list[Job]:
        """Every job still listed, running or finished, oldest first."""
        return sorted(list(self._jobs.values()), key=lambda job: job.started)

    def wait(self, key: str, timeout: float | None = None) -> Job:
        """Block until the job with ``key`` has finished, or ``timeout`` seconds have passed (for
        scripts and tests); returns the job either way."""
        job = self._jobs[key]
        job.finished_event.wait(timeout)
        return job
