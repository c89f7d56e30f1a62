"""Device choice (cuda > mps > cpu) and seeding."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from .errors import AuditInputError

__all__ = ["configure_threads", "default_threads", "pick_device", "seed_everything"]

_THREADS_SET = False


def default_threads() -> int:
    """torch threads worth using now: one per idle core (the cores less the 1-minute load average,
    at least one). On a 2-core machine other processes keep busy, torch's default of one thread
    per core is 5-20x slower than one thread for the built-in models: its OpenMP workers spin at
    every barrier while the cores they wait on run someone else (``BENCHMARKS.md``, "Speed as a
    new user meets it")."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this platform
        load = 0.0
    return max(1, min(cores, int(cores - load + 0.5)))


def configure_threads(*, refresh: bool = False) -> int:
    """Set torch's CPU thread count from ``MU_AUDIT_THREADS`` if set, else :func:`default_threads`.
    Done once per process, or again with ``refresh=True`` (the app's job threads do, as each job
    starts, so the count follows the machine's load). Returns the count in force."""
    global _THREADS_SET
    if not _THREADS_SET or refresh:
        wanted = os.environ.get("MU_AUDIT_THREADS")
        torch.set_num_threads(max(1, int(wanted)) if wanted else default_threads())
        _THREADS_SET = True
    return torch.get_num_threads()


def pick_device(preferred: str | None = None) -> torch.device:
    """The device to compute on.

    ``preferred`` (or the ``MU_AUDIT_DEVICE`` environment variable) may name ``cuda``, ``mps``
    or ``cpu``; otherwise the first available of cuda, mps, cpu is used.
    """
    configure_threads()
    name = preferred or os.environ.get("MU_AUDIT_DEVICE") or None
    if name:
        name = name.lower()
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise AuditInputError("CUDA was asked for but no CUDA GPU is available; use --device cpu.")
        if name == "mps" and not torch.backends.mps.is_available():
            raise AuditInputError("MPS was asked for but is not available here; use --device cpu.")
        if not (name.startswith("cuda") or name in {"mps", "cpu"}):
            raise AuditInputError(f"Unknown device '{name}'; choose cuda, mps or cpu.")
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
