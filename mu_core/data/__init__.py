"""Dataset registry.

Every dataset gives train/test tensors of shape ``(n, channels, height, width)`` with values in
[0, 1], integer labels and class names. A training sample's index is its position in the
canonical training split, which every loader keeps stable: forget requests, model metadata and
audits all speak in these indices.

>>> from mu_core.data import load_dataset
>>> ds = load_dataset("digits")
>>> ds.in_shape, ds.num_classes, ds.n_train
((1, 8, 8), 10, 1437)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from ..errors import AuditInputError

__all__ = [
    "Dataset",
    "DatasetInfo",
    "DatasetSpec",
    "dataset_info",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "trusted_root",
]


@dataclass(frozen=True)
class DatasetSpec:
    """What to load: a registry name and, for datasets on disk, the folder (or zip) it lives in."""

    name: str
    root: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "root": self.root}

    @classmethod
    def from_dict(cls, data: dict) -> DatasetSpec:
        """The spec recorded in a model file, report or case. A recorded folder is kept only if
        the user has given it here before (see :func:`trusted_root`); otherwise it is dropped and
        the folder comes from ``MU_AUDIT_DATA``: a file never chooses the folder the server reads."""
        root = data.get("root")
        return cls(name=str(data["name"]), root=root if isinstance(root, str) and trusted_root(root) else None)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset. Tensors are shared between callers: never modify them in place."""

    spec: DatasetSpec
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple[str, ...]

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])


Loader = Callable[[Path | None], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple[str, ...]]]


@dataclass(frozen=True)
class DatasetInfo:
    """A registry entry: how to load one kind of dataset."""

    name: str
    loader: Loader = field(repr=False)
    needs_root: bool
    description: str


_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(name: str, *, needs_root: bool, description: str) -> Callable[[Loader], Loader]:
    """Decorator adding a loader ``(root) -> (x_train, y_train, x_test, y_test, class_names)``."""

    def decorate(loader: Loader) -> Loader:
        _REGISTRY[name] = DatasetInfo(name, loader, needs_root, description)
        return loader

    return decorate


def list_datasets() -> list[str]:
    """Registered dataset names, the default (``digits``) first."""
    return sorted(_REGISTRY, key=lambda n: (n != "digits", n))


def dataset_info(name: str) -> DatasetInfo:
    if name not in _REGISTRY:
        raise AuditInputError(f"Unknown dataset '{name}'; choose one of: {', '.join(list_datasets())}.")
    return _REGISTRY[name]


def _resolve_root(info: DatasetInfo, root: str | None) -> Path | None:
    if not info.needs_root:
        return None
    if root:
        path = Path(root).expanduser()
    elif os.environ.get("MU_AUDIT_DATA"):
        path = Path(os.environ["MU_AUDIT_DATA"]).expanduser() / info.name
    else:
        raise AuditInputError(
            f"Dataset '{info.name}' reads files from disk: give its folder with --data-root "
            "(or set MU_AUDIT_DATA to a folder holding a sub-folder per dataset)."
        )
    if not path.exists():
        raise AuditInputError(f"The data folder '{path}' for dataset '{info.name}' does not exist.")
    if not path.is_dir() and info.name != "imagefolder":
        raise AuditInputError(f"'{path}' for dataset '{info.name}' is a file, not a folder; give the folder holding its files.")
    return path.resolve()


TRUSTED_ROOTS_FILE = "data_roots.json"
MAX_TRUSTED_ROOTS = 1000


def _trusted_roots_path() -> Path:
    from ..case import audit_home

    return audit_home() / TRUSTED_ROOTS_FILE


def _trusted_roots() -> list[str]:
    import json

    try:
        roots = json.loads(_trusted_roots_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [r for r in roots if isinstance(r, str)] if isinstance(roots, list) else []


def trusted_root(root: str) -> bool:
    """Whether a recorded data folder may be read: one the user gave before (on the command line
    or a page, remembered in ``MU_AUDIT_HOME/data_roots.json``) or one inside ``MU_AUDIT_DATA``."""
    try:
        path = Path(root).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    env = os.environ.get("MU_AUDIT_DATA")
    if env and path.is_relative_to(Path(env).expanduser().resolve()):
        return True
    return str(path) in _trusted_roots()


def _remember_root(path: Path) -> None:
    from ..case import atomic_write_json

    roots = _trusted_roots()
    if str(path) in roots:
        return
    try:
        atomic_write_json(_trusted_roots_path(), [*roots, str(path)][-MAX_TRUSTED_ROOTS:])
    except OSError:
        pass


def load_dataset(spec: DatasetSpec | str, root: str | None = None) -> Dataset:
    """Load a dataset by spec or by name (with ``root`` for datasets on disk). Results are cached.

    A folder given here is the user's choice (specs read from files pass through
    :meth:`DatasetSpec.from_dict`, which drops folders the user never gave), so it is remembered
    as trusted for the model files trained on it.
    """
    if isinstance(spec, str):
        spec = DatasetSpec(spec, root)
    info = dataset_info(spec.name)
    path = _resolve_root(info, spec.root)
    resolved = DatasetSpec(spec.name, str(path) if path else None)
    data = _load_cached(resolved)
    if path is not None:
        _remember_root(path)
    return data


@lru_cache(maxsize=4)
def _load_cached(spec: DatasetSpec) -> Dataset:
    info = _REGISTRY[spec.name]
    x_train, y_train, x_test, y_test, class_names = info.loader(Path(spec.root) if spec.root else None)
    for tensor in (x_train, x_test):
        tensor.requires_grad_(False)
    return Dataset(spec, x_train, y_train.long(), x_test, y_test.long(), tuple(class_names))


from . import cifar10, digits, idx, imagefolder  # noqa: E402,F401  (registers the loaders)
