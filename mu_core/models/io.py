"""Model files: safetensors with our metadata; plain state dicts through ``weights_only`` loading.

Nothing is ever unpickled: safetensors holds only tensors and strings, and ``.pt``/``.pth``
files go through ``torch.load(..., weights_only=True)``, which refuses pickled code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import zipfile
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AuditInputError

FORMAT_VERSION = 1
METADATA_KEY = "mu_audit"
#: Largest safetensors header we parse (the header holds names, shapes and our metadata).
MAX_HEADER_BYTES = 64 * 1024**2


def encode_indices(indices: np.ndarray, n: int) -> dict:
    """A compact, exact encoding of a set of indices in ``range(n)``: a zlib'd bitmap."""
    mask = np.zeros(n, dtype=bool)
    mask[np.asarray(indices, dtype=np.int64)] = True
    return {"n": int(n), "count": int(mask.sum()), "bitmap_zlib_b64": base64.b64encode(zlib.compress(np.packbits(mask).tobytes(), 9)).decode()}


def decode_indices(data: dict) -> np.ndarray:
    """Inverse of :func:`encode_indices`: sorted int64 indices."""
    packed = np.frombuffer(zlib.decompress(base64.b64decode(data["bitmap_zlib_b64"])), dtype=np.uint8)
    mask = np.unpackbits(packed)[: int(data["n"])].astype(bool)
    return np.flatnonzero(mask).astype(np.int64)


@dataclass(frozen=True, eq=False)
class ModelRecord:
    """Everything we know about a model besides its weights.

    ``train_indices`` are the canonical training-split indices the model learnt from (for an
    unlearned model: the original's minus the forget set). ``unlearning`` is ``None`` for
    trained models, else ``{"method", "params", "forget_indices", "source_sha256", "seconds"}``.
    """

    arch: str
    in_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    dataset: dict
    train_indices: np.ndarray = field(repr=False)
    n_train_split: int
    recipe: dict = field(default_factory=dict)
    unlearning: dict | None = None
    metrics: dict = field(default_factory=dict)
    source: str = "mu_audit"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def forget_indices(self) -> np.ndarray | None:
        if not self.unlearning or "forget_indices" not in self.unlearning:
            return None
        return np.asarray(self.unlearning["forget_indices"], dtype=np.int64)

    def with_updates(self, **changes: Any) -> ModelRecord:
        return replace(self, **changes)

    def to_metadata(self) -> dict[str, str]:
        data = asdict(self)
        data["format_version"] = FORMAT_VERSION
        data["train_indices"] = encode_indices(self.train_indices, self.n_train_split)
        if self.unlearning and "forget_indices" in self.unlearning:
            data["unlearning"] = dict(self.unlearning)
            data["unlearning"]["forget_indices"] = encode_indices(self.unlearning["forget_indices"], self.n_train_split)
        data["in_shape"] = list(self.in_shape)
        data["class_names"] = list(self.class_names)
        return {METADATA_KEY: json.dumps(data, sort_keys=True)}

    @classmethod
    def from_metadata(cls, text: str) -> ModelRecord:
        data = json.loads(text)
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise AuditInputError("This model file was written by a newer MU Audit; update MU Audit to read it.")
        unlearning = data.get("unlearning")
        if unlearning and isinstance(unlearning.get("forget_indices"), dict):
            unlearning = dict(unlearning, forget_indices=decode_indices(unlearning["forget_indices"]).tolist())
        return cls(
            arch=data["arch"],
            in_shape=tuple(int(d) for d in data["in_shape"]),  # type: ignore[arg-type]
            class_names=tuple(data["class_names"]),
            dataset=data["dataset"],
            train_indices=decode_indices(data["train_indices"]),
            n_train_split=int(data["n_train_split"]),
            recipe=data.get("recipe", {}),
            unlearning=unlearning,
            metrics=data.get("metrics", {}),
            source=data.get("source", "mu_audit"),
        )

    def summary(self) -> dict:
        """A small JSON-friendly description for tables and reports."""
        out = {
            "arch": self.arch,
            "dataset": self.dataset.get("name"),
            "classes": len(self.class_names),
            "train_samples": len(self.train_indices),
            **{k: v for k, v in self.metrics.items() if isinstance(v, (int, float))},
        }
        if self.unlearning:
            out["method"] = self.unlearning.get("method")
        return out


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _safetensors_header(path: Path) -> dict | None:
    """The JSON header of a safetensors file, or ``None`` if the file is not one."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return None
        (length,) = struct.unpack("<Q", head)
        if not 2 <= length <= min(MAX_HEADER_BYTES, path.stat().st_size - 8):
            return None
        raw = fh.read(length)
    if not raw.lstrip().startswith(b"{"):
        return None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return header if isinstance(header, dict) else None


def read_record(path: str | Path) -> ModelRecord | None:
    """Our metadata from a safetensors file without loading weights (or torch); ``None`` if absent."""
    header = _safetensors_header(Path(path))
    if not header:
        return None
    meta = header.get("__metadata__") or {}
    if METADATA_KEY not in meta:
        return None
    try:
        return ModelRecord.from_metadata(meta[METADATA_KEY])
    except (KeyError, ValueError, TypeError, zlib.error) as exc:
        raise AuditInputError(f"'{Path(path).name}' has damaged MU Audit metadata ({exc}).") from None


def save_model(model, record: ModelRecord, path: str | Path) -> Path:
    """Write weights and ``record`` as safetensors, atomically (temp file, then rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    extra = getattr(model, "extra_tensors", None)
    if extra is not None:
        tensors.update({name: t.detach().cpu().contiguous() for name, t in extra().items()})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=record.to_metadata())
    os.replace(tmp, path)
    return path


def _load_state_dict_file(path: Path) -> dict:
    """A state dict from a ``torch.save`` file, through the weights-only unpickler."""
    import pickle
    import warnings

    import torch

    with open(path, "rb") as fh:
        head = fh.read(4)
    if not (zipfile.is_zipfile(path) or head[:1] == b"\x80"):
        raise AuditInputError(f"'{path.name}' is neither a safetensors nor a PyTorch (torch.save) file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "unsupported global" in str(exc).lower():
            raise AuditInputError(
                f"'{path.name}' holds pickled code or objects, not just weights, and was refused unopened; "
                "save model.state_dict() or a safetensors file instead."
            ) from None
        raise AuditInputError(f"'{path.name}' is a damaged PyTorch file ({str(exc).splitlines()[0]}).") from None
    except Exception as exc:  # torch raises many types on damaged files
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise AuditInputError(f"'{path.name}' is a damaged or foreign PyTorch file ({first[:200]}).") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise AuditInputError(f"'{path.name}' does not hold a state dict (a mapping of names to tensors).")
    return obj


def _strip_prefix(state: dict) -> dict:
    for prefix in ("module.", "_orig_mod.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _load_weights(model, state: dict, name: str, arch: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(f"'{k}' has shape {tuple(state[k].shape)}, expected {tuple(own[k].shape)}")
        if missing:
            parts.append(f"{len(missing)} weight(s) missing (e.g. '{missing[0]}')")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected weight(s) (e.g. '{unexpected[0]}')")
        raise AuditInputError(
            f"'{name}' does not fit architecture '{arch}' for this dataset: {'; '.join(parts)}; "
            "check the architecture and dataset you named."
        )
    model.load_state_dict(state, strict=True)


def load_model(
    path: str | Path,
    *,
    arch: str | None = None,
    dataset: Any = None,
    data_root: str | None = None,
):
    """Load a model file; returns ``(model, record)`` with the model in eval mode on the CPU.

    ``.safetensors`` written by MU Audit carry their own metadata. A plain state dict
    (``.pt``/``.pth``, or safetensors without our metadata) needs ``arch`` and ``dataset``; its
    training set is then taken to be the dataset's whole training split.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..data import DatasetSpec, load_dataset
    from .sisa import CKPT_PREFIX, model_from_record

    path = Path(path)
    if not path.is_file():
        raise AuditInputError(f"Model file '{path}' does not exist.")
    header = _safetensors_header(path)
    record = read_record(path) if header else None
    if header is not None:
        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise AuditInputError(f"'{path.name}' is a damaged safetensors file ({exc}).") from None
    else:
        state = _load_state_dict_file(path)
    state = _strip_prefix(state)

    if record is None:
        if not arch or dataset is None:
            raise AuditInputError(
                f"'{path.name}' is a plain state dict without MU Audit metadata: name its architecture "
                "and dataset (--arch and --dataset)."
            )
        from ..data import Dataset

        if isinstance(dataset, Dataset):
            data = dataset
        else:
            data = load_dataset(dataset if isinstance(dataset, DatasetSpec) else DatasetSpec(str(dataset), data_root))
        record = ModelRecord(
            arch=arch,
            in_shape=data.in_shape,
            class_names=data.class_names,
            dataset=data.spec.to_dict(),
            train_indices=np.arange(data.n_train, dtype=np.int64),
            n_train_split=data.n_train,
            recipe={"note": "unknown: imported state dict; training set taken to be the whole training split"},
            source="state_dict",
        )
    elif arch and arch != record.arch:
        raise AuditInputError(f"'{path.name}' holds a '{record.arch}' model, not '{arch}'.")
    model = model_from_record(record)
    checkpoints = {k[len(CKPT_PREFIX) :]: state.pop(k) for k in [k for k in state if k.startswith(CKPT_PREFIX)]}
    _load_weights(model, state, path.name, record.arch)
    if checkpoints:
        model.checkpoints = checkpoints
    model.eval()
    return model, record
