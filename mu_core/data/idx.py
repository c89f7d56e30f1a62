"""MNIST and Fashion-MNIST from a folder of the standard IDX files (gzipped or not)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from ..errors import AuditInputError
from . import register_dataset

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
MNIST_CLASSES = tuple(str(d) for d in range(10))

_FILES = {
    "train_images": ("train-images", 3),
    "train_labels": ("train-labels", 1),
    "test_images": ("t10k-images", 3),
    "test_labels": ("t10k-labels", 1),
}


def _find(root: Path, stem: str, dims: int) -> Path:
    for suffix in (f"-idx{dims}-ubyte", f".idx{dims}-ubyte"):
        for ending in ("", ".gz"):
            candidate = root / f"{stem}{suffix}{ending}"
            if candidate.is_file():
                return candidate
    raise AuditInputError(
        f"'{root}' lacks {stem}-idx{dims}-ubyte(.gz): an IDX folder needs train-images, "
        "train-labels, t10k-images and t10k-labels files."
    )


def read_idx(path: Path, dims: int) -> np.ndarray:
    """Read one IDX file (magic 0x0801 for labels, 0x0803 for images) into a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise AuditInputError(f"'{path.name}' could not be read as an IDX file ({exc}).") from None
    if len(raw) < 4 + 4 * dims or raw[:2] != b"\x00\x00" or raw[2] != 0x08 or raw[3] != dims:
        raise AuditInputError(f"'{path.name}' is not an unsigned-byte IDX file with {dims} dimension(s).")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    offset = 4 + 4 * dims
    if len(raw) - offset != int(np.prod(shape)):
        raise AuditInputError(f"'{path.name}' is truncated or malformed: its header promises {shape} values.")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


def load_idx_folder(root: Path, class_names: tuple[str, ...]):
    arrays = {key: read_idx(_find(root, stem, dims), dims) for key, (stem, dims) in _FILES.items()}
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise AuditInputError(f"In '{root}' the {split} images and labels differ in count.")
    if max(arrays["train_labels"].max(), arrays["test_labels"].max()) >= len(class_names):
        raise AuditInputError(f"'{root}' holds labels beyond the {len(class_names)} classes expected.")

    def images(key: str) -> torch.Tensor:
        return torch.from_numpy(arrays[key].astype(np.float32) / 255.0).unsqueeze(1)

    def labels(key: str) -> torch.Tensor:
        return torch.from_numpy(arrays[key].astype(np.int64))

    return (
        images("train_images"),
        labels("train_labels"),
        images("test_images"),
        labels("test_labels"),
        class_names,
    )


@register_dataset("mnist", needs_root=True, description="MNIST from a folder of IDX files")
def load_mnist(root: Path):
    return load_idx_folder(root, MNIST_CLASSES)


@register_dataset("fashion-mnist", needs_root=True, description="Fashion-MNIST from a folder of IDX files")
def load_fashion_mnist(root: Path):
    return load_idx_folder(root, FASHION_CLASSES)
