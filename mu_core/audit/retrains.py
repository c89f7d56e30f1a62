"""Exact retrains for the verdict's reference: K models trained from scratch without the forget set.

The verdict (:mod:`mu_core.audit.verdict`) compares the unlearned model with the *spread* of
exact retrains, not with one: two retrains that differ only in their seed already differ in
AUC, and without that spread a second exact retrain passed as the unlearned model can come out
``not_forgotten``. Retrains repeat the original's recipe (``unlearn(method="retrain")``) with
consecutive seeds: the original's seed s, then s + 1, s + 2, ... (seeds of retrained models the
caller already has are skipped). They are saved in the audit's reference folder
(``retrains/seed<S>_<fingerprint>.safetensors``) and reused while the original, its recipe and the
forget request match. The retrains still to train are independent jobs of :func:`~mu_core.executor.run_jobs`
(:func:`train_retrain_job`): one by one in this process, or side by side on a Ray cluster.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._types import Progress, report, sub_progress
from ..errors import AuditInputError
from ..models import ModelRecord

__all__ = [
    "DEFAULT_RETRAINS",
    "MAX_RETRAINS",
    "estimate_retrain_seconds",
    "retrain_seeds",
    "retrains_note",
    "train_retrain_job",
    "train_retrains",
]

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


def estimate_retrain_seconds(original: ModelRecord, k: int, n_forget: int, data=None, *, executor=None) -> float:
    """About how long ``k`` retrains take: the original's recorded training time scaled to the retain set;
    without a recorded time, a short probe of the training step (:func:`~mu_core.attacks.reference.estimate_reference_seconds`).
    On Ray the retrains run :func:`~mu_core.executor.parallel_slots` at a time (``executor``: the setting in
    force when ``None``), each assumed as fast as one here, so the time is that of ceil(k / slots) retrains."""
    if k <= 0:
        return 0.0
    from ..executor import parallel_slots

    waves = math.ceil(k / parallel_slots(executor))
    n = max(len(original.train_indices), 1)
    recorded = (original.metrics or {}).get("train_seconds")
    if recorded:
        return float(recorded) * max(n - n_forget, 1) / n * waves * 1.1
    from ..attacks.reference import estimate_reference_seconds
    from ..data import DatasetSpec, load_dataset

    data = data or load_dataset(DatasetSpec.from_dict(original.dataset))
    return estimate_reference_seconds(original, data, 2, executor="inline") / 2 * waves


def train_retrain_job(job: dict, shared, ctx) -> dict:
    """One exact retrain as an :func:`~mu_core.executor.run_jobs` job: ``unlearn(method="retrain")`` of the
    original in ``shared["model"]`` (its file's bytes) without ``shared["forget"]``, with the recipe seed
    ``job["seed"]``, on the data in ``shared`` (``x_train``, ``y_train``, ``x_test``, ``y_test``; ``job["dataset"]``
    and ``job["class_names"]`` describe it). Returns the retrain's file bytes (``model``) and the wall-clock
    values a model file leaves out (``metrics``, ``unlearning``)."""
    from ..data import Dataset, DatasetSpec
    from ..executor import pack_model, unpack_model
    from ..unlearn import unlearn

    model, original = unpack_model(shared["model"])
    data = Dataset(DatasetSpec.from_dict(job["dataset"]), shared["x_train"], shared["y_train"], shared["x_test"], shared["y_test"],
                   tuple(job["class_names"]))
    seed = int(job["seed"])
    record = original.with_updates(recipe={**original.recipe, "seed": seed})

    def progress(fraction: float, message: str) -> None:
        ctx.progress(fraction, f"seed {seed}, {message}")

    result = unlearn(model, record, shared["forget"].numpy(), method="retrain", dataset=data, progress=progress,
                     device=torch.device(ctx.device))
    return {"model": pack_model(result.model, result.record), "metrics": result.record.metrics, "unlearning": result.record.unlearning}


def train_retrains(model: nn.Module, original: ModelRecord, forget_idx, k: int, *, taken: list[int] | tuple[int, ...] = (),
                   dataset=None, folder: str | Path | None = None, device: torch.device | str | None = None,
                   progress: Progress | None = None, executor=None) -> list[tuple[nn.Module, ModelRecord]]:
    """``k`` exact retrains of ``original`` without ``forget_idx``, with the seeds of :func:`retrain_seeds`;
    loaded from ``folder/retrains/`` when present there, else trained (and saved there). Each retrain to
    train is a job of :func:`~mu_core.executor.run_jobs` (``executor``: ``inline``, ``ray`` or ``None`` for
    the setting in force; the same seeds give the same weights with either on the same kind of device)."""
    from ..data import DatasetSpec, load_dataset
    from ..executor import pack_model, run_jobs, unpack_model
    from ..models import load_model, save_model

    if not 0 <= k <= MAX_RETRAINS:
        raise AuditInputError(f"The number of retrains must be between 0 and {MAX_RETRAINS} (e.g. {DEFAULT_RETRAINS}).")
    forget_idx = np.unique(np.asarray(forget_idx, dtype=np.int64))
    fp = _fingerprint(original, forget_idx)
    seeds = retrain_seeds(original, k, taken)
    paths = {seed: Path(folder) / FOLDER / f"seed{seed}_{fp}.safetensors" if folder else None for seed in seeds}
    done: dict[int, tuple[nn.Module, ModelRecord]] = {}
    for seed, path in paths.items():
        if path is not None and path.is_file():
            try:
                done[seed] = load_model(path)
                report(progress, len(done) / k, f"Reusing retrain {len(done)}/{k} (seed {seed})")
            except (AuditInputError, OSError, ValueError):
                pass  # a damaged file is replaced below
    missing = [seed for seed in seeds if seed not in done]
    if missing:
        data = dataset or load_dataset(DatasetSpec.from_dict(original.dataset))
        jobs = [{"seed": seed, "dataset": data.spec.to_dict(), "class_names": list(data.class_names)} for seed in missing]
        shared = {"model": pack_model(model, original), "forget": torch.from_numpy(forget_idx), "x_train": data.x_train,
                  "y_train": data.y_train, "x_test": data.x_test, "y_test": data.y_test}
        started = time.perf_counter()
        outcomes = run_jobs(train_retrain_job, jobs, shared=shared, executor=executor, device=None if device is None else str(device),
                            progress=sub_progress(progress, len(done) / k, 1.0), label="Retrain")
        for seed, outcome in zip(missing, outcomes, strict=True):
            retrained, record = unpack_model(outcome["model"])
            record = record.with_updates(metrics=outcome["metrics"], unlearning=outcome["unlearning"])
            if paths[seed] is not None:
                save_model(retrained, record, paths[seed])
            done[seed] = (retrained, record)
        report(progress, 1.0, f"{len(missing)} retrain(s) done in {time.perf_counter() - started:.1f} s")
    return [done[seed] for seed in seeds]


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
    from ..executor import parallel_slots

    seconds = estimate_retrain_seconds(original, to_train, n_forget)
    slots = parallel_slots()
    side = f" on Ray, {min(slots, to_train)} at a time" if slots > 1 and to_train > 1 else ""
    where = f" (reused from {folder} when present)" if folder else " (pass --case DIR to keep them)"
    return f"retrains: {total} in the reference, {to_train} to train, estimated {seconds:.0f} s{side}{where}"
