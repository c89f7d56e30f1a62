"""CIFAR-10 from the standard python-pickle batches folder, read without running pickled code.

The batches are Python pickles. A general unpickler can run arbitrary code, so we use one that
only reconstructs plain containers and NumPy arrays and refuses every other global.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import AuditInputError
from . import register_dataset

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")


def read_batch(path: Path) -> dict:
    """Read one CIFAR batch file into a dict with ``str`` keys, refusing anything but arrays."""
    try:
        with open(path, "rb") as fh:
            raw = _ArraysOnlyUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise AuditInputError(f"'{path.name}' is not a CIFAR-10 batch file we can read safely ({exc}).") from None
    if not isinstance(raw, dict):
        raise AuditInputError(f"'{path.name}' is not a CIFAR-10 batch file (expected a dictionary).")
    return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in raw.items()}


def _batch_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise AuditInputError(
            f"'{path.parent}' lacks '{path.name}': a CIFAR-10 folder holds data_batch_1..5 and test_batch."
        )
    batch = read_batch(path)
    try:
        data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (KeyError, ValueError) as exc:
        raise AuditInputError(f"'{path.name}' does not hold CIFAR-10 'data' and 'labels' ({exc}).") from None
    if len(data) != len(labels):
        raise AuditInputError(f"'{path.name}' holds {len(data)} images but {len(labels)} labels.")
    return data, labels


@register_dataset("cifar10", needs_root=True, description="CIFAR-10 from the python batches folder")
def load_cifar10(root: Path):
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    train = [_batch_arrays(root / f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = _batch_arrays(root / "test_batch")
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    if max(y_train.max(), y_test.max()) >= 10 or min(y_train.min(), y_test.min()) < 0:
        raise AuditInputError(f"'{root}' holds labels outside CIFAR-10's 10 classes.")
    return (
        torch.from_numpy(x_train.astype(np.float32) / 255.0),
        torch.from_numpy(y_train),
        torch.from_numpy(x_test.astype(np.float32) / 255.0),
        torch.from_numpy(y_test),
        CIFAR10_CLASSES,
    )
