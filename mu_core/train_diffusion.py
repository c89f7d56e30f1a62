"""Training a :class:`~mu_core.models.ddpm.DDPM` (the diffusion counterpart of :mod:`mu_core.train`).

:func:`mu_core.train.fit_model` hands ``arch="ddpm"`` here, so ``train --arch ddpm``, the Model
page and ``unlearn --method retrain`` need nothing else. The recipe is a
:class:`~mu_core.train.TrainConfig` (epochs, batch size, Adam learning rate, seed) plus
``recipe["diffusion"]``: the schedule and ``T`` (:func:`~mu_core.models.ddpm.diffusion_settings`).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ._types import Progress, report
from .data import Dataset
from .device import seed_everything
from .errors import AuditInputError
from .models import ModelRecord
from .models.ddpm import CLASSIFIER_FRACTIONS, DDPM, DEFAULT_TIMESTEPS, denoising_losses, diffusion_settings
from .train import TrainConfig, accuracy

__all__ = ["METRIC_SAMPLES", "ddpm_default_config", "ddpm_train_loop", "diffusion_metrics", "fit_ddpm"]

#: Metrics of a DDPM (diffusion-classifier accuracy, denoising loss) use at most this many samples per set.
METRIC_SAMPLES = 500
#: A new DDPM on a small training set trains for about this many optimiser steps by default.
SMALL_DATA_STEPS = 5000


def ddpm_default_config(n_train: int, *, seed: int = 0, epochs: int | None = None) -> TrainConfig:
    """About :data:`SMALL_DATA_STEPS` Adam steps of 64 on small data; 5 epochs of 128 from 5,000 samples on."""
    if n_train < 5000:
        steps_per_epoch = max(1, math.ceil(n_train / 64))
        base = TrainConfig(epochs=max(30, math.ceil(SMALL_DATA_STEPS / steps_per_epoch)), batch_size=64, lr=1e-3, seed=seed)
    else:
        base = TrainConfig(epochs=5, batch_size=128, lr=5e-4, seed=seed)
    return TrainConfig(**{**base.to_dict(), **({"epochs": epochs} if epochs else {})})


def ddpm_train_loop(
    model: DDPM,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    *,
    device: torch.device,
    progress: Progress | None = None,
    label: str = "Training DDPM",
    sign: float = 1.0,
) -> DDPM:
    """Minimise DDPM's simple loss on ``(x, y)`` (``sign=-1``: maximise it). Batches, timesteps
    and noise are drawn from ``config.seed``."""
    if len(x) == 0:
        raise AuditInputError("There is nothing to train on: the training set is empty.")
    model.to(device).train()
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    x_dev, y_dev = x.to(device), y.to(device)
    steps_per_epoch = math.ceil(len(x) / config.batch_size)
    total = config.epochs * steps_per_epoch
    step = 0
    running = 0.0
    for epoch in range(config.epochs):
        order = torch.randperm(len(x), generator=generator).to(device)
        for start in range(0, len(x), config.batch_size):
            batch = order[start : start + config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = model.training_loss(x_dev[batch], y_dev[batch], generator)
            (sign * loss).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            running = 0.98 * running + 0.02 * float(loss.detach()) if step else float(loss.detach())
            step += 1
            if step % max(1, total // 100) == 0 or step == total:
                report(progress, step / total, f"{label}: epoch {epoch + 1}/{config.epochs}, loss {running:.4f}")
    return model.eval()


def _sample(x: torch.Tensor, y: torch.Tensor, limit: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if len(x) <= limit:
        return x, y
    pick = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(len(x), limit, replace=False)))
    return x[pick], y[pick]


def diffusion_metrics(model: DDPM, sets: dict[str, tuple[torch.Tensor, torch.Tensor]], *, device: torch.device) -> dict:
    """``<name>_acc`` (diffusion-classifier accuracy) and ``<name>_loss`` (denoising loss at the
    classifier's timesteps, one seeded draw) on at most :data:`METRIC_SAMPLES` seeded samples per set."""
    model.to(device).eval()
    ts = [int(f * model.timesteps) for f in CLASSIFIER_FRACTIONS]
    out: dict = {}
    for name, (x, y) in sets.items():
        xs, ys = _sample(x, y, METRIC_SAMPLES, seed=len(x))
        out[f"{name}_acc"] = accuracy(model, xs, ys, device=device)
        out[f"{name}_loss"] = float(denoising_losses(model, xs, ys, timesteps=ts, device=device).mean()) if len(xs) else float("nan")
    out["metric_samples"] = METRIC_SAMPLES
    return out


def fit_ddpm(
    data: Dataset,
    config: TrainConfig | None,
    train_indices: np.ndarray,
    *,
    timesteps: int | None = None,
    settings: dict | None = None,
    progress: Progress | None = None,
    device: torch.device,
    extra_recipe: dict | None = None,
) -> tuple[DDPM, ModelRecord]:
    """Train a DDPM from scratch on ``train_indices``; ``settings`` (a recorded
    ``recipe["diffusion"]``) repeats a schedule, else one with ``timesteps`` steps is made."""
    settings = dict(settings or diffusion_settings(data.in_shape, timesteps or DEFAULT_TIMESTEPS))
    config = (config or ddpm_default_config(len(train_indices))).validate()
    started = time.perf_counter()
    seed_everything(config.seed)
    model = DDPM(data.in_shape, data.num_classes, settings)
    idx = torch.from_numpy(train_indices)
    ddpm_train_loop(model, data.x_train[idx], data.y_train[idx], config, device=device, progress=progress)
    seconds = time.perf_counter() - started
    report(progress, 1.0, "Evaluating (diffusion classifier)")
    metrics = diffusion_metrics(model, {"train": (data.x_train[idx], data.y_train[idx]), "test": (data.x_test, data.y_test)}, device=device)
    metrics.update({"train_seconds": round(seconds, 3), "device": str(device),
                    "steps": config.epochs * math.ceil(len(train_indices) / config.batch_size)})
    recipe = {**config.to_dict(), **(extra_recipe or {}), "diffusion": settings}
    record = ModelRecord(
        arch="ddpm", in_shape=data.in_shape, class_names=data.class_names, dataset=data.spec.to_dict(),
        train_indices=train_indices, n_train_split=data.n_train, recipe=recipe, metrics=metrics,
    )
    return model.cpu().eval(), record
