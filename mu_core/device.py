"""Device choice (cuda > mps > cpu) and seeding."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from .errors import AuditInputError

__all__ = ["configure_threads", "pick_device", "seed_everything"]

_THREADS_SET = False


def configure_threads() -> int:
    """Set torch's CPU thread count once from ``MU_AUDIT_THREADS``, if set (else torch's default,
    one thread per core). Set it to 1 when other busy processes share a small machine: torch's
    spinning worker threads then slow training down several-fold. Returns the count in force."""
    global _THREADS_SET
    if not _THREADS_SET:
        wanted = os.environ.get("MU_AUDIT_THREADS")
        if wanted:
            torch.set_num_threads(max(1, int(wanted)))
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
