"""Exact retrains for the verdict's reference: K models trained from scratch without the forget set.

The verdict (:mod:`mu_core.audit.verdict`) compares the unlearned model with the *spread* of
exact retrains, not with one: two retrains that differ only in their seed already differ in
AUC, and without that spread a second exact retrain passed as the unlearned model can come out
``not_forgotten``. Retrains repeat the original's recipe (``unlearn(method="retrain")``) with
consecutive seeds: the original's seed s, then s + 1, s + 2, ... (seeds of retrained models the
caller already has are skipped). They are saved in the audit's reference folder
(``retrains/seed<S>_<fingerprint>.safetensors``) and reused while the original, its recipe and the
forget request match.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._types import Progress, report, sub_progress
from ..errors import AuditInputError
from ..models import ModelRecord

__all__ = ["DEFAULT_RETRAINS", "MAX_RETRAINS", "estimate_retrain_seconds", "retrain_seeds", "retrains_note", "train_retrains"]

#: Retrains the CLI and the app compute by default (Student's t factor 1.43 at alpha 0.05, see the verdict).
DEFAULT_RETRAINS = 4
#: The most retrains one audit trains.
MAX_RETRAINS = 64
FOLDER = "retrains"


def _fingerprint(record: ModelRecord, forget_idx: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"arch": record.arch, "dataset": record.dataset, "recipe": record.recipe}, sort_keys=True, default=str).encode())
    h.update(np.asarray(record.train_indices, dtype=np.int64).tobytes())
    h.update(np.asarray(forget_idx, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def retrain_seeds(original: ModelRecord, k: int, taken: list[int] | tuple[int, ...] = ()) -> list[int]:
    """The seeds of ``k`` new retrains: consecutive from the original's seed, skipping ``taken``.

    >>> from mu_core.models import ModelRecord
    >>> r = ModelRecord("mlp", (1, 8, 8), ("a", "b"), {"name": "digits"}, np.arange(4), 10, recipe={"seed": 3})
    >>> retrain_seeds(r, 3, taken=[3])
    [4, 5, 6]
    """
    start = int(original.recipe.get("seed", 0) or 0)
    seeds, s = [], start
    while len(seeds) < k:
        if s not in taken:
            seeds.append(s)
        s += 1
    return seeds


def estimate_retrain_seconds(original: ModelRecord, k: int, n_forget: int, data=None) -> float:
    """About how long ``k`` retrains take: the original's recorded training time scaled to the retain set;
    without a recorded time, a short probe of the training step (:func:`~mu_core.attacks.reference.estimate_reference_seconds`)."""
    if k <= 0:
        return 0.0
    n = max(len(original.train_indices), 1)
    recorded = (original.metrics or {}).get("train_seconds")
    if recorded:
        return float(recorded) * max(n - n_forget, 1) / n * k * 1.1
    from ..attacks.reference import estimate_reference_seconds
    from ..data import DatasetSpec, load_dataset

    data = data or load_dataset(DatasetSpec.from_dict(original.dataset))
    return estimate_reference_seconds(original, data, 2 * ((k + 1) // 2)) * k / (2 * ((k + 1) // 2))


def train_retrains(model: nn.Module, original: ModelRecord, forget_idx, k: int, *, taken: list[int] | tuple[int, ...] = (),
                   dataset=None, folder: str | Path | None = None, device: torch.device | str | None = None,
                   progress: Progress | None = None) -> list[tuple[nn.Module, ModelRecord]]:
    """``k`` exact retrains of ``original`` without ``forget_idx``, with the seeds of :func:`retrain_seeds`;
    loaded from ``folder/retrains/`` when present there, else trained (and saved there)."""
    from ..models import load_model, save_model
    from ..unlearn import unlearn

    if not 0 <= k <= MAX_RETRAINS:
        raise AuditInputError(f"The number of retrains must be between 0 and {MAX_RETRAINS} (e.g. {DEFAULT_RETRAINS}).")
    forget_idx = np.unique(np.asarray(forget_idx, dtype=np.int64))
    fp = _fingerprint(original, forget_idx)
    out = []
    seeds = retrain_seeds(original, k, taken)
    for j, seed in enumerate(seeds):
        path = Path(folder) / FOLDER / f"seed{seed}_{fp}.safetensors" if folder else None
        if path is not None and path.is_file():
            try:
                out.append(load_model(path))
                report(progress, (j + 1) / k, f"Reusing retrain {j + 1}/{k} (seed {seed})")
                continue
            except (AuditInputError, OSError, ValueError):
                pass  # a damaged file is replaced below
        started = time.perf_counter()
        record = original.with_updates(recipe={**original.recipe, "seed": seed})
        sub = sub_progress(progress, j / k, (j + 1) / k)
        report(sub, 0.0, f"Retrain {j + 1}/{k} (seed {seed})")
        result = unlearn(model, record, forget_idx, method="retrain", dataset=dataset, progress=sub, device=device)
        report(progress, (j + 1) / k, f"Retrain {j + 1}/{k} done in {time.perf_counter() - started:.1f} s")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_model(result.model, result.record, path)
        out.append((result.model, result.record))
    return out


def retrains_note(original: ModelRecord, k: int, given: int, n_forget: int, folder: str | Path | None) -> str:
    """One line for the CLI and the app, said before the audit starts: how many retrains the reference
    holds, how many are trained, and the estimated time."""
    if not 0 <= k <= MAX_RETRAINS:
        raise AuditInputError(f"--retrains must be between 0 and {MAX_RETRAINS} (e.g. {DEFAULT_RETRAINS}).")
    to_train = max(k - given, 0)
    total = max(k, given)
    if total == 0:
        return "retrains: none, so the verdict's reference is chance (AUC 0.5); --retrains 4 gives it exact retrains"
    if to_train == 0:
        return f"retrains: {total} given, none to train"
    seconds = estimate_retrain_seconds(original, to_train, n_forget)
    where = f" (reused from {folder} when present)" if folder else " (pass --case DIR to keep them)"
    return f"retrains: {total} in the reference, {to_train} to train, estimated {seconds:.0f} s{where}"
