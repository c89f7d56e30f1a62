"""Pieces the threats and the screen share: gradient alignment, requests of arbitrary samples,
poisoned training sets, unlearning by a named provider (``none`` = no unlearning), and the
sweeps that run independent provider runs as jobs of :func:`~mu_core.executor.run_jobs`."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import torch
from torch import nn

# Forward-mode AD compiles its decompositions with torch.jit.script on first use, and that
# ast.parse is not thread-safe on CPython 3.11 (a job thread and a page script compiling at once
# raised "AST constructor recursion depth mismatch"): load them once, at import (quietly: torch
# warns that torch.jit.script is deprecated, which is torch's business, not the user's).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import torch._decomp.decompositions_for_jvp

from ..data import Dataset
from ..errors import AuditInputError
from ..models import ModelRecord

__all__ = [
    "NO_UNLEARNING",
    "add_trigger",
    "directional_losses",
    "job_data",
    "loss_gradient",
    "parse_methods",
    "provider_sweep",
    "provider_unlearn",
    "shared_data",
    "train_like",
    "with_samples",
]

#: The provider who claims to have unlearned but did nothing (the dishonest baseline).
NO_UNLEARNING = "none"


def parse_methods(text: str, *, allow_none: bool = False) -> list[str]:
    """Unlearning methods named in a comma-separated list, checked against the registry."""
    from ..unlearn import get_method

    names = [m.strip() for m in str(text).split(",") if m.strip()]
    if not names:
        raise AuditInputError("Name at least one unlearning method in 'methods' (comma-separated, see 'list').")
    for name in names:
        if name == NO_UNLEARNING and allow_none:
            continue
        get_method(name)
    return list(dict.fromkeys(names))


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in model.named_parameters()}


def loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, *, batch_size: int = 512) -> dict[str, torch.Tensor]:
    """The gradient of the *summed* cross-entropy of ``(x, y)`` over all parameters (eval mode)."""
    model.eval()
    grads = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for start in range(0, len(x), batch_size):
        model.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x[start : start + batch_size].to(device)), y[start : start + batch_size].to(device), reduction="sum")
        loss.backward()
        for name, p in model.named_parameters():
            if p.grad is not None:
                grads[name] += p.grad.detach()
    model.zero_grad(set_to_none=True)
    return grads


def directional_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor, direction: dict[str, torch.Tensor], device: torch.device,
                       *, batch_size: int = 512) -> np.ndarray:
    """Per sample, the derivative of its loss along ``direction`` in weight space:
    ``grad L(x_i)·direction`` (one forward-mode pass per batch, no per-sample gradients).

    With ``direction`` = the gradient of a request's summed loss, this is the first-order change
    of each sample's loss when the request is unlearned by gradient ascent (positive: hurt)."""
    from torch.func import functional_call, jvp

    model.eval()
    params = _params(model)
    tangents = {name: direction[name].to(device) for name in params}
    out = []
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)

        def losses(p: dict[str, torch.Tensor], xb: torch.Tensor = xb, yb: torch.Tensor = yb) -> torch.Tensor:
            return nn.functional.cross_entropy(functional_call(model, p, (xb,)), yb, reduction="none")

        _, derivative = jvp(losses, (params,), (tangents,))
        out.append(derivative.detach().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def with_samples(data: Dataset, record: ModelRecord, x: torch.Tensor, y: torch.Tensor) -> tuple[Dataset, ModelRecord, np.ndarray]:
    """The data and record as a provider who accepts ``(x, y)`` as training samples sees them:
    the samples appended to the training split (and to the record's training indices).
    Returns the new data, the new record and the new samples' indices."""
    start = data.n_train
    new_idx = np.arange(start, start + len(x), dtype=np.int64)
    extended = replace(data, x_train=torch.cat([data.x_train, x.cpu()]), y_train=torch.cat([data.y_train, y.cpu()]))
    extended_record = record.with_updates(train_indices=np.concatenate([record.train_indices, new_idx]), n_train_split=extended.n_train)
    return extended, extended_record, new_idx


def add_trigger(x: torch.Tensor) -> torch.Tensor:
    """A copy of images ``(n, C, H, W)`` with the backdoor trigger: a white square of side
    ``max(2, H // 7)`` one pixel in from the bottom-right corner (2x2 on 8x8 digits, 4x4 on 28x28)."""
    side = max(2, x.shape[-2] // 7)
    out = x.clone()
    out[..., -side - 1 : -1, -side - 1 : -1] = 1.0
    return out


def train_like(record: ModelRecord, data: Dataset, train_idx: np.ndarray, *, seed: int | None = None, device=None,
               progress=None) -> tuple[nn.Module, ModelRecord]:
    """Train a model with ``record``'s architecture and recipe (its seed, or ``seed``) on
    ``train_idx`` of ``data`` (which may be a poisoned copy of the record's dataset); the model
    is returned on ``device``."""
    from ..train import TrainConfig, default_config, fit_model

    recipe = record.recipe
    if recipe.get("sisa"):
        raise AuditInputError("Threats that retrain the model do not support SISA ensembles; use a single model.")
    config = TrainConfig.from_dict(recipe) if "epochs" in recipe and "lr" in recipe else default_config(record.arch, len(train_idx))
    if seed is not None:
        config = replace(config, seed=int(seed))
    init = recipe.get("init", {}).get("path") if isinstance(recipe.get("init"), dict) else None
    model, trained = fit_model(data, record.arch, config, train_indices=train_idx, init=init, progress=progress, device=device)
    return (model if device is None else model.to(device)), trained


def provider_unlearn(model: nn.Module, record: ModelRecord, data: Dataset, forget_idx: np.ndarray, method: str, *, device,
                     seed: int = 0, max_retain_drop: float | None = None) -> nn.Module:
    """What a provider running ``method`` (its default parameters, the given seed and, where the
    method has one, collapse guard) returns for a request (``none``: the model as it is), on
    ``device``."""
    from ..unlearn import preset, unlearn

    if method == NO_UNLEARNING:
        return model
    defaults = preset(method, len(record.train_indices))
    given = {"seed": seed, "max_retain_drop": max_retain_drop}
    params = {k: v for k, v in given.items() if k in defaults and v is not None}
    return unlearn(model, record, forget_idx, method=method, params=params, dataset=data, device=device).model.to(device)


def shared_data(data: Dataset, name: str = "") -> dict[str, torch.Tensor]:
    """``data``'s tensors as a sweep's shared tensors (``x_train`` ... ``y_test``; ``name`` prefixes the
    training split, for a sweep over a plain and a poisoned copy that share the test split)."""
    return {f"{name}x_train": data.x_train, f"{name}y_train": data.y_train, "x_test": data.x_test, "y_test": data.y_test}


def job_data(job: dict, shared, name: str = "") -> Dataset:
    """The dataset a sweep's job computes on: the shared tensors of :func:`shared_data` with the
    spec and class names in ``job["data"]``."""
    from ..data import DatasetSpec

    return Dataset(DatasetSpec.from_dict(job["data"]["spec"]), shared[f"{name}x_train"], shared[f"{name}y_train"], shared["x_test"],
                   shared["y_test"], tuple(job["data"]["class_names"]))


def provider_sweep(fn, jobs: list[dict], data: Dataset, shared: dict, *, device, progress=None, label: str = "Provider run") -> list[dict]:
    """Run a threat's independent provider runs (``fn(job, shared, ctx)``, one job each) with
    :func:`~mu_core.executor.run_jobs` (the executor in force: in this process, or on Ray); ``data``
    describes the shared tensors (see :func:`job_data`). Models travel as their files' bytes
    (:func:`~mu_core.executor.pack_model`), never pickled; each run seeds its own unlearning, so the
    results do not depend on where or in which order the runs go."""
    from ..executor import run_jobs

    described = {"spec": data.spec.to_dict(), "class_names": list(data.class_names)}
    return run_jobs(fn, [{**job, "data": described} for job in jobs], shared=shared, device=str(device), progress=progress, label=label)
