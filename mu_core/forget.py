"""Forget requests: which training samples to forget, chosen and validated.

A request is a sorted set of canonical training-split indices, all of which the original model
was trained on, leaving at least one sample behind.

>>> import numpy as np
>>> req = random_request(np.arange(100), 5, seed=0)
>>> len(req.indices), req.kind
(5, 'random')
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import AuditInputError

#: Largest forget file read (a million indices fit in far less).
MAX_REQUEST_BYTES = 64 * 1024**2

__all__ = [
    "ForgetRequest",
    "class_request",
    "explicit_request",
    "parse_indices",
    "random_request",
    "read_request",
    "validate_indices",
    "write_request",
]


@dataclass(frozen=True, eq=False)
class ForgetRequest:
    """Indices to forget plus how they were chosen (``kind`` and ``params``, seed included)."""

    indices: np.ndarray = field(repr=False)
    kind: str = "indices"
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.indices)

    def describe(self) -> str:
        if self.kind == "random":
            return f"{len(self)} random training samples (seed {self.params.get('seed')})"
        if self.kind == "class":
            share = self.params.get("share", 1.0)
            what = "all" if share >= 1 else f"{share:.0%}"
            return f"{what} of class {self.params.get('class_name', self.params.get('class'))} ({len(self)} samples)"
        return f"{len(self)} samples given by index"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "params": self.params, "count": len(self), "indices": self.indices.tolist()}


def validate_indices(indices, train_indices: np.ndarray | None, n_train: int) -> np.ndarray:
    """Sorted unique int64 indices, refusing empty, out-of-range, untrained or all-of-training sets."""
    arr = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
    if arr.size == 0:
        raise AuditInputError("The forget request is empty: choose at least one training sample.")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0):
            arr = arr.astype(np.int64)
        else:
            raise AuditInputError("Forget indices must be whole numbers.")
    arr = np.unique(arr.astype(np.int64))
    if arr[0] < 0:
        raise AuditInputError(f"Forget index {int(arr[0])} is negative; indices start at 0.")
    if arr[-1] >= n_train:
        raise AuditInputError(
            f"Forget index {int(arr[-1])} is out of range: the training split has {n_train} samples (0 to {n_train - 1})."
        )
    if train_indices is not None:
        untrained = np.setdiff1d(arr, train_indices, assume_unique=False)
        if untrained.size:
            sample = ", ".join(str(int(i)) for i in untrained[:5])
            raise AuditInputError(
                f"{untrained.size} requested sample(s) were never in the model's training set (e.g. {sample}); "
                "only trained samples can be forgotten."
            )
        remaining = len(train_indices)
    else:
        remaining = n_train
    if arr.size >= remaining:
        raise AuditInputError("The request covers the whole training set: nothing would remain to learn from.")
    return arr


def random_request(train_indices: np.ndarray, k: int, *, seed: int = 0) -> ForgetRequest:
    """``k`` training samples drawn uniformly without replacement (seeded)."""
    train_indices = np.asarray(train_indices, dtype=np.int64)
    if not 1 <= k < len(train_indices):
        raise AuditInputError(f"--random must be between 1 and {len(train_indices) - 1} (the model trained on {len(train_indices)} samples).")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(train_indices, size=k, replace=False))
    return ForgetRequest(chosen, "random", {"k": int(k), "seed": int(seed)})


def class_request(
    train_indices: np.ndarray,
    labels: np.ndarray,
    cls: int,
    *,
    share: float = 1.0,
    seed: int = 0,
    class_names: tuple[str, ...] | None = None,
) -> ForgetRequest:
    """All of class ``cls`` among the training samples, or a seeded ``share`` of it."""
    train_indices = np.asarray(train_indices, dtype=np.int64)
    labels = np.asarray(labels)
    num_classes = len(class_names) if class_names else int(labels.max()) + 1
    if not 0 <= cls < num_classes:
        raise AuditInputError(f"Class {cls} does not exist; classes run from 0 to {num_classes - 1}.")
    if not 0 < share <= 1:
        raise AuditInputError("--share must be a fraction in (0, 1].")
    members = train_indices[labels[train_indices] == cls]
    if members.size == 0:
        raise AuditInputError(f"The model was trained on no sample of class {cls}.")
    k = max(1, round(share * members.size))
    chosen = members if k >= members.size else np.sort(np.random.default_rng(seed).choice(members, size=k, replace=False))
    params = {"class": int(cls), "share": float(share), "seed": int(seed)}
    if class_names:
        params["class_name"] = class_names[cls]
    indices = validate_indices(chosen, train_indices, int(labels.shape[0]))
    return ForgetRequest(indices, "class", params)


#: An index is written in ASCII digits only (no ``1_0``, no other scripts' digits, no signs but
#: a leading minus), and has at most this many digits (larger than any training split).
MAX_INDEX_DIGITS = 12
_INDEX_PATTERN = re.compile(rf"-?[0-9]{{1,{MAX_INDEX_DIGITS}}}")
#: The request kinds :func:`read_request` accepts from a JSON file.
KINDS = ("random", "class", "indices")


def _parse_index(value: str, source: str, entry: int) -> int:
    if not _INDEX_PATTERN.fullmatch(value):
        if re.fullmatch(r"-?[0-9]+", value):
            raise AuditInputError(f"'{value[:40]}' in {source} (entry {entry}) is far larger than any training split.")
        raise AuditInputError(f"'{value[:40]}' in {source} (entry {entry}) is not a whole number written in the digits 0-9.")
    return int(value)


def parse_indices(text: str, *, source: str = "the list") -> list[int]:
    """Indices from text: one per line (``#`` comments allowed), or a CSV with an ``index`` column.

    A leading byte-order mark is ignored; an index is ASCII digits only (see ``MAX_INDEX_DIGITS``).
    """
    text = text.removeprefix("\ufeff")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise AuditInputError(f"{source} holds no indices.")
    values: list[str]
    if "," in lines[0] or lines[0].strip().lower() == "index":
        reader = csv.DictReader(io.StringIO("\n".join(lines)))
        fieldnames = [f.strip().lower() for f in reader.fieldnames or []]
        if "index" not in fieldnames:
            raise AuditInputError(f"{source} is a CSV without an 'index' column.")
        column = (reader.fieldnames or [])[fieldnames.index("index")]
        values = [str(row.get(column) or "").strip() for row in reader]
    else:
        values = [ln.strip() for ln in lines]
    return [_parse_index(value, source, line_no) for line_no, value in enumerate(values, start=1)]


def _check_params(params: object, name: str) -> dict:
    """A request's ``params``: a JSON object of plain values (numbers, text, booleans)."""
    if not isinstance(params, dict) or not all(
        isinstance(k, str) and len(k) <= 64 and (v is None or isinstance(v, (int, float, str, bool))) and len(str(v)) <= 200
        for k, v in params.items()
    ):
        raise AuditInputError(f"'{name}' has 'params' that are not a JSON object of plain values.")
    return params


def explicit_request(indices, train_indices: np.ndarray | None, n_train: int) -> ForgetRequest:
    """A request from explicit indices (validated)."""
    return ForgetRequest(validate_indices(indices, train_indices, n_train), "indices", {})


def write_request(request: ForgetRequest, path: str | Path) -> Path:
    """Write ``request``: JSON for ``.json``, a CSV with an ``index`` column for ``.csv``,
    otherwise one index per line under ``#`` comment lines describing the request."""
    from .case import atomic_write_text

    path = Path(path)
    if path.suffix.lower() == ".json":
        text = json.dumps(request.to_dict(), indent=1)
    elif path.suffix.lower() == ".csv":
        text = "index\n" + "".join(f"{int(i)}\n" for i in request.indices)
    else:
        header = f"# MU Audit forget request: {request.describe()}\n# kind={request.kind} params={json.dumps(request.params, sort_keys=True)}\n"
        text = header + "".join(f"{int(i)}\n" for i in request.indices)
    return atomic_write_text(path, text)


def read_request(path: str | Path) -> ForgetRequest:
    """Read a request written by :func:`write_request` or a plain list/CSV of indices.

    Only the format is checked here; check it against a model with :func:`validate_indices`.
    A JSON file's ``kind`` and ``params`` are type-checked; in a text file, ``#`` lines are only
    comments (they never set the request's kind), so a text file is always ``kind="indices"``.
    """
    path = Path(path)
    if path.is_dir():
        raise AuditInputError(f"'{path}' is a folder, not a forget file; name the file of indices inside it.")
    if not path.is_file():
        raise AuditInputError(f"Forget file '{path}' does not exist.")
    if path.stat().st_size > MAX_REQUEST_BYTES:
        raise AuditInputError(f"'{path.name}' is larger than {MAX_REQUEST_BYTES // 1024**2} MiB; a forget file lists indices only.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise AuditInputError(f"'{path.name}' is not a text file of indices.") from None
    kind, params = "indices", {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            raise AuditInputError(f"'{path.name}' is not a forget-request JSON with an 'indices' list.") from None
        if not isinstance(data, dict) or not isinstance(data.get("indices"), list):
            raise AuditInputError(f"'{path.name}' is not a forget-request JSON with an 'indices' list.")
        indices = data["indices"]
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
            raise AuditInputError(f"'{path.name}' holds indices that are not whole numbers.")
        if any(abs(i) >= 10**MAX_INDEX_DIGITS for i in indices):
            raise AuditInputError(f"'{path.name}' holds an index far larger than any training split.")
        kind = data.get("kind", "indices")
        if kind not in KINDS:
            raise AuditInputError(f"'{path.name}' has kind {str(kind)[:40]!r}; a request's kind is one of {', '.join(KINDS)}.")
        params = _check_params(data.get("params", {}), path.name)
    else:
        indices = parse_indices(text, source=f"'{path.name}'")
    if not indices:
        raise AuditInputError(f"'{path.name}' holds no indices.")
    arr = np.asarray(indices, dtype=np.int64)
    if arr.min() < 0:
        raise AuditInputError(f"Forget index {int(arr.min())} in '{path.name}' is negative; indices start at 0.")
    return ForgetRequest(np.unique(arr), kind, params)
