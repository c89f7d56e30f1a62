"""The one seam for independent jobs (reference models today; retrains and sweeps next).

A caller hands :func:`run_jobs` a list of :class:`JobSpec` (a function named by its import path
and small keyword arguments: numbers, strings, lists, bytes, file paths) and gets the results back
in order. Backends:

- ``"inline"``: one after the other in this process (the default, and always on a GPU, where one
  process already keeps the device busy);
- ``"processes"``: one worker process per idle core (:func:`mu_core.device.default_threads`), each
  with one torch thread. Models cross the boundary as safetensors bytes, never as pickled
  objects; data travels as a safetensors file the job names.

A Ray backend (issue 17) slots in here behind the same call; nothing else in the engine starts
processes or imports ``ray``.

>>> run_jobs([JobSpec("math:gcd", {"a": 12, "b": 18})])  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from ._types import Progress, report, sub_progress
from .errors import AuditInputError

__all__ = ["BACKENDS", "JobSpec", "pick_backend", "run_jobs"]

BACKENDS = ("inline", "processes")


@dataclass(frozen=True)
class JobSpec:
    """One independent job: ``function`` ("package.module:name") called with ``kwargs``. Inline,
    the function also gets ``progress`` (a callback for its share of the run); in a worker process
    it gets ``progress=None``."""

    function: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""


def _resolve(function: str) -> Callable[..., Any]:
    module, _, name = function.partition(":")
    return getattr(importlib.import_module(module), name)


def _call_in_worker(function: str, kwargs: dict[str, Any]) -> Any:
    return _resolve(function)(**kwargs, progress=None)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _labelled(progress: Progress | None, label: str) -> Progress | None:
    """``progress`` with the job's label before each message."""
    if progress is None or not label:
        return progress
    return lambda fraction, message: progress(fraction, f"{label}: {message}")


def pick_backend(n_jobs: int, device_type: str = "cpu") -> tuple[str, int]:
    """``(backend, workers)`` for ``n_jobs`` jobs: ``MU_AUDIT_EXECUTOR`` (``inline`` or
    ``processes``) when set; otherwise processes on a CPU when more than one core is idle and
    there are several jobs, else inline."""
    from .device import default_threads

    wanted = os.environ.get("MU_AUDIT_EXECUTOR", "").strip().lower()
    if wanted and wanted not in BACKENDS:
        raise AuditInputError(f"MU_AUDIT_EXECUTOR must be one of {', '.join(BACKENDS)}, not '{wanted}'.")
    workers = min(n_jobs, default_threads())
    if wanted == "processes" or (not wanted and device_type == "cpu" and workers > 1):
        return "processes", max(1, workers)
    return "inline", 1


def run_jobs(jobs: Sequence[JobSpec], *, backend: str | None = None, workers: int | None = None,
             device_type: str = "cpu", progress: Progress | None = None) -> list[Any]:
    """Run independent ``jobs`` and return their results in order (see the module doc).

    ``backend`` and ``workers`` default to :func:`pick_backend`. ``progress`` gets the share of
    jobs done (inline: also each job's own progress); when it raises (``RunCancelled``), jobs not
    yet started are dropped and the exception propagates.
    """
    if not jobs:
        return []
    chosen, n_workers = pick_backend(len(jobs), device_type)
    backend = backend or chosen
    if backend not in BACKENDS:
        raise AuditInputError(f"Unknown executor backend '{backend}'; choose {', '.join(BACKENDS)}.")
    if backend == "inline":
        return [_resolve(job.function)(**job.kwargs, progress=_labelled(sub_progress(progress, i / len(jobs), (i + 1) / len(jobs)), job.label))
                for i, job in enumerate(jobs)]
    n_workers = workers or n_workers
    results: list[Any] = [None] * len(jobs)
    context = multiprocessing.get_context("spawn")  # no forked copies of torch's thread pools
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=context, initializer=_init_worker) as pool:
        pending: dict[Future, int] = {pool.submit(_call_in_worker, job.function, job.kwargs): i for i, job in enumerate(jobs)}
        report(progress, 0.0, f"{len(jobs)} jobs in {n_workers} worker processes")
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    i = pending.pop(future)
                    results[i] = future.result()
                    finished = len(jobs) - len(pending)
                    report(progress, finished / len(jobs), f"{jobs[i].label or 'job'} done ({finished}/{len(jobs)}, {n_workers} processes)")
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return results
