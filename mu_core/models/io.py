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
#: Bounds on metadata, checked before anything is allocated from it.
MAX_TRAIN_SAMPLES = 20_000_000
MAX_CLASSES = 100_000
MAX_CHANNELS = 4
MAX_SIDE = 4096
MAX_INPUT_VALUES = 3 * 1024 * 1024
MAX_SISA_SHARDS = 256
MAX_SISA_SLICES = 100
#: Metadata keys holding wall-clock times: kept out of the model file (see :func:`save_model`).
TIMING_KEYS = ("train_seconds", "unlearn_seconds", "seconds")
#: Weight dtypes a model file may hold (safetensors names); integers only where the model has an integer buffer.
FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}


def encode_indices(indices: np.ndarray, n: int) -> dict:
    """A compact, exact encoding of a set of indices in ``range(n)``: a zlib'd bitmap."""
    mask = np.zeros(n, dtype=bool)
    mask[np.asarray(indices, dtype=np.int64)] = True
    return {"n": int(n), "count": int(mask.sum()), "bitmap_zlib_b64": base64.b64encode(zlib.compress(np.packbits(mask).tobytes(), 9)).decode()}


def decode_indices(data: dict, n: int | None = None) -> np.ndarray:
    """Inverse of :func:`encode_indices`: sorted int64 indices.

    Nothing is allocated before it is bounded: ``n`` must lie in ``1..MAX_TRAIN_SAMPLES`` (and
    equal the given ``n``, the dataset's size, when one is given), and the bitmap is inflated to
    at most ``ceil(n / 8)`` bytes, so a zlib bomb costs no more than an honest bitmap.
    Raises :class:`MetadataError` with the reason.
    """
    if not isinstance(data, dict):
        raise MetadataError("an index bitmap is not a JSON object")
    size = _int_field(data, "n", 1, MAX_TRAIN_SAMPLES, "an index bitmap's n")
    if n is not None and size != n:
        raise MetadataError(f"an index bitmap covers {size} samples, not the {n} of the training split")
    text = data.get("bitmap_zlib_b64")
    if not isinstance(text, str) or len(text) > MAX_HEADER_BYTES:
        raise MetadataError("an index bitmap has no 'bitmap_zlib_b64' text")
    try:
        compressed = base64.b64decode(text, validate=True)
    except ValueError:
        raise MetadataError("an index bitmap is not valid base64") from None
    expected = (size + 7) // 8
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(compressed, expected)
    except zlib.error:
        raise MetadataError("an index bitmap is not valid zlib data") from None
    if len(raw) != expected or inflater.unconsumed_tail or not inflater.eof:
        raise MetadataError(f"an index bitmap does not inflate to exactly {expected} bytes for {size} samples")
    mask = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
    if mask[size:].any():
        raise MetadataError(f"an index bitmap marks samples past its n = {size}")
    indices = np.flatnonzero(mask[:size]).astype(np.int64)
    if "count" in data and _int_field(data, "count", 0, size, "an index bitmap's count") != indices.size:
        raise MetadataError("an index bitmap's count does not match its bits")
    return indices


class MetadataError(ValueError):
    """A reason MU Audit metadata is unusable; :func:`read_record` turns it into one sentence."""


def _int_field(data: dict, key: str, low: int, high: int, what: str | None = None) -> int:
    """``data[key]`` as an int in ``[low, high]`` (JSON ints only: no bools, floats or strings)."""
    value = data.get(key)
    what = what or f"'{key}'"
    if isinstance(value, bool) or not isinstance(value, int):
        raise MetadataError(f"{what} is not a whole number")
    if not low <= value <= high:
        raise MetadataError(f"{what} is {value}, outside {low}..{high}")
    return value


def _str_field(value: Any, what: str, max_len: int = 200) -> str:
    if not isinstance(value, str) or not value or len(value) > max_len or "\x00" in value:
        raise MetadataError(f"{what} is not a short text")
    return value


def _dict_field(data: dict, key: str, *, optional: bool = True) -> dict | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, dict):
        raise MetadataError(f"'{key}' is not a JSON object")
    return value


#: The training recipe's numbers a retrain would use, with their bounds: (type, low, high).
_RECIPE_BOUNDS: dict[str, tuple[type, float, float]] = {
    "epochs": (int, 0, 10_000),
    "batch_size": (int, 1, 65_536),
    "lr": (float, 0.0, 10.0),
    "momentum": (float, 0.0, 1.0),
    "weight_decay": (float, 0.0, 10.0),
    "seed": (int, 0, 2**63 - 1),
    "train_size": (int, 1, MAX_TRAIN_SAMPLES),
}


def _check_recipe(recipe: dict) -> None:
    """Range-check the recipe fields a retrain reads (a file must not ask for 10^9 epochs)."""
    for key, (kind, low, high) in _RECIPE_BOUNDS.items():
        value = recipe.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
            raise MetadataError(f"'recipe.{key}' is not a {'whole ' if kind is int else ''}number")
        if not low <= value <= high:  # NaN fails this too
            raise MetadataError(f"'recipe.{key}' is {value}, outside {low}..{high}")
    if recipe.get("optimizer") is not None:
        _str_field(recipe["optimizer"], "'recipe.optimizer'", 32)


def _check_sisa(recipe: dict, n: int) -> None:
    """Range-check a SISA recipe (shards, slices, aggregate and every slice's bitmap)."""
    sisa = recipe.get("sisa")
    if not sisa:
        return
    if not isinstance(sisa, dict):
        raise MetadataError("'recipe.sisa' is not a JSON object")
    shards = _int_field(sisa, "shards", 1, MAX_SISA_SHARDS, "'recipe.sisa.shards'")
    slices = _int_field(sisa, "slices", 1, MAX_SISA_SLICES, "'recipe.sisa.slices'")
    if sisa.get("aggregate", "mean") not in ("mean", "vote"):
        raise MetadataError("'recipe.sisa.aggregate' is neither mean nor vote")
    assignment = sisa.get("assignment")
    if not isinstance(assignment, list) or len(assignment) != shards or not all(isinstance(s, list) and len(s) == slices for s in assignment):
        raise MetadataError(f"'recipe.sisa.assignment' is not {shards} shards of {slices} slices")
    for shard in assignment:
        for part in shard:
            decode_indices(part, n)


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
        """Parse our metadata, type- and range-checking every field before using it.

        Raises :class:`MetadataError` (a reason) or :class:`AuditInputError` (newer format).
        """
        try:
            data = json.loads(text)
        except RecursionError:
            raise MetadataError("it nests too deeply") from None
        if not isinstance(data, dict):
            raise MetadataError(f"it is a JSON {type(data).__name__}, not an object")
        version = data.get("format_version", 0)
        if isinstance(version, bool) or not isinstance(version, int):
            raise MetadataError("'format_version' is not a whole number")
        if version > FORMAT_VERSION:
            raise AuditInputError("This model file was written by a newer MU Audit; update MU Audit to read it.")
        arch = _str_field(data.get("arch"), "'arch'", 64)
        shape = data.get("in_shape")
        if not isinstance(shape, list) or len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise MetadataError("'in_shape' is not three whole numbers (channels, height, width)")
        if not (1 <= shape[0] <= MAX_CHANNELS and 1 <= shape[1] <= MAX_SIDE and 1 <= shape[2] <= MAX_SIDE) or shape[0] * shape[1] * shape[2] > MAX_INPUT_VALUES:
            raise MetadataError(f"'in_shape' {tuple(shape)} is out of range (at most {MAX_CHANNELS} channels, {MAX_SIDE} pixels a side, {MAX_INPUT_VALUES} values)")
        names = data.get("class_names")
        if not isinstance(names, list) or not 2 <= len(names) <= MAX_CLASSES:
            raise MetadataError(f"'class_names' is not a list of 2 to {MAX_CLASSES} names")
        for name in names:
            _str_field(name, "a class name", 255)
        dataset = _dict_field(data, "dataset", optional=False)
        assert dataset is not None
        _str_field(dataset.get("name"), "'dataset.name'", 64)
        if dataset.get("root") is not None:
            _str_field(dataset["root"], "'dataset.root'", 4096)
        n = _int_field(data, "n_train_split", 1, MAX_TRAIN_SAMPLES)
        train_indices = decode_indices(data.get("train_indices"), n)
        if train_indices.size == 0:
            raise MetadataError("the model was trained on 0 samples")
        recipe = _dict_field(data, "recipe") or {}
        _check_recipe(recipe)
        _check_sisa(recipe, n)
        metrics = _dict_field(data, "metrics") or {}
        unlearning = _dict_field(data, "unlearning")
        if unlearning is not None:
            _str_field(unlearning.get("method"), "'unlearning.method'", 64)
            if unlearning.get("params") is not None and not isinstance(unlearning["params"], dict):
                raise MetadataError("'unlearning.params' is not a JSON object")
            if "forget_indices" in unlearning:
                forget = unlearning["forget_indices"]
                if isinstance(forget, dict):
                    forget = decode_indices(forget, n).tolist()
                elif not isinstance(forget, list) or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n for i in forget):
                    raise MetadataError(f"'unlearning.forget_indices' is not a list of indices below {n}")
                unlearning = dict(unlearning, forget_indices=forget)
        source = data.get("source", "mu_audit")
        return cls(
            arch=arch,
            in_shape=(shape[0], shape[1], shape[2]),
            class_names=tuple(names),
            dataset=dataset,
            train_indices=train_indices,
            n_train_split=n,
            recipe=recipe,
            unlearning=unlearning,
            metrics=metrics,
            source=_str_field(source, "'source'", 64),
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
    path = Path(path)
    header = _safetensors_header(path)
    if not header:
        return None
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or METADATA_KEY not in meta:
        return None
    if not isinstance(meta[METADATA_KEY], str):
        raise AuditInputError(f"'{path.name}' has damaged MU Audit metadata (it is not text).")
    try:
        record = ModelRecord.from_metadata(meta[METADATA_KEY])
    except AuditInputError:
        raise
    except (MetadataError, KeyError, ValueError, TypeError, zlib.error) as exc:
        raise AuditInputError(f"'{path.name}' has damaged MU Audit metadata: {exc}.") from None
    return record


def _without_timings(record: ModelRecord) -> ModelRecord:
    """The record without wall-clock times (``metrics.*_seconds`` and ``unlearning.seconds``)."""
    metrics = {k: v for k, v in record.metrics.items() if k not in TIMING_KEYS}
    unlearning = record.unlearning
    if unlearning and "seconds" in unlearning:
        unlearning = {k: v for k, v in unlearning.items() if k != "seconds"}
    return record.with_updates(metrics=metrics, unlearning=unlearning)


def save_model(model, record: ModelRecord, path: str | Path) -> Path:
    """Write weights and ``record`` as safetensors, atomically (temp file, then rename).

    The file is deterministic: identical weights and record give an identical SHA-256, so a
    replayed audit can prove it used the same models. Wall-clock times (``train_seconds``,
    ``unlearn_seconds``, ``unlearning.seconds``) are therefore left out of the file; they stay
    in the in-memory record the caller holds (and so in a case's ``summary``).
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    extra = getattr(model, "extra_tensors", None)
    if extra is not None:
        tensors.update({name: t.detach().cpu().contiguous() for name, t in extra().items()})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=_without_timings(record).to_metadata())
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


def _header_shapes(header: dict, name: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{tensor name: (safetensors dtype, shape)}`` from a header, every entry type-checked."""
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        dtype = info.get("dtype") if isinstance(info, dict) else None
        if not isinstance(dtype, str) or not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise AuditInputError(f"'{name}' is a damaged safetensors file (entry '{str(key)[:80]}' has no valid dtype and shape).")
        out[key] = (dtype, tuple(shape))
    return out


def _expected_tensors(record: ModelRecord) -> dict[str, tuple[bool, tuple[int, ...]]]:
    """``{name: (is_float, shape)}`` the record's model holds, found by building it on the meta
    device: no memory is allocated, however large the record says the model is."""
    import torch

    from .sisa import CKPT_PREFIX, model_from_record

    with torch.device("meta"):
        skeleton = model_from_record(record)
    expected = {k: (v.is_floating_point(), tuple(v.shape)) for k, v in skeleton.state_dict().items()}
    sisa = record.recipe.get("sisa") if isinstance(record.recipe, dict) else None
    if sisa:
        for s in range(int(sisa["shards"])):
            for r in range(int(sisa["slices"]) - 1):
                for key, value in skeleton.shards[s].state_dict().items():
                    expected[f"{CKPT_PREFIX}{s}.{r}.{key}"] = (value.is_floating_point(), tuple(value.shape))
    return expected


def _check_against(expected: dict[str, tuple[bool, tuple[int, ...]]], found: dict[str, tuple[bool, tuple[int, ...]]], name: str, arch: str) -> None:
    """One sentence when the file's tensors do not fit the model (names, shapes, float vs integer)."""
    from .sisa import CKPT_PREFIX

    missing = [k for k in expected if k not in found and not k.startswith(CKPT_PREFIX)]
    unexpected = [k for k in found if k not in expected]
    wrong = [k for k in expected if k in found and found[k][1] != expected[k][1]]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(f"'{k}' has shape {found[k][1]}, expected {expected[k][1]}")
        if missing:
            parts.append(f"{len(missing)} weight(s) missing (e.g. '{missing[0]}')")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected weight(s) (e.g. '{unexpected[0][:80]}')")
        raise AuditInputError(
            f"'{name}' does not fit architecture '{arch}' for this dataset: {'; '.join(parts)}; "
            "check the architecture and dataset you named."
        )
    for key, (is_float, _) in expected.items():
        if key in found and is_float and not found[key][0]:
            raise AuditInputError(
                f"'{name}' holds integer or boolean weights ('{key}'), where the model has floating-point ones; "
                "save the trained model's own float weights."
            )


def _check_finite(state: dict, name: str) -> None:
    import torch

    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise AuditInputError(f"'{name}' holds NaN or infinite weights (first in '{key}'); the model is broken, retrain or re-export it.")


def check_record_dataset(record: ModelRecord, data: Any, name: str) -> None:
    """Refuse a record that does not describe ``data``: sample count, input shape, classes."""
    if record.n_train_split != data.n_train:
        raise AuditInputError(
            f"'{name}' says its training split has {record.n_train_split} samples, but dataset "
            f"'{data.spec.name}' has {data.n_train}; it was trained on other data."
        )
    if tuple(record.in_shape) != tuple(data.in_shape) or record.num_classes != data.num_classes:
        raise AuditInputError(
            f"'{name}' takes inputs {tuple(record.in_shape)} with {record.num_classes} classes, but dataset "
            f"'{data.spec.name}' has {tuple(data.in_shape)} with {data.num_classes}; it was trained on other data."
        )


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

    Hostile files cost nothing: the metadata is range-checked, the model the record describes is
    built on the meta device and compared with the file's tensor names, shapes and dtypes (from
    the safetensors header, before any weight is read), and only then are the weights loaded,
    checked to be finite, and the real model built. The record's dataset is checked against the
    dataset when that can be loaded (a model file never chooses the folder it is read from).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..data import DatasetSpec, load_dataset
    from .sisa import CKPT_PREFIX, model_from_record

    path = Path(path)
    if path.is_dir():
        raise AuditInputError(f"'{path}' is a folder, not a model file; name the .safetensors or .pt file itself.")
    if not path.is_file():
        raise AuditInputError(f"Model file '{path}' does not exist.")
    header = _safetensors_header(path)
    record = read_record(path) if header else None
    data = None
    if header is None and path.suffix.lower() == ".safetensors":
        with open(path, "rb") as fh:
            head = fh.read(2)
        if head[:1] == b"\x80" or zipfile.is_zipfile(path):
            raise AuditInputError(
                f"'{path.name}' is named .safetensors but is a pickle (torch.save) file; MU Audit never runs pickles: "
                "rename it .pt and name its architecture and dataset, or save it with safetensors."
            )
        raise AuditInputError(f"'{path.name}' is not a safetensors file (its header is missing or damaged).")
    # a torch.save file is opened first (weights only: pickled code is refused unopened), so a
    # pickle is named as such before anything else is asked; its size is bounded by the file's
    state = _load_state_dict_file(path) if header is None else None
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
    expected = _expected_tensors(record)
    if header is not None:
        shapes = _header_shapes(header, path.name)
        prefix = next((p for p in ("module.", "_orig_mod.", "model.") if shapes and all(k.startswith(p) for k in shapes)), "")
        found = {k[len(prefix):]: (dtype in FLOAT_DTYPES, shape) for k, (dtype, shape) in shapes.items()}
        _check_against(expected, found, path.name, record.arch)
        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise AuditInputError(f"'{path.name}' is a damaged safetensors file ({exc}).") from None
    assert state is not None
    state = _strip_prefix(state)
    _check_against(expected, {k: (v.is_floating_point(), tuple(v.shape)) for k, v in state.items()}, path.name, record.arch)
    _check_finite(state, path.name)
    if data is None and data_root:  # the user's folder for the dataset the file names
        data = load_dataset(DatasetSpec(str(record.dataset["name"]), data_root))
        record = record.with_updates(dataset=data.spec.to_dict())
    elif data is None:
        try:
            data = load_dataset(DatasetSpec.from_dict(record.dataset))
        except AuditInputError:
            data = None  # not available here: checked where the data is loaded
    if data is not None:
        check_record_dataset(record, data, path.name)
    model = model_from_record(record)
    checkpoints = {k[len(CKPT_PREFIX) :]: state.pop(k) for k in [k for k in state if k.startswith(CKPT_PREFIX)]}
    model.load_state_dict(state, strict=True)
    if checkpoints:
        model.checkpoints = checkpoints
    model.eval()
    return model, record
