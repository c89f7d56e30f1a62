"""Seeded training, evaluation helpers and the recipe every retrain repeats."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._types import Progress, report
from .data import Dataset, load_dataset
from .device import pick_device, seed_everything
from .errors import AuditInputError
from .models import ModelRecord, build_model

__all__ = ["TrainConfig", "accuracy", "default_config", "fit_model", "fit_sisa", "predict_logits", "subset_indices", "train_loop"]


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe. Together with the training indices it fully determines a model."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def validate(self) -> TrainConfig:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise AuditInputError("Epochs, batch size and learning rate must all be positive.")
        if self.optimizer not in ("adam", "sgd"):
            raise AuditInputError(f"Unknown optimizer '{self.optimizer}'; choose adam or sgd.")
        return self


def default_config(arch: str, n_train: int, *, seed: int = 0, epochs: int | None = None) -> TrainConfig:
    """Defaults that train each architecture well and fast: small data gets more epochs."""
    if arch == "ddpm":
        from .train_diffusion import ddpm_default_config

        return ddpm_default_config(n_train, seed=seed, epochs=epochs)
    if arch.startswith("resnet"):
        base = TrainConfig(epochs=15 if n_train < 5000 else 5, batch_size=128, lr=0.05, optimizer="sgd", weight_decay=5e-4)
    else:
        base = TrainConfig(epochs=30 if n_train < 5000 else 5, batch_size=64 if n_train < 5000 else 128, lr=1e-3)
    return TrainConfig(**{**base.to_dict(), "seed": seed, **({"epochs": epochs} if epochs else {})})


def make_optimizer(model: nn.Module, config: TrainConfig, params=None) -> torch.optim.Optimizer:
    params = list(model.parameters()) if params is None else params
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, *, device: torch.device | None = None, batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` on ``x`` (on the CPU), in eval mode, batched."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, device: torch.device | None = None) -> float:
    """Share of correct predictions (``nan`` for an empty set)."""
    if len(x) == 0:
        return float("nan")
    return float((predict_logits(model, x, device=device).argmax(1) == y.cpu()).float().mean())


def train_loop(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    *,
    device: torch.device,
    progress: Progress | None = None,
    label: str = "Training",
) -> nn.Module:
    """Minimise cross-entropy on ``(x, y)`` with ``config``; batches are drawn from ``config.seed``."""
    if len(x) == 0:
        raise AuditInputError("There is nothing to train on: the training set is empty.")
    model.to(device).train()
    optimizer = make_optimizer(model, config)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(config.seed)
    x_dev, y_dev = x.to(device), y.to(device)
    steps_per_epoch = (len(x) + config.batch_size - 1) // config.batch_size
    total = config.epochs * steps_per_epoch
    step = 0
    report(progress, 0.0, f"{label}: epoch 1/{config.epochs}")
    for epoch in range(config.epochs):
        order = torch.randperm(len(x), generator=generator).to(device)
        running = 0.0
        for start in range(0, len(x), config.batch_size):
            batch = order[start : start + config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_dev[batch]), y_dev[batch])
            loss.backward()
            optimizer.step()
            running += float(loss.detach())
            step += 1
            if step % max(1, total // 100) == 0 or step == total:
                report(progress, step / total, f"{label}: epoch {epoch + 1}/{config.epochs}, loss {running / ((start // config.batch_size) + 1):.3f}")
    model.eval()
    return model


def subset_indices(n_train: int, size: int, seed: int) -> np.ndarray:
    """A seeded random subset of ``range(n_train)`` of the given size, sorted."""
    if not 1 <= size <= n_train:
        raise AuditInputError(f"--train-size must be between 1 and {n_train}, the size of the training split.")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_train, size=size, replace=False)).astype(np.int64)


def _base_state(init: str | Path, arch: str, data: Dataset) -> tuple[dict, dict]:
    """The weights of the base model file ``init`` and what the recipe records about it."""
    from .models import load_model, sha256_file

    base, base_record = load_model(init)
    if base_record.arch != arch or tuple(base_record.in_shape) != tuple(data.in_shape) or base_record.num_classes != data.num_classes:
        raise AuditInputError(
            f"The base model '{Path(init).name}' is a {base_record.arch} for {tuple(base_record.in_shape)} inputs and "
            f"{base_record.num_classes} classes; it cannot start a {arch} on {data.spec.name}."
        )
    return base.state_dict(), {"path": str(Path(init).resolve()), "sha256": sha256_file(init)}


def fit_model(
    dataset: Dataset | str,
    arch: str,
    config: TrainConfig | None = None,
    *,
    train_indices: np.ndarray | None = None,
    train_size: int | None = None,
    init_state: dict | None = None,
    init: str | Path | None = None,
    timesteps: int | None = None,
    progress: Progress | None = None,
    device: torch.device | str | None = None,
) -> tuple[nn.Module, ModelRecord]:
    """Train ``arch`` from scratch (or from ``init_state``) on the dataset's training split.

    ``init`` names a base model file to start from (fine-tuning, as in the exact-unlearning
    setting of Hu et al. 2024); the recipe records its path and sha256, so ``retrain`` repeats
    the fine-tuning from the same base.
    ``train_indices`` (or a seeded subset of ``train_size`` samples) restrict the training set.
    ``arch="ddpm"`` trains a diffusion model (:func:`mu_core.train_diffusion.fit_ddpm`) with
    ``timesteps`` diffusion steps (default 200); its accuracies are the diffusion classifier's.
    Returns the model (eval mode, CPU) and its record, with train and test accuracy.

    >>> model, record = fit_model("digits", "cnn")          # doctest: +SKIP
    >>> record.metrics["test_acc"] > 0.95                     # doctest: +SKIP
    True
    """
    data = load_dataset(dataset) if isinstance(dataset, str) else dataset
    device = device if isinstance(device, torch.device) else pick_device(device)
    if train_indices is None:
        train_indices = (
            subset_indices(data.n_train, train_size, (config.seed if config else 0))
            if train_size
            else np.arange(data.n_train, dtype=np.int64)
        )
    train_indices = np.sort(np.asarray(train_indices, dtype=np.int64))
    config = (config or default_config(arch, len(train_indices))).validate()
    if arch == "ddpm":
        if init is not None or init_state is not None:
            raise AuditInputError("A DDPM trains from scratch here; --init is for classifiers.")
        from .train_diffusion import fit_ddpm

        return fit_ddpm(data, config, train_indices, timesteps=timesteps, progress=progress, device=device,
                        extra_recipe={"train_size": int(train_size)} if train_size else None)

    started = time.perf_counter()
    seed_everything(config.seed)
    model = build_model(arch, data.in_shape, data.num_classes)
    base_info = None
    if init is not None:
        init_state, base_info = _base_state(init, arch, data)
    if init_state is not None:
        model.load_state_dict(init_state)
    idx = torch.from_numpy(train_indices)
    train_loop(model, data.x_train[idx], data.y_train[idx], config, device=device, progress=progress)
    seconds = time.perf_counter() - started
    report(progress, 1.0, "Evaluating")
    metrics = {
        "train_acc": accuracy(model, data.x_train[idx], data.y_train[idx], device=device),
        "test_acc": accuracy(model, data.x_test, data.y_test, device=device),
        "train_seconds": round(seconds, 3),
        "device": str(device),
    }
    recipe = config.to_dict()
    if train_size:
        recipe["train_size"] = int(train_size)
    if base_info:
        recipe["init"] = base_info
    record = ModelRecord(
        arch=arch,
        in_shape=data.in_shape,
        class_names=data.class_names,
        dataset=data.spec.to_dict(),
        train_indices=train_indices,
        n_train_split=data.n_train,
        recipe=recipe,
        metrics=metrics,
    )
    return model.cpu().eval(), record


def _train_shard(
    ensemble,
    shard: int,
    parts: list[np.ndarray],
    start_slice: int,
    data: Dataset,
    config: TrainConfig,
    epochs_per_slice: int,
    device: torch.device,
    progress: Progress | None,
) -> None:
    """(Re)train one SISA shard from the checkpoint before ``start_slice`` (or from its seeded
    initialisation), adding one slice at a time and checkpointing after each but the last."""
    from .models import build_model

    model = ensemble.shards[shard]
    if start_slice == 0:
        torch.manual_seed(config.seed * 1009 + shard)
        model.load_state_dict(build_model(ensemble.arch_name, data.in_shape, data.num_classes).state_dict())
    else:
        model.load_state_dict(ensemble.checkpoint(shard, start_slice - 1))
    slices = len(parts)
    for r in range(start_slice, slices):
        idx = torch.from_numpy(np.concatenate(parts[: r + 1]))
        if len(idx):
            slice_config = TrainConfig(**{**config.to_dict(), "epochs": epochs_per_slice, "seed": config.seed * 1009 + shard * 101 + r})
            sub = None if progress is None else (lambda f, m, r=r: progress((r - start_slice + f) / (slices - start_slice), m))
            train_loop(model, data.x_train[idx], data.y_train[idx], slice_config, device=device, progress=sub, label=f"Shard {shard + 1}, slice {r + 1}/{slices}")
        if r < slices - 1:
            ensemble.set_checkpoint(shard, r, model.state_dict())


def fit_sisa(
    dataset: Dataset | str,
    arch: str,
    config: TrainConfig | None = None,
    *,
    shards: int,
    slices: int,
    aggregate: str = "mean",
    train_indices: np.ndarray | None = None,
    assignment: list[list[np.ndarray]] | None = None,
    progress: Progress | None = None,
    device: torch.device | str | None = None,
):
    """Train a SISA ensemble (see :mod:`mu_core.models.sisa`). Each slice is trained for
    ``ceil(epochs / slices)`` epochs on its shard's slices so far. ``assignment`` (shard x slice
    indices) replaces the seeded split, e.g. to retrain without a forget set."""
    from .models.io import ModelRecord
    from .models.sisa import SisaEnsemble, encode_assignment, sisa_assignment

    data = load_dataset(dataset) if isinstance(dataset, str) else dataset
    device = device if isinstance(device, torch.device) else pick_device(device)
    if shards < 1 or slices < 1:
        raise AuditInputError("--sisa needs at least one shard and one slice, e.g. 5x4.")
    if train_indices is None:
        train_indices = np.arange(data.n_train, dtype=np.int64)
    train_indices = np.sort(np.asarray(train_indices, dtype=np.int64))
    if len(train_indices) < shards * slices:
        raise AuditInputError(f"{shards}x{slices} SISA needs at least {shards * slices} training samples.")
    config = (config or default_config(arch, len(train_indices) // shards)).validate()
    epochs_per_slice = max(1, -(-config.epochs // slices))
    assignment = assignment or sisa_assignment(train_indices, shards, slices, config.seed)

    started = time.perf_counter()
    ensemble = SisaEnsemble(arch, data.in_shape, data.num_classes, shards, aggregate)
    for s in range(shards):
        sub = None if progress is None else (lambda f, m, s=s: progress((s + f) / shards, m))
        _train_shard(ensemble, s, assignment[s], 0, data, config, epochs_per_slice, device, sub)
    ensemble.cpu().eval()
    seconds = time.perf_counter() - started
    idx = torch.from_numpy(train_indices)
    recipe = {
        **config.to_dict(),
        "sisa": {"shards": shards, "slices": slices, "aggregate": aggregate, "epochs_per_slice": epochs_per_slice,
                 "assignment": encode_assignment(assignment, data.n_train)},
    }
    record = ModelRecord(
        arch=arch, in_shape=data.in_shape, class_names=data.class_names, dataset=data.spec.to_dict(),
        train_indices=train_indices, n_train_split=data.n_train, recipe=recipe,
        metrics={
            "train_acc": accuracy(ensemble, data.x_train[idx], data.y_train[idx], device=device),
            "test_acc": accuracy(ensemble, data.x_test, data.y_test, device=device),
            "train_seconds": round(seconds, 3), "device": str(device),
        },
    )
    return ensemble, record
