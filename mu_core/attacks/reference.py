"""Reference ("shadow") models for LiRA, RMIA, the learned and the unlearning-specific attacks.

**Population.** The original's training set plus as many held-out samples as it has
(:func:`reference_pool`: the audit's non-members, topped up from the held-out pool they come
from), so every target (forgotten sample or non-member) is in it and each model's random half
holds as many samples as the original trained on: LiRA and RMIA assume references trained like
the target. When the held-out data is too small for that, the halves are smaller and the
report says so (``provenance.reference_models.note``). Each of
K reference models trains on a random half, drawn as in LiRA's code: for each sample, a random
half of the K models get it (so every target has K/2 IN and K/2 OUT models). The recipe is the
original's (architecture, optimiser, epochs, batch size), with seeds 1000 + k.

**One process per core.** On a CPU with several cores, K models that take more than a few seconds
one by one train in worker processes, one per core with one torch thread each (the same numbers as
one by one in this process at one thread), convolutional models with channels-last weights; the
digits ``cnn``'s 16 train 1.3x faster on 2 cores than in one process at torch's default 2 threads
and 2x faster than at one (``BENCHMARKS.md``, "Reference models, one process per core").

**Batched training.** Small models without batch-norm or dropout can train as one ensemble with
``torch.func`` (stacked parameters, ``vmap`` over models, one optimiser over the stacked
tensors: Adam and SGD act element-wise, so this is K independent trainings). Each model walks
its own shuffled half; halves differ in size by a few samples, so a model's last batch of an
epoch may wrap around to its first samples. ``benchmarks/membership.py`` times both ways.

**Reuse.** A trained set is saved (safetensors: weights, the IN/OUT mask and the logits of every
population sample under every query augmentation) in the audit's reference folder and reused
while the original, its recipe and K match.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._types import Progress, report
from ..errors import AuditInputError
from .features import augmentations, logits_under

__all__ = ["ReferenceSet", "estimate_reference_seconds", "get_references", "heldout_pool", "reference_pool", "train_references"]

REFERENCE_SEED = 1000
FILE_NAME = "references.safetensors"
#: Worker processes train the K models when their training steps one by one in this process would
#: take at least this many seconds: each worker's start (mostly importing torch) costs about 2 s, so
#: below this one process is as fast (``BENCHMARKS.md``: the digits mlp, about 4 s, is not faster
#: in processes; the digits cnn, about 18 s, is).
PROCESSES_MIN_ESTIMATE = 8.0


#: The held-out pool holds at least this many test samples when the test split has them.
MIN_POOL = 2000


def heldout_pool(n_train_model: int, n_test: int, seed: int = 0) -> np.ndarray:
    """The test-split indices an audit draws non-members from: the whole test split when it holds
    no more than max(the model's training-set size, :data:`MIN_POOL`) samples, else a seeded subset
    of that size. Reference models then train on about as much data as the original (a small
    training set still gets enough non-members for TPR at 1% FPR to mean something)."""
    size = max(int(n_train_model), MIN_POOL)
    if n_test <= size:
        return np.arange(n_test, dtype=np.int64)
    rng = np.random.default_rng(seed + 7919)
    return np.sort(rng.choice(n_test, size=size, replace=False)).astype(np.int64)


def reference_pool(n_train_model: int, pool: np.ndarray, nonmember_idx: np.ndarray, seed: int = 0) -> np.ndarray:
    """The held-out part of the reference population: ``n_train_model`` test-split samples, the audit's
    non-members first and the rest drawn (seeded) from ``pool``; all of ``pool`` when it is not larger.
    Halves of (training set + this) then hold as many samples as the original trained on.

    >>> held_out = reference_pool(4, np.arange(10), np.array([7, 9]))
    >>> held_out.size, {7, 9} <= set(held_out.tolist())
    (4, True)
    """
    pool = np.asarray(pool, dtype=np.int64)
    if pool.size <= n_train_model:
        return pool
    must = np.intersect1d(nonmember_idx, pool)
    rest = np.setdiff1d(pool, must)
    take = max(int(n_train_model) - must.size, 0)
    fill = np.random.default_rng(seed + 4217).choice(rest, size=min(take, rest.size), replace=False)
    return np.sort(np.r_[must, fill]).astype(np.int64)


def keep_mask(k: int, n: int, seed: int) -> np.ndarray:
    """(K, N) booleans: each column has exactly floor(K/2) True, at random."""
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((k, n)), axis=0)
    return order < (k // 2)


@dataclass(eq=False)
class ReferenceSet:
    """K reference models over a population (``pop_train``: training-split indices first, then
    ``pop_test``: test-split indices). ``logits``: (K, A, P, C) float32."""

    arch: str
    in_shape: tuple[int, int, int]
    num_classes: int
    pop_train: np.ndarray
    pop_test: np.ndarray
    keep: np.ndarray
    states: list[dict]
    logits: torch.Tensor
    recipe: dict
    seconds: float
    batched: bool
    fingerprint: str
    extra: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(self.keep.shape[0])

    def positions(self, train_idx: np.ndarray | None = None, test_idx: np.ndarray | None = None) -> np.ndarray:
        """Population positions of training-split and/or test-split indices."""
        out = []
        if train_idx is not None:
            pos = np.searchsorted(self.pop_train, train_idx)
            if np.any(pos >= self.pop_train.size) or np.any(self.pop_train[np.minimum(pos, self.pop_train.size - 1)] != train_idx):
                raise AuditInputError("Some samples are not in the reference models' population; retrain the reference models.")
            out.append(pos)
        if test_idx is not None:
            pos = np.searchsorted(self.pop_test, test_idx)
            if np.any(pos >= self.pop_test.size) or np.any(self.pop_test[np.minimum(pos, self.pop_test.size - 1)] != test_idx):
                raise AuditInputError("Some held-out samples are not in the reference models' population; retrain the reference models.")
            out.append(self.pop_train.size + pos)
        return np.concatenate(out).astype(np.int64)

    def model(self, k: int) -> nn.Module:
        from ..models import build_model

        model = build_model(self.arch, self.in_shape, self.num_classes)
        model.load_state_dict(self.states[k])
        return model.eval()

    def population(self, data) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = torch.from_numpy(self.pop_train), torch.from_numpy(self.pop_test)
        return torch.cat([data.x_train[a], data.x_test[b]]), torch.cat([data.y_train[a], data.y_test[b]])

    def save(self, path: Path) -> Path:
        from safetensors.torch import save_file

        tensors = {"keep": torch.from_numpy(self.keep.astype(np.uint8)), "logits": self.logits.contiguous()}
        for k, state in enumerate(self.states):
            tensors.update({f"model{k}.{name}": t.detach().cpu().contiguous() for name, t in state.items()})
        meta = {
            "arch": self.arch, "in_shape": list(self.in_shape), "num_classes": self.num_classes,
            "pop_train": self.pop_train.tolist(), "pop_test": self.pop_test.tolist(), "recipe": self.recipe,
            "seconds": self.seconds, "batched": self.batched, "fingerprint": self.fingerprint,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata={"mu_audit_references": json.dumps(meta)})
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: Path) -> ReferenceSet:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["mu_audit_references"])
            keep = f.get_tensor("keep").numpy().astype(bool)
            logits = f.get_tensor("logits")
            states: list[dict] = [{} for _ in range(keep.shape[0])]
            for name in f.keys():
                if name.startswith("model"):
                    head, _, param = name.partition(".")
                    states[int(head[5:])][param] = f.get_tensor(name)
        return cls(meta["arch"], tuple(meta["in_shape"]), int(meta["num_classes"]), np.asarray(meta["pop_train"], dtype=np.int64),
                   np.asarray(meta["pop_test"], dtype=np.int64), keep, states, logits, meta["recipe"], float(meta["seconds"]),
                   bool(meta["batched"]), meta["fingerprint"])


def fingerprint(record, pool: np.ndarray, k: int) -> str:
    """What the reference set depends on: the original's data, training set, recipe and arch, the pool and K."""
    h = hashlib.sha256()
    h.update(json.dumps({"arch": record.arch, "dataset": record.dataset, "recipe": record.recipe, "k": k}, sort_keys=True).encode())
    h.update(np.asarray(record.train_indices, dtype=np.int64).tobytes())
    h.update(np.asarray(pool, dtype=np.int64).tobytes())
    return h.hexdigest()[:32]


def _config(record, k: int):
    return _recipe_config(record.recipe, k)


def _recipe_config(recipe: dict, k: int):
    from ..train import TrainConfig

    fields = {key: v for key, v in recipe.items() if key in TrainConfig.__dataclass_fields__}
    return TrainConfig(**{**fields, "seed": REFERENCE_SEED + k}).validate()


def _can_batch(arch: str, in_shape, num_classes: int) -> bool:
    from ..models import build_model

    model = build_model(arch, in_shape, num_classes)
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm | nn.Dropout) for m in model.modules())


def _use_batched(arch: str, data, device: torch.device, batched: bool | None) -> bool:
    """Batched when asked and possible; by default (``None``) as measured in ``BENCHMARKS.md``:
    batched for models without convolutions (the digits mlp: 25 s instead of 317 s for 16), one by
    one for convolutional models on the CPU (the Fashion-MNIST cnn: 133 s instead of 574 s, since
    ``vmap`` over convolutions is slow there); batched on a GPU (not measured here)."""
    from ..models import build_model

    if not _can_batch(arch, data.in_shape, data.num_classes):
        return False
    if batched is not None:
        return bool(batched)
    has_conv = any(isinstance(m, nn.Conv2d) for m in build_model(arch, data.in_shape, data.num_classes).modules())
    return not (has_conv and device.type == "cpu")


def _use_channels_last(arch: str, data, device: torch.device) -> bool:
    """Channels-last weights for convolutional models on a CPU (the digits cnn trains 1.2x faster; measured on it only)."""
    from ..models import build_model

    model = build_model(arch, data.in_shape, data.num_classes)
    return torch.device(device).type == "cpu" and any(isinstance(m, nn.Conv2d) for m in model.modules())


def train_reference_job(job: dict, shared, ctx) -> dict:
    """One reference model, as an :func:`~mu_core.executor.run_jobs` job: model ``job["k"]`` trains
    on its half (``shared["keep"][k]``) of the population ``shared["x"], shared["y"]`` with the
    recipe ``job["recipe"]`` and seed 1000 + k; with ``job["augment"]`` (a dataset name) it also
    scores the whole population under that dataset's query augmentations; with
    ``job["channels_last"]`` the model's weights are kept channels-last (faster convolutions on
    a CPU, see :func:`_use_channels_last`). Returns the weights
    (``state.<name>``), ``logits`` (A, P, C) and ``seconds`` (training and scoring)."""
    from ..device import seed_everything
    from ..models import build_model
    from ..train import train_loop

    started = time.perf_counter()
    k, in_shape = int(job["k"]), tuple(job["in_shape"])
    config = _recipe_config(job["recipe"], k)
    seed_everything(config.seed)
    device = torch.device(ctx.device)
    x, y = shared["x"], shared["y"]
    idx = torch.from_numpy(np.flatnonzero(shared["keep"][k].numpy()))
    model = build_model(job["arch"], in_shape, int(job["num_classes"]))
    if job.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    model = train_loop(model, x[idx], y[idx], config, device=device, progress=ctx.progress, label="training")
    out: dict = {f"state.{name}": t for name, t in model.state_dict().items()}
    if job.get("augment"):
        ctx.progress(1.0, "scoring the population")
        out["logits"] = logits_under(model, x, augmentations(job["augment"], in_shape), device=device)
    out["seconds"] = time.perf_counter() - started
    return out


def reference_jobs(arch, in_shape, num_classes, x, y, keep, record, *, augment: str | None = None,
                   channels_last: bool = False) -> tuple[list[dict], dict]:
    """The jobs and shared tensors of :func:`train_reference_job` for the K models of ``keep``."""
    jobs = [{"k": k, "arch": arch, "in_shape": list(in_shape), "num_classes": int(num_classes), "recipe": record.recipe,
             "augment": augment, "channels_last": bool(channels_last)} for k in range(keep.shape[0])]
    return jobs, {"x": x, "y": y, "keep": torch.from_numpy(keep.astype(np.uint8))}


def train_one_by_one(arch, in_shape, num_classes, x, y, keep, record, *, device, progress=None, executor=None) -> list[nn.Module]:
    return train_each(arch, in_shape, num_classes, x, y, keep, record, device=device, progress=progress, executor=executor)[0]


def parallel_executor(record, data, k: int, device: torch.device, *, inline_seconds: float | None = None) -> str | None:
    """The executor the K models take when nobody chose one: ``processes`` (one worker process per
    core, one torch thread each) on a CPU with more than one core when the K models would take at
    least :data:`PROCESSES_MIN_ESTIMATE` seconds of training steps one by one (``inline_seconds``,
    else timed here: about 10 steps); else ``None`` (the setting in force). Measured in
    ``BENCHMARKS.md`` ("Reference models, one process per core")."""
    from ..executor import ExecutorSettings, process_slots

    if torch.device(device).type != "cpu" or k < 2 or process_slots(ExecutorSettings("processes"), k)[0] < 2:
        return None
    if inline_seconds is None:
        inline_seconds = k * _training_steps(record, data) * _step_seconds(record, data, torch.device(device))
    return "processes" if inline_seconds >= PROCESSES_MIN_ESTIMATE else None


def train_each(arch, in_shape, num_classes, x, y, keep, record, *, device, progress=None, augment: str | None = None,
               executor=None, fallback: str | None = None, channels_last: bool = False) -> tuple[list[nn.Module], list[torch.Tensor]]:
    """The K models one by one, each a job of :func:`~mu_core.executor.run_jobs` (in this process, in
    worker processes or on Ray; ``fallback`` when nobody chose); with ``augment`` also their
    population logits (else an empty list)."""
    from ..executor import run_jobs
    from ..models import build_model

    jobs, shared = reference_jobs(arch, in_shape, num_classes, x, y, keep, record, augment=augment, channels_last=channels_last)
    results = run_jobs(train_reference_job, jobs, shared=shared, executor=executor, device=str(device), progress=progress,
                       label="Reference model", fallback=fallback)
    models = []
    for result in results:
        model = build_model(arch, in_shape, num_classes)
        model.load_state_dict({name[6:]: t for name, t in result.items() if name.startswith("state.")})
        models.append(model.eval())
    return models, [result["logits"] for result in results if "logits" in result]


def train_batched(arch, in_shape, num_classes, x, y, keep, record, *, device, progress=None) -> list[nn.Module]:
    """All K models at once with ``torch.func.functional_call`` under ``vmap`` (see the module doc)."""
    from torch.func import functional_call, stack_module_state, vmap

    from ..device import seed_everything
    from ..models import build_model
    from ..train import make_optimizer

    k_total = keep.shape[0]
    models = []
    for k in range(k_total):
        seed_everything(_config(record, k).seed)
        models.append(build_model(arch, in_shape, num_classes).to(device))
    params, buffers = stack_module_state(models)
    base = build_model(arch, in_shape, num_classes).to("meta")
    config = _config(record, 0)
    optimizer = make_optimizer(base, config, params=list(params.values()))

    def loss_one(p, b, xb, yb):
        return nn.functional.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    batched_loss = vmap(loss_one)
    x_dev, y_dev = x.to(device), y.to(device)
    members = [torch.from_numpy(np.flatnonzero(keep[k])) for k in range(k_total)]
    n_max = max(len(m) for m in members)
    bs = config.batch_size
    steps = (n_max + bs - 1) // bs
    generator = torch.Generator().manual_seed(REFERENCE_SEED)
    total = config.epochs * steps
    done = 0
    for epoch in range(config.epochs):
        orders = []
        for m in members:
            perm = m[torch.randperm(len(m), generator=generator)]
            orders.append(perm.repeat((n_max + len(perm) - 1) // len(perm) + 1)[: steps * bs])
        order = torch.stack(orders).to(device)
        for s in range(steps):
            idx = order[:, s * bs : (s + 1) * bs]
            optimizer.zero_grad(set_to_none=True)
            losses = batched_loss(params, buffers, x_dev[idx], y_dev[idx])
            losses.sum().backward()
            optimizer.step()
            done += 1
            if done % max(1, total // 50) == 0 or done == total:
                report(progress, done / total, f"{k_total} reference models at once: epoch {epoch + 1}/{config.epochs}, mean loss {float(losses.detach().mean()):.3f}")
    out = []
    for k in range(k_total):
        model = build_model(arch, in_shape, num_classes)
        model.load_state_dict({name: t[k].detach().cpu() for name, t in {**params, **buffers}.items()})
        out.append(model.eval())
    return out


def train_references(record, data, pool: np.ndarray, k: int, *, batched: bool | None = None, device: torch.device,
                     progress: Progress | None = None, executor=None, channels_last: bool | None = None) -> ReferenceSet:
    """Train K reference models on random halves of the population (see the module doc). One by one,
    each model is a job of :func:`~mu_core.executor.run_jobs` (``executor``: ``inline``,
    ``processes``, ``ray`` or ``None`` for the setting in force, or when nobody chose one
    :func:`parallel_executor`: one worker process per core on a CPU when that pays) that also scores
    the population; ``channels_last`` (default: for convolutional models on a CPU) keeps their
    weights channels-last. A batched ensemble trains in this process."""
    if k < 2 or k % 2:
        raise AuditInputError("The number of reference models must be even and at least 2 (e.g. 16).")
    if record.recipe.get("sisa"):
        raise AuditInputError("Reference models are plain models trained with the original's recipe; a SISA original is not supported.")
    pop_train = np.asarray(record.train_indices, dtype=np.int64)
    pop_test = np.asarray(pool, dtype=np.int64)
    a, b = torch.from_numpy(pop_train), torch.from_numpy(pop_test)
    x, y = torch.cat([data.x_train[a], data.x_test[b]]), torch.cat([data.y_train[a], data.y_test[b]])
    keep = keep_mask(k, len(x), REFERENCE_SEED)
    use_batched = _use_batched(record.arch, data, device, batched)
    started = time.perf_counter()
    if use_batched:
        sub = None if progress is None else (lambda f, m: progress(0.9 * f, m))
        models = train_batched(record.arch, data.in_shape, data.num_classes, x, y, keep, record, device=device, progress=sub)
        augs = augmentations(data.spec.name, data.in_shape)
        logits = []
        for i, model in enumerate(models):
            report(progress, 0.9 + 0.1 * i / k, f"Reference model {i + 1}/{k}: scoring the population")
            logits.append(logits_under(model, x, augs, device=device))
    else:
        if channels_last is None:
            channels_last = _use_channels_last(record.arch, data, device)
        fallback = parallel_executor(record, data, k, device) if executor is None else None
        models, logits = train_each(record.arch, data.in_shape, data.num_classes, x, y, keep, record, device=device,
                                    progress=progress, augment=data.spec.name, executor=executor, fallback=fallback,
                                    channels_last=channels_last)
    seconds = time.perf_counter() - started
    return ReferenceSet(record.arch, data.in_shape, data.num_classes, pop_train, pop_test, keep,
                        [{n: t.detach().cpu() for n, t in m.state_dict().items()} for m in models], torch.stack(logits),
                        {"epochs": _config(record, 0).epochs, "batch_size": _config(record, 0).batch_size, "seeds": f"{REFERENCE_SEED}..{REFERENCE_SEED + k - 1}"},
                        round(seconds, 3), use_batched, fingerprint(record, pool, k))


def estimate_reference_seconds(record, data, k: int, *, device: torch.device | None = None, batched: bool | None = None,
                               executor=None) -> float:
    """A quick estimate of training K reference models: times a few steps in this process, after an
    untimed one (a process's first convolution costs far more than the next), and scales up. A batched
    ensemble trains here; models trained one by one are jobs of the executor (``executor``: the setting
    in force when ``None``), which on Ray runs :func:`~mu_core.executor.parallel_slots` of them at a
    time: the estimate is then that of ceil(K / slots) models, each slot assumed as fast as this process."""
    from ..device import pick_device
    from ..executor import parallel_slots

    device = device or pick_device(None)
    if not _use_batched(record.arch, data, device, batched):
        return float(math.ceil(k / parallel_slots(executor)) * _training_steps(record, data) * _step_seconds(record, data, device) * 1.1)
    config = _config(record, 0)
    probe_record = record.with_updates(recipe={**record.recipe, "epochs": 1})
    for probe_steps in (1, 5):  # the first is the warm-up
        keep = np.zeros((2, probe_steps * config.batch_size * 2), dtype=bool)
        keep[:, : probe_steps * config.batch_size] = True
        rows = torch.arange(keep.shape[1]) % data.n_train
        started = time.perf_counter()
        train_batched(record.arch, data.in_shape, data.num_classes, data.x_train[rows], data.y_train[rows], keep, probe_record,
                      device=device)
    per_step_per_model = (time.perf_counter() - started) / (2 * probe_steps)
    return float(per_step_per_model * _training_steps(record, data) * k * 1.1)


def _training_steps(record, data) -> int:
    """Optimiser steps of one reference model: the recipe's epochs over a half of the population."""
    config = _config(record, 0)
    n_train = len(record.train_indices)
    n_half = (n_train + min(n_train, len(heldout_pool(n_train, data.n_test)))) // 2
    return config.epochs * ((n_half + config.batch_size - 1) // config.batch_size)


class _ProbeDone(Exception):
    """Stops :func:`_step_seconds`' probe from inside the training loop's progress callback."""


def _step_seconds(record, data, device: torch.device, *, steps: int = 10, budget: float = 1.0) -> float:
    """Seconds of one training step of the original's recipe in this process: the median of up to
    ``steps`` steps of :func:`~mu_core.train.train_loop` after an untimed one, fewer once they took
    ``budget`` seconds (a large model is timed in a step or two)."""
    from ..models import build_model
    from ..train import train_loop

    config = _config(record, 0)
    rows = torch.arange((steps + 1) * config.batch_size) % data.n_train
    marks: list[float] = []

    def tick(fraction: float, message: str) -> None:
        marks.append(time.perf_counter())
        if len(marks) > 2 and marks[-1] - marks[1] >= budget:
            raise _ProbeDone

    with torch.random.fork_rng(devices=[]):  # the probe leaves the global random state as it was
        model = build_model(record.arch, data.in_shape, data.num_classes)
        if _use_channels_last(record.arch, data, device):
            model = model.to(memory_format=torch.channels_last)
        try:
            train_loop(model, data.x_train[rows], data.y_train[rows], replace(config, epochs=1), device=device, progress=tick)
        except _ProbeDone:
            pass
    return float(np.median(np.diff(marks[1:])))


def get_references(ctx) -> ReferenceSet:
    """The context's reference set: loaded from ``ctx.reference_dir`` when it matches, else trained (and saved there)."""
    record = ctx.original_record
    pool = reference_pool(len(record.train_indices), ctx.pool_idx, ctx.nonmember_idx)
    fp = fingerprint(record, pool, ctx.reference_count)
    path = Path(ctx.reference_dir) / FILE_NAME if ctx.reference_dir else None
    if path is not None and path.is_file():
        try:
            refs = ReferenceSet.load(path)
            if refs.fingerprint == fp:
                report(ctx.progress, 0.0, f"Reusing {refs.count} reference models from {path.parent}")
                return refs
        except (OSError, ValueError, KeyError, RuntimeError):
            pass  # a stale or damaged file is replaced below
    refs = train_references(record, ctx.data, pool, ctx.reference_count, batched=ctx.batched, device=ctx.device, progress=ctx.progress)
    if path is not None:
        refs.save(path)
    return refs
