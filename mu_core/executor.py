"""The one seam for independent jobs (reference models, retrains, compare runs, sweeps): in
this process by default, in worker processes on this machine or on a Ray cluster when asked.

A caller hands :func:`run_jobs` a job function defined at the top level of a module, a list
of small job descriptions (plain JSON-able dicts) and, optionally, tensors every job needs
(``shared``: the population, a model's weights); it gets one result per job back, in order.
A job function has the signature ``fn(job, shared, ctx) -> dict`` and returns tensors and
JSON-able values; ``ctx`` (:class:`JobContext`) gives it its device and a progress callback.

What travels to a Ray cluster, and how: the function by name (``module:qualname``, imported on
the worker), the job description as a plain dict, the shared tensors once per run as
safetensors bytes in the object store, and each result back as safetensors bytes (non-tensor
values in a JSON header). Models therefore travel in the safe format, never as pickled
objects; nothing received is ever unpickled into a model. In-process runs encode and decode
results the same way, so a job that runs here also runs on a cluster, and the same seeds give
the same numbers with either executor (on the same kind of device).

Which executor: the ``executor`` argument, else :func:`set_default_executor` (the CLI's
``--executor``), else ``MU_AUDIT_EXECUTOR``, else the app's saved setting
(``MU_AUDIT_HOME/executor.json``, see :func:`save_settings`), else ``inline``. Which cluster:
the settings' address, else ``RAY_ADDRESS``, else the saved address, else a local Ray started on
demand (this machine's CPUs, loopback only, no dashboard, a 1 GB object store).

Each Ray task gets ``cpus_per_job`` CPUs (torch uses that many threads) or, when the cluster
has GPUs, ``gpus_per_job`` of a GPU and computes on ``cuda``. Progress from all tasks is
gathered by a small actor and shown as one bar; a cancel (the progress callback raising
:class:`~mu_core.errors.RunCancelled`) force-cancels the remote tasks. A job that dies (its
worker process or node is lost) or raises an unexpected exception is retried once, then
reported as :class:`JobFailed`; an :class:`~mu_core.errors.AuditInputError` inside a job is the
user's to fix and is raised as is, without a retry. Ray is imported only when asked for.

``processes`` runs the jobs in a pool of worker processes on this machine (spawned, not forked),
one per core, each with ``cpus_per_job`` torch threads (default 1): the function travels by name,
the job as a plain dict over a pipe, the shared tensors once as a safetensors file and each result
back as safetensors bytes, as with Ray. Each worker reports progress over its own pipe (a worker
that dies cannot corrupt another's), and retries, cancellation and user errors behave as on Ray.

>>> run_jobs(_square_job, [{"x": 2}, {"x": 3}])   # doctest: +SKIP
[{'y': 4}, {'y': 9}]
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ._types import Progress, report
from .errors import AuditInputError, RunCancelled

__all__ = [
    "EXECUTORS",
    "ExecutorSettings",
    "JobContext",
    "JobFailed",
    "cli_executor",
    "cluster_resources",
    "decode_result",
    "encode_result",
    "executor_settings",
    "load_settings",
    "pack_model",
    "parallel_slots",
    "run_jobs",
    "save_settings",
    "set_default_executor",
    "shutdown_ray",
    "unpack_model",
]

#: The executors :func:`run_jobs` knows.
EXECUTORS = ("inline", "processes", "ray")
ENV_EXECUTOR = "MU_AUDIT_EXECUTOR"
ENV_JOB_CPUS = "MU_AUDIT_JOB_CPUS"
SETTINGS_FILE = "executor.json"
#: The object store of a local Ray started on demand, in MB (``MU_AUDIT_RAY_OBJECT_STORE_MB``):
#: it holds only the shared tensors (a dataset's arrays at most) and the results in flight.
LOCAL_OBJECT_STORE_MB = 1024
#: A job's result may hold at most this many bytes (a reference model is a few MB).
MAX_RESULT_BYTES = 2 * 2**30
_META_KEY = "__mu_audit_meta__"


class JobFailed(RuntimeError):
    """A job failed twice (it was retried once): its worker died or it raised unexpectedly."""


@dataclass(frozen=True)
class ExecutorSettings:
    """Where independent jobs run. ``kind``: ``inline`` (this process), ``processes`` (worker processes on
    this machine, one per core) or ``ray``; ``address``: a Ray cluster
    (``host:port`` or ``ray://host:port``), ``None`` for ``RAY_ADDRESS`` or a local Ray started on
    demand; ``cpus_per_job``: each job's CPUs, and the torch threads it computes with under either
    executor (``None``: this process's thread count), so that both give the same numbers;
    ``gpus_per_job``: each Ray task's share of a GPU when the cluster has GPUs."""

    kind: str = "inline"
    address: str | None = None
    cpus_per_job: float | None = None
    gpus_per_job: float = 1.0

    def validate(self) -> ExecutorSettings:
        if self.kind not in EXECUTORS:
            raise AuditInputError(f"Unknown executor '{self.kind}'; choose {' or '.join(EXECUTORS)}.")
        if (self.cpus_per_job is not None and not 0 < self.cpus_per_job <= 1024) or not 0 < self.gpus_per_job <= 64:
            raise AuditInputError("A job's share must be more than 0 CPUs (at most 1024) and more than 0 GPUs (at most 64).")
        return self

    def threads(self) -> int:
        """The torch threads each job computes with (CPU results depend on it)."""
        if self.cpus_per_job is None:
            from .device import configure_threads

            return configure_threads()
        return max(1, int(self.cpus_per_job))


@dataclass(frozen=True)
class JobContext:
    """What a job function gets besides its description: where to compute (a torch device
    name), a progress callback (``progress(fraction, message)``), its index and the executor."""

    device: str
    progress: Progress
    index: int
    executor: str


JobFn = Callable[[dict, Mapping[str, Any], JobContext], Mapping[str, Any]]

_default: ExecutorSettings | None = None


def set_default_executor(kind: str | ExecutorSettings | None, address: str | None = None) -> None:
    """The process-wide executor (the CLI's ``--executor``); ``None`` goes back to the environment."""
    global _default
    if isinstance(kind, ExecutorSettings):
        _default = kind.validate()
    else:
        _default = None if kind is None else ExecutorSettings(kind, address).validate()


@contextmanager
def cli_executor(kind: str | None, address: str | None = None, cpus_per_job: float | None = None) -> Iterator[ExecutorSettings]:
    """The CLI's ``--executor``, ``--address`` and ``--job-cpus`` for the duration of one command."""
    global _default
    before = _default
    current = executor_settings()
    set_default_executor(ExecutorSettings(kind or current.kind, address or current.address,
                                          cpus_per_job if cpus_per_job is not None else current.cpus_per_job,
                                          current.gpus_per_job))
    try:
        yield _default
    finally:
        _default = before


def cmd_cluster(args: Any) -> int:
    """``python -m mu_core cluster``: print the settings in force and the cluster's resources as JSON."""
    settings = executor_settings()
    print(json.dumps({**cluster_resources(settings), "cpus_per_job": settings.cpus_per_job or settings.threads()}, indent=1))
    return 0


def _settings_path() -> Path:
    from .case import audit_home

    return audit_home() / SETTINGS_FILE


def load_settings() -> ExecutorSettings | None:
    """The app's saved setting (``MU_AUDIT_HOME/executor.json``), ``None`` when there is none."""
    path = _settings_path()
    if not path.is_file() or path.stat().st_size > 4096:
        return None
    try:
        raw = json.loads(path.read_text())
        cpus = raw.get("cpus_per_job")
        return ExecutorSettings(str(raw["kind"]), raw.get("address") or None, None if cpus is None else float(cpus),
                                float(raw.get("gpus_per_job", 1.0))).validate()
    except (ValueError, KeyError, TypeError):
        return None


def save_settings(settings: ExecutorSettings) -> Path:
    """Save the app's setting; every later run with this ``MU_AUDIT_HOME`` uses it unless
    ``--executor`` or ``MU_AUDIT_EXECUTOR`` says otherwise."""
    from .case import atomic_write_json

    path = _settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(path, asdict(settings.validate()))


def executor_settings(executor: str | ExecutorSettings | None = None) -> ExecutorSettings:
    """The settings in force (see the module doc for the order of precedence)."""
    if isinstance(executor, ExecutorSettings):
        return executor.validate()
    saved = load_settings()
    if executor is not None:
        base = ExecutorSettings(executor)
    elif _default is not None:
        base = _default
    elif os.environ.get(ENV_EXECUTOR):
        base = ExecutorSettings(os.environ[ENV_EXECUTOR].strip().lower())
    else:
        base = saved or ExecutorSettings()
    address = base.address or os.environ.get("RAY_ADDRESS") or (saved.address if saved else None)
    cpus = base.cpus_per_job
    if cpus is None and os.environ.get(ENV_JOB_CPUS):
        try:
            cpus = float(os.environ[ENV_JOB_CPUS])
        except ValueError as exc:
            raise AuditInputError(f"{ENV_JOB_CPUS} must be a number of CPUs, not '{os.environ[ENV_JOB_CPUS]}'.") from exc
    return replace(base, address=address or None, cpus_per_job=cpus).validate()


# ---------------------------------------------------------------- the safe wire format

def encode_result(values: Mapping[str, Any]) -> bytes:
    """Tensors (and NumPy arrays) as safetensors, every other value in a JSON header."""
    import numpy as np
    import torch
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {}
    for key, value in values.items():
        if key == _META_KEY:
            raise ValueError(f"'{_META_KEY}' is reserved")
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        if isinstance(value, torch.Tensor):
            tensors[key] = value.detach().cpu().contiguous().clone()
        else:
            meta[key] = value
    tensors[_META_KEY] = torch.frombuffer(bytearray(json.dumps(meta, allow_nan=True).encode()), dtype=torch.uint8)
    return save(tensors)


def decode_result(data: bytes) -> dict[str, Any]:
    """The inverse of :func:`encode_result` (tensors come back as CPU tensors)."""
    from safetensors.torch import load

    if len(data) > MAX_RESULT_BYTES:
        raise JobFailed(f"A job's result is {len(data) / 2**20:.0f} MB, over the {MAX_RESULT_BYTES / 2**20:.0f} MB limit.")
    tensors = load(data)
    meta = json.loads(bytes(tensors.pop(_META_KEY).numpy()).decode())
    return {**tensors, **meta}


def pack_model(model: Any, record: Any) -> Any:
    """A model and its record as the bytes of its safetensors file (a uint8 tensor), to travel in
    a job's result or shared tensors; :func:`unpack_model` loads it back."""
    import tempfile

    import torch

    from .models import save_model

    with tempfile.TemporaryDirectory() as tmp:
        path = save_model(model, record, Path(tmp) / "model.safetensors")
        return torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)


def unpack_model(packed: Any) -> tuple[Any, Any]:
    """``(model, record)`` from :func:`pack_model`'s bytes, through the safe loader."""
    import tempfile

    from .models import load_model

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        path.write_bytes(packed.numpy().tobytes())
        return load_model(path)


def _fn_name(fn: JobFn) -> str:
    name = f"{fn.__module__}:{fn.__qualname__}"
    if "<" in fn.__qualname__:
        raise ValueError(f"Job functions must be defined at the top level of a module, not {name}.")
    return name


def _import_fn(name: str) -> JobFn:
    module, _, qualname = name.partition(":")
    return getattr(importlib.import_module(module), qualname)


class _Aggregate:
    """One bar over all jobs: the mean of the jobs' fractions and the latest message."""

    def __init__(self, progress: Progress | None, label: str, n: int, where: str) -> None:
        self.progress, self.label, self.n, self.where = progress, label, n, where
        self.fractions = [0.0] * n

    def show(self, index: int | None, message: str) -> None:
        done = sum(f >= 1.0 for f in self.fractions)
        head = f"{self.label} {index + 1}/{self.n}" if index is not None and self.where == "inline" else f"{self.label}s {done}/{self.n} done{self.where}"
        report(self.progress, sum(self.fractions) / max(self.n, 1), f"{head}: {message}" if message else head)


def run_jobs(fn: JobFn, jobs: Sequence[dict], *, shared: Mapping[str, Any] | None = None,
             executor: str | ExecutorSettings | None = None, device: str | None = None,
             progress: Progress | None = None, label: str = "Job", fallback: str | None = None) -> list[dict[str, Any]]:
    """Run ``fn(job, shared, ctx)`` for every job; returns the decoded results in order.

    ``device`` is where in-process jobs and worker processes compute (default:
    :func:`~mu_core.device.pick_device`); Ray jobs compute on ``cuda`` when the cluster has GPUs,
    else on ``cpu``. ``label`` names one job in the progress messages ("Reference model 3/16: ...").
    ``fallback`` is the executor when nobody chose one (no argument, CLI flag, ``MU_AUDIT_EXECUTOR``
    or saved setting): a caller that measured a faster way for its jobs names it here.
    """
    settings = executor_settings(executor)
    if fallback is not None and executor is None and not _executor_chosen():
        settings = replace(settings, kind=fallback).validate()
    jobs = [dict(job) for job in jobs]
    shared = dict(shared or {})
    if not jobs:
        return []
    name = _fn_name(fn)
    if settings.kind == "ray":
        return _run_ray(name, jobs, shared, settings, progress, label)
    if device is None:
        from .device import pick_device

        device = str(pick_device(None))
    if settings.kind == "processes":
        return _run_processes(name, jobs, shared, settings, str(device), progress, label)
    import torch

    threads, before = settings.threads(), torch.get_num_threads()
    if threads != before:
        torch.set_num_threads(threads)
    try:
        return _run_local(fn, jobs, shared, str(device), progress, label)
    finally:
        if threads != before:
            torch.set_num_threads(before)


def _executor_chosen() -> bool:
    """Whether an executor was chosen for this process: the CLI's, the environment's or the app's saved one."""
    return _default is not None or bool(os.environ.get(ENV_EXECUTOR)) or load_settings() is not None


def _run_local(fn: JobFn, jobs: list[dict], shared: dict, device: str, progress: Progress | None, label: str) -> list[dict]:
    bar = _Aggregate(progress, label, len(jobs), "inline")
    results = []
    for i, job in enumerate(jobs):
        def sub(fraction: float, message: str, i: int = i) -> None:
            bar.fractions[i] = min(max(float(fraction), 0.0), 1.0)
            bar.show(i, message)

        for attempt in (0, 1):
            try:
                results.append(decode_result(encode_result(fn(job, shared, JobContext(device, sub, i, "inline")))))
                break
            except (AuditInputError, RunCancelled):
                raise
            except Exception as exc:
                if attempt:
                    raise JobFailed(f"{label} {i + 1} of {len(jobs)} failed twice (it was retried once): {type(exc).__name__}: {exc}") from exc
                bar.fractions[i] = 0.0
                bar.show(i, f"failed ({type(exc).__name__}: {exc}); retrying once")
        bar.fractions[i] = 1.0
        bar.show(i, "done")
    return results


# ---------------------------------------------------------------- worker processes

def process_slots(settings: ExecutorSettings, n_jobs: int) -> tuple[int, int]:
    """``(workers, threads)`` of a ``processes`` run of ``n_jobs`` jobs: ``cpus_per_job`` threads
    each (default 1) and as many workers as this machine's cores hold (at most one per job)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no CPU affinity on this platform
        cores = os.cpu_count() or 1
    threads = max(1, int(settings.cpus_per_job)) if settings.cpus_per_job is not None else 1
    return max(1, min(n_jobs, cores // threads)), threads


def _process_worker(fn_name: str, shared_file: str, device: str, threads: int, conn) -> None:
    """What a worker process runs: decodes the shared tensors once, then runs the jobs the parent
    sends (``(index, job)``; ``None`` stops it) and sends back ``("progress", index, fraction,
    message)`` and ``("done", index, bytes)``, ``("error", index, text)`` or ``("user_error",
    index, sentence)``. It ignores Ctrl-C (the parent stops it) and exits when the parent goes."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["MU_AUDIT_THREADS"] = str(threads)  # configure_threads() in a job keeps this count
    import torch

    torch.set_num_threads(threads)
    shared = decode_result(Path(shared_file).read_bytes())
    fn = _import_fn(fn_name)
    last = [0.0]  # when progress was last sent
    try:
        while (task := conn.recv()) is not None:
            index, job = task

            def progress(fraction: float, message: str, index: int = index) -> None:
                now = time.monotonic()
                if now - last[0] > 0.25 or fraction >= 1.0:
                    last[0] = now
                    conn.send(("progress", index, min(max(float(fraction), 0.0), 1.0), str(message)))

            try:
                conn.send(("done", index, encode_result(fn(job, shared, JobContext(device, progress, index, "processes")))))
            except AuditInputError as exc:
                conn.send(("user_error", index, str(exc)))
            except Exception as exc:
                conn.send(("error", index, f"{type(exc).__name__}: {exc}"))
    except (EOFError, OSError):
        pass  # the parent is gone
    # every result went out with a blocking send: skip the interpreter's slow finalisation (torch's)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


_MAIN_LOCK = threading.Lock()


@contextmanager
def _no_main_script() -> Iterator[None]:
    """Start a spawned worker without re-running the parent's main script. A spawned child imports the
    parent's ``__main__`` by its path; under the app that is Streamlit's launcher or a page (a page
    script outside Streamlit's runtime exits the worker at once: every job then "died", as it did in a
    full test run after the AppTests), and under pytest it is pytest's. The job function is imported by
    name in the worker, so the worker needs none of them: a bare stand-in ``__main__`` is shown while
    the process starts."""
    import types

    with _MAIN_LOCK:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is not None:
                sys.modules["__main__"] = main


class _Worker:
    """One worker process, the parent's end of its pipe and the job it is running."""

    def __init__(self, context, args: tuple) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_process_worker, args=(*args, child), daemon=True, name="mu-audit-worker")
        with _no_main_script():
            self.process.start()
        child.close()  # the pipe ends when the worker does
        self.index: int | None = None

    def finish(self) -> None:
        """Ask the worker to exit once it is idle (it is reaped by :meth:`stop`)."""
        try:
            self.conn.send(None)
        except OSError:
            pass  # it is gone already

    def stop(self, *, force: bool) -> int | None:
        """Reap the worker (``force``: terminate it at once, else wait for it after :meth:`finish`)
        and return its exit code."""
        if not force:
            self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
        code = self.process.exitcode
        self.conn.close()
        self.process.close()
        return code


def _run_processes(fn_name: str, jobs: list[dict], shared: dict, settings: ExecutorSettings, device: str,
                   progress: Progress | None, label: str) -> list[dict]:
    import multiprocessing
    import shutil
    import tempfile
    from collections import deque
    from multiprocessing.connection import wait

    n_workers, threads = process_slots(settings, len(jobs))
    context = multiprocessing.get_context("spawn")  # not fork: torch's thread pools do not survive a fork
    folder = tempfile.mkdtemp(prefix="mu_audit_jobs_")
    shared_file = str(Path(folder) / "shared.safetensors")
    Path(shared_file).write_bytes(encode_result(shared))
    bar = _Aggregate(progress, label, len(jobs), f" in {n_workers} processes")
    todo, attempts = deque(range(len(jobs))), [0] * len(jobs)
    results: list[dict | None] = [None] * len(jobs)
    workers: list[_Worker] = []

    def give_work(worker: _Worker) -> None:
        worker.index = todo.popleft() if todo else None
        if worker.index is not None:
            worker.conn.send((worker.index, jobs[worker.index]))

    def failed(index: int, reason: str) -> None:
        attempts[index] += 1
        if attempts[index] > 1:
            raise JobFailed(f"{label} {index + 1} of {len(jobs)} failed twice in a worker process (it was retried once): {reason}")
        bar.fractions[index] = 0.0
        todo.appendleft(index)

    def start_worker() -> None:
        workers.append(_Worker(context, (fn_name, shared_file, device, threads)))
        give_work(workers[-1])

    try:
        latest = f"starting {n_workers} worker processes, {threads} thread(s) each"
        bar.show(None, latest)
        for _ in range(n_workers):
            start_worker()
        while any(r is None for r in results):
            busy = {w.conn: w for w in workers if w.index is not None}
            for conn in wait(list(busy), timeout=0.5):
                worker = busy[conn]
                try:
                    kind, index, *rest = conn.recv()
                except (EOFError, OSError):
                    workers.remove(worker)
                    code = worker.stop(force=True)
                    latest = f"{label} {worker.index + 1}'s process died; retrying once"
                    failed(worker.index, f"its process died (exit code {code})")
                    start_worker()
                    continue
                if kind == "progress":
                    bar.fractions[index], latest = min(rest[0], 0.99), rest[1]
                    continue
                if kind == "user_error":
                    raise AuditInputError(rest[0])
                if kind == "error":
                    latest = f"{label} {index + 1} failed ({rest[0]}); retrying once"
                    failed(index, rest[0])
                else:
                    results[index], bar.fractions[index] = decode_result(rest[0]), 1.0
                give_work(worker)
            bar.show(None, latest)
    except BaseException:
        for worker in workers:
            worker.stop(force=True)
        workers.clear()
        raise
    finally:
        for worker in workers:
            worker.finish()
        for worker in workers:
            worker.stop(force=False)
        shutil.rmtree(folder, ignore_errors=True)
    return [r for r in results if r is not None]


# ---------------------------------------------------------------- Ray

_ray_started_here = False
_ray_address: str | None = None
_shared_cache: tuple[str, dict] | None = None


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise AuditInputError("The Ray executor needs Ray: pip install 'ray==2.60.0' (see requirements.txt).") from exc
    return ray


def _connect(settings: ExecutorSettings):
    """Connect to the settings' cluster, or start a local Ray on demand; reuse a live connection
    to the same place (a connection made elsewhere in this process, e.g. by a test, is kept)."""
    global _ray_started_here, _ray_address
    ray = _import_ray()
    target = settings.address or None
    if ray.is_initialized():
        made_elsewhere = not _ray_started_here
        if made_elsewhere or _ray_address == (target or "local"):
            return ray
        shutdown_ray()
    package = Path(__file__).resolve().parent
    try:
        if target:
            # the nodes get this copy of mu_core (their Python must have its requirements); a
            # cluster on this machine's loopback is joined on the loopback too
            host = target.split("://")[-1].rsplit(":", 1)[0]
            init = _init_on_loopback if host in ("127.0.0.1", "localhost") else ray.init
            init(address=target, runtime_env={"py_modules": [str(package)]}, log_to_driver=False, logging_level="ERROR")
        else:
            # workers see what this process sees: its import path (loopback only, no dashboard)
            paths = os.pathsep.join(p for p in sys.path if p and Path(p).is_dir())
            _init_on_loopback(num_cpus=int(os.environ.get("MU_AUDIT_RAY_CPUS") or os.cpu_count() or 1),
                              object_store_memory=_object_store_mb() * 2**20, include_dashboard=False,
                              runtime_env={"env_vars": {"PYTHONPATH": paths}}, log_to_driver=False, logging_level="ERROR")
    except ConnectionError as exc:
        raise AuditInputError(f"Could not reach the Ray cluster at {target}: {exc}") from exc
    _ray_started_here, _ray_address = True, target or "local"
    return ray


def _object_store_mb() -> int:
    raw = os.environ.get("MU_AUDIT_RAY_OBJECT_STORE_MB") or LOCAL_OBJECT_STORE_MB
    try:
        return max(80, int(raw))
    except ValueError as exc:
        raise AuditInputError(f"MU_AUDIT_RAY_OBJECT_STORE_MB must be a whole number of MB, not '{raw}'.") from exc


def _init_on_loopback(**kwargs) -> None:
    """``ray.init`` on 127.0.0.1. Ray 2.60 replaces a loopback node address by this machine's
    network address (``services.resolve_ip_for_localhost``), which would make a local Ray listen
    beyond this machine; this keeps the loopback while Ray starts or joins.

    Ray 2.60 has no public way to do this: ``ray.init(_node_ip_address=...)`` is private and goes
    through the same replacement, as do ``ray start --node-ip-address 127.0.0.1`` and an address
    ``127.0.0.1:port`` given to ``ray.init`` (by design, see Ray issue #26293; the pull request that
    would keep loopback addresses, #59206, was closed unmerged). The one switch that makes
    Ray pick the loopback, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, is read once when Ray is
    imported and also forbids multi-node clusters (``ray start --address`` aborts), so it cannot
    serve a cluster on this machine's loopback either. Hence the patch, for the duration of the call."""
    import ray
    from ray._private import services

    original = services.resolve_ip_for_localhost
    services.resolve_ip_for_localhost = lambda host: host
    try:
        ray.init(_node_ip_address="127.0.0.1", **kwargs)
    finally:
        services.resolve_ip_for_localhost = original


def shutdown_ray() -> None:
    """Disconnect from Ray (a local Ray started on demand stops with it)."""
    global _ray_started_here, _ray_address, _shared_cache
    if "ray" in sys.modules:
        sys.modules["ray"].shutdown()
    _ray_started_here, _ray_address, _shared_cache = False, None, None


def cluster_resources(executor: str | ExecutorSettings | None = "ray") -> dict[str, Any]:
    """The cluster's nodes, CPUs, GPUs and memory (connecting, or starting a local Ray, if needed)."""
    settings = executor_settings(executor)
    if settings.kind != "ray":
        return {"executor": settings.kind, "nodes": 1, "cpus": os.cpu_count() or 1, "gpus": 0}
    ray = _connect(settings)
    total = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return {"executor": "ray", "address": _ray_address, "nodes": len(nodes), "cpus": float(total.get("CPU", 0)),
            "gpus": float(total.get("GPU", 0)), "memory_gb": round(float(total.get("memory", 0)) / 2**30, 1)}


def parallel_slots(executor: str | ExecutorSettings | None = None) -> int:
    """How many jobs run at once, for time estimates: 1 in this process; with ``processes``, the workers
    this machine's cores hold (:func:`process_slots`); on Ray, the cluster's GPUs
    divided by ``gpus_per_job`` when it has GPUs, else its CPUs divided by ``cpus_per_job``. Never
    connects just to estimate: the cluster's resources are read only when Ray is already initialised
    in this process; before that, the local Ray that would start on demand counts ``MU_AUDIT_RAY_CPUS``
    (else this machine's CPUs) and a remote cluster not yet joined counts as 1 slot. An estimate
    assumes each slot computes about as fast as this process does."""
    settings = executor_settings(executor)
    if settings.kind == "processes":
        return process_slots(settings, 1 << 20)[0]
    if settings.kind != "ray":
        return 1
    per_job = settings.cpus_per_job or settings.threads()
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        total = ray.cluster_resources()
        gpus = float(total.get("GPU", 0))
        if gpus > 0:
            return max(1, int(gpus / min(settings.gpus_per_job, gpus)))
        return max(1, int(float(total.get("CPU", 0)) / per_job))
    if settings.address:
        return 1
    return max(1, int(int(os.environ.get("MU_AUDIT_RAY_CPUS") or os.cpu_count() or 1) / per_job))


class _ProgressBoard:
    """A Ray actor the tasks report their progress to; the driver reads it for the one bar."""

    def __init__(self, n: int) -> None:
        self.fractions, self.messages, self.latest = [0.0] * n, [""] * n, ""

    def update(self, index: int, fraction: float, message: str) -> None:
        self.fractions[index] = fraction
        self.messages[index] = self.latest = message

    def snapshot(self) -> tuple[list[float], str]:
        return list(self.fractions), self.latest


def _remote_job(fn_name: str, job: dict, shared_key: str, shared_bytes: bytes, board, index: int, device: str,
                threads: int) -> bytes | dict:
    """What a Ray task runs: decodes the shared tensors (once per worker), runs the job, encodes
    the result. A user error comes back as ``{"user_error": sentence}`` so it is not retried."""
    global _shared_cache
    import torch

    from .device import configure_threads

    configure_threads()  # first in this worker, so that a pick_device inside the job keeps the count set next
    torch.set_num_threads(max(1, threads))
    if _shared_cache is None or _shared_cache[0] != shared_key:
        _shared_cache = (shared_key, decode_result(shared_bytes))
    last = [0.0]

    def progress(fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - last[0] > 0.5 or fraction >= 1.0:
            last[0] = now
            board.update.remote(index, min(max(float(fraction), 0.0), 1.0), message)

    try:
        return encode_result(_import_fn(fn_name)(job, _shared_cache[1], JobContext(device, progress, index, "ray")))
    except AuditInputError as exc:
        return {"user_error": str(exc)}


def _run_ray(fn_name: str, jobs: list[dict], shared: dict, settings: ExecutorSettings, progress: Progress | None,
             label: str) -> list[dict]:
    ray = _connect(settings)
    from ray.exceptions import RayError

    gpus = float(ray.cluster_resources().get("GPU", 0))
    shared_bytes = encode_result(shared)
    shared_key = hashlib.sha256(shared_bytes).hexdigest()
    shared_ref = ray.put(shared_bytes)
    board = ray.remote(num_cpus=0)(_ProgressBoard).remote(len(jobs))
    threads = settings.threads()
    options = {"max_retries": 1, "retry_exceptions": True, "num_cpus": settings.cpus_per_job or threads}
    if gpus > 0:
        task = ray.remote(_remote_job).options(num_gpus=min(settings.gpus_per_job, gpus), **options)
        device = "cuda"
    else:
        task = ray.remote(_remote_job).options(**options)
        device = "cpu"
    refs = [task.remote(fn_name, job, shared_key, shared_ref, board, i, device, threads) for i, job in enumerate(jobs)]
    index = {ref: i for i, ref in enumerate(refs)}
    bar = _Aggregate(progress, label, len(jobs), f" on Ray ({device})")
    results: list[dict | None] = [None] * len(jobs)
    pending = list(refs)
    try:
        bar.show(None, "starting")
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5, fetch_local=True)
            for ref in ready:
                i = index[ref]
                try:
                    value = ray.get(ref)
                except RayError as exc:
                    reason = str(getattr(exc, "cause", None) or exc).strip().splitlines()
                    raise JobFailed(f"{label} {i + 1} of {len(jobs)} failed twice on Ray (it was retried once): "
                                    f"{reason[-1] if reason else type(exc).__name__}") from exc
                if isinstance(value, dict):
                    raise AuditInputError(value["user_error"])
                results[i] = decode_result(value)
            fractions, latest = ray.get(board.snapshot.remote())
            bar.fractions = [1.0 if results[i] is not None else min(f, 0.99) for i, f in enumerate(fractions)]
            bar.show(None, latest)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        try:
            ray.kill(board)
        except RayError:
            pass  # the cluster is gone; nothing left to stop
    return [r for r in results if r is not None]
