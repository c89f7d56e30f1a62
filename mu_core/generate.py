"""Samples from diffusion models, per class: the ``generate`` command and the Generate view.

>>> from mu_core.generate import generate_samples          # doctest: +SKIP
>>> result = generate_samples(model, per_class=4)           # doctest: +SKIP
>>> result.images.shape                                     # doctest: +SKIP
(40, 1, 8, 8)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._types import Progress, sub_progress
from .errors import AuditInputError
from .models.ddpm import model_family

__all__ = [
    "MAX_SAMPLES",
    "GeneratedSamples",
    "case_generate",
    "case_generated",
    "generate_samples",
    "generate_side_by_side",
    "grid_image",
    "label_share",
    "write_samples",
]

#: At most this many images per call (bounds memory and time).
MAX_SAMPLES = 10_000


@dataclass(frozen=True, eq=False)
class GeneratedSamples:
    """``images``: (N, C, H, W) float32 in [0, 1]; ``labels``: the class each was generated for."""

    images: np.ndarray = field(repr=False)
    labels: np.ndarray
    class_names: tuple[str, ...]
    per_class: int
    sampler: str
    steps: int
    seed: int


def generate_samples(
    model: nn.Module,
    *,
    per_class: int,
    class_names: tuple[str, ...] | None = None,
    classes: list[int] | None = None,
    sampler: str = "ddim",
    steps: int = 50,
    seed: int = 0,
    progress: Progress | None = None,
    device: torch.device | str | None = None,
) -> GeneratedSamples:
    """``per_class`` samples of every class (or of ``classes``) from a DDPM, DDIM by default."""
    from .device import pick_device

    if model_family(model) != "diffusion":
        raise AuditInputError("Only diffusion models (arch ddpm) generate samples; this model is a classifier.")
    classes = list(range(model.num_classes)) if classes is None else [int(c) for c in classes]
    if per_class < 1 or per_class * len(classes) > MAX_SAMPLES:
        raise AuditInputError(f"Ask for between 1 and {MAX_SAMPLES} samples in all (per class x classes).")
    device = device if isinstance(device, torch.device) else pick_device(device)
    labels = torch.tensor([c for c in classes for _ in range(per_class)], dtype=torch.long)
    model.to(device)
    try:
        images = model.sample(labels, sampler=sampler, steps=steps, seed=seed, progress=progress)
    finally:
        model.cpu()
    names = tuple(class_names) if class_names else tuple(str(c) for c in range(model.num_classes))
    return GeneratedSamples(images.numpy().astype(np.float32), labels.numpy(), names, int(per_class), sampler, int(steps), int(seed))


def generate_side_by_side(
    models: dict[str, nn.Module], *, per_class: int, class_names: tuple[str, ...] | None = None, sampler: str = "ddim",
    steps: int = 50, seed: int = 0, progress: Progress | None = None, device: torch.device | str | None = None,
) -> dict[str, GeneratedSamples]:
    """The same seeds and classes through several models (original, unlearned, retrained)."""
    out = {}
    for i, (role, model) in enumerate(models.items()):
        out[role] = generate_samples(model, per_class=per_class, class_names=class_names, sampler=sampler, steps=steps, seed=seed,
                                     progress=sub_progress(progress, i / len(models), (i + 1) / len(models)), device=device)
    return out


def grid_image(samples: GeneratedSamples, *, scale: int = 4, pad: int = 1) -> np.ndarray:
    """A uint8 grid, one row per class and ``per_class`` columns, each image scaled up ``scale``
    times (nearest): ``(H, W)`` for grey images, ``(H, W, 3)`` for RGB."""
    images = samples.images
    c, h, w = images.shape[1:]
    rows = list(dict.fromkeys(samples.labels.tolist()))
    cols = samples.per_class
    hs, ws = h * scale + pad, w * scale + pad
    grid = np.full((len(rows) * hs + pad, cols * ws + pad, c), 255, dtype=np.uint8)
    for r, label in enumerate(rows):
        for j, img in enumerate(images[samples.labels == label][:cols]):
            tile = np.repeat(np.repeat((img.transpose(1, 2, 0) * 255).round().astype(np.uint8), scale, 0), scale, 1)
            grid[pad + r * hs : pad + r * hs + h * scale, pad + j * ws : pad + j * ws + w * scale] = tile
    return grid[..., 0] if c == 1 else grid


def write_samples(samples: GeneratedSamples, out_dir: str | Path, *, extra: dict | None = None) -> Path:
    """Write ``grid.png`` (rows = classes), ``samples.npz`` (``images`` uint8, ``labels``) and
    ``samples.json`` (the settings, plus ``extra``); returns the grid's path."""
    from PIL import Image

    from .case import atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "grid.png"
    Image.fromarray(grid_image(samples)).save(path)
    np.savez_compressed(out / "samples.npz", images=(samples.images * 255).round().astype(np.uint8), labels=samples.labels)
    atomic_write_text(out / "samples.json", json.dumps({
        "per_class": samples.per_class, "classes": [samples.class_names[c] for c in dict.fromkeys(samples.labels.tolist())],
        "sampler": samples.sampler, "steps": samples.steps, "seed": samples.seed, "count": len(samples.labels), **(extra or {}),
    }, indent=1))
    return path


def label_share(classifier: nn.Module, samples: GeneratedSamples, cls: int, *, device: torch.device | None = None) -> float:
    """The share of the samples generated for class ``cls`` that ``classifier`` labels ``cls``."""
    from .train import predict_logits

    pick = samples.labels == cls
    if not pick.any():
        raise AuditInputError(f"No samples were generated for class {cls}.")
    preds = predict_logits(classifier, torch.from_numpy(samples.images[pick]), device=device).argmax(1)
    return float((preds == cls).float().mean())


def case_generate(case, *, per_class: int = 8, sampler: str = "ddim", steps: int = 50, seed: int = 0,
                  progress: Progress | None = None) -> dict[str, str]:
    """Samples per class from every model the case has (original, unlearned, retrained), the same
    seeds for each, written to the case's ``generate/<role>/``; returns role -> grid path."""
    from .models import sha256_file
    from .workflow import load_case_model

    roles = [r for r in ("original", "unlearned", "retrained") if case.file(r) is not None]
    if not roles:
        raise AuditInputError("This case has no model yet: train or upload a model first.")
    loaded = {role: load_case_model(case, role) for role in roles}
    class_names = loaded["original"][1].class_names if "original" in loaded else None
    out = {}
    for i, role in enumerate(roles):
        samples = generate_samples(loaded[role][0], per_class=per_class, class_names=class_names, sampler=sampler, steps=steps, seed=seed,
                                   progress=sub_progress(progress, i / len(roles), (i + 1) / len(roles)))
        out[role] = str(write_samples(samples, case.path("generate", role), extra={"model_sha256": sha256_file(case.file(role))}))
    return out


def case_generated(case) -> dict[str, dict]:
    """The case's generated grids that still match its current models: role -> ``samples.json``
    plus ``grid`` (the PNG's path). Grids of a replaced model are left out."""
    out = {}
    for role in ("original", "unlearned", "retrained"):
        folder = case.path("generate", role)
        entry = case.entry(role) or {}
        try:
            meta = json.loads((folder / "samples.json").read_text())
        except (OSError, ValueError):
            continue
        if entry.get("sha256") and meta.get("model_sha256") == entry["sha256"] and (folder / "grid.png").is_file():
            out[role] = {**meta, "grid": str(folder / "grid.png")}
    return out
