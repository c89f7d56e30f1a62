"""Unlearning methods behind one registry and one call.

>>> from mu_core.unlearn import list_methods
>>> {"retrain", "finetune", "neggrad"} <= set(list_methods())
True

``unlearn(model, record, forget_indices, method="neggrad")`` returns an :class:`UnlearnResult`
whose ``record`` describes the new model (method, parameters, forget set) for its file.
"""

from __future__ import annotations

import copy
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .._types import Progress, report
from ..data import Dataset, DatasetSpec, load_dataset
from ..device import pick_device, seed_everything
from ..errors import AuditInputError
from ..forget import validate_indices
from ..models import ModelRecord
from ..train import accuracy

__all__ = [
    "LARGE_TRAINING_SET",
    "UnlearnContext",
    "UnlearnMethod",
    "UnlearnResult",
    "get_method",
    "list_methods",
    "method_families",
    "parse_params",
    "preset",
    "register_method",
    "typed_params",
    "unlearn",
]


@dataclass(frozen=True, eq=False)
class UnlearnContext:
    """What a method may use: the data, the original's record, the split, device and progress."""

    dataset: Dataset
    record: ModelRecord
    forget_idx: np.ndarray
    retain_idx: np.ndarray
    device: torch.device
    progress: Progress | None = None
    #: Anything a method wants recorded beside its parameters (e.g. a deviation it had to make).
    notes: dict = field(default_factory=dict)
    #: Changes to the recipe the unlearned model's record carries (e.g. SISA's new assignment).
    recipe_updates: dict = field(default_factory=dict)

    def forget_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(self.forget_idx)
        return self.dataset.x_train[idx], self.dataset.y_train[idx]

    def retain_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(self.retain_idx)
        return self.dataset.x_train[idx], self.dataset.y_train[idx]


#: From this many training samples on, a method's ``large`` preset replaces some defaults.
LARGE_TRAINING_SET = 20_000


class UnlearnMethod(ABC):
    """One unlearning algorithm. ``defaults`` documents and types its hyper-parameters;
    ``large`` overrides some of them for training sets of :data:`LARGE_TRAINING_SET` samples or
    more, where a pass over the forget or retain set costs a real share of retraining.
    ``family`` is the model family it unlearns (``classifier`` or ``diffusion``); one name may
    have an implementation per family (``retrain``, ``finetune``, ``neggrad``)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    family: ClassVar[str] = "classifier"
    exact: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}
    large: ClassVar[dict[str, Any]] = {}
    help: ClassVar[dict[str, str]] = {}

    @abstractmethod
    def run(self, model: nn.Module, ctx: UnlearnContext, **params: Any) -> nn.Module:
        """Return the unlearned model (``model`` is the caller's copy and may be changed)."""


_REGISTRY: dict[str, dict[str, type[UnlearnMethod]]] = {}
_FAMILY_WORDS = {"classifier": "classifiers", "diffusion": "diffusion models"}


def register_method(cls: type[UnlearnMethod]) -> type[UnlearnMethod]:
    """Class decorator adding a method under ``cls.name`` for its ``cls.family``."""
    _REGISTRY.setdefault(cls.name, {})[cls.family] = cls
    return cls


def list_methods(family: str | None = None) -> list[str]:
    """Method names, all of them or those that unlearn the given model family."""
    return [name for name, impls in _REGISTRY.items() if family is None or family in impls]


def method_families(name: str) -> tuple[str, ...]:
    """The model families ``name`` unlearns (``classifier``, ``diffusion``)."""
    return tuple(_REGISTRY.get(name, {}))


def _impl(name: str, family: str | None) -> type[UnlearnMethod]:
    if name not in _REGISTRY:
        raise AuditInputError(f"Unknown unlearning method '{name}'; choose one of: {', '.join(_REGISTRY)}.")
    impls = _REGISTRY[name]
    if family is None:
        return impls.get("classifier") or next(iter(impls.values()))
    if family not in impls:
        kinds = " and ".join(_FAMILY_WORDS.get(f, f) for f in impls)
        raise AuditInputError(f"'{name}' unlearns {kinds} only; for {_FAMILY_WORDS.get(family, family)} choose one of: "
                              f"{', '.join(list_methods(family))}.")
    return impls[family]


def get_method(name: str, family: str | None = None) -> UnlearnMethod:
    """The method ``name`` for a model ``family`` (default: its classifier version, if any)."""
    return _impl(name, family)()


def preset(method: str, n_train: int | None = None, family: str | None = None) -> dict[str, Any]:
    """The method's default parameters for a training set of ``n_train`` samples: ``defaults``,
    with the ``large`` preset on top from :data:`LARGE_TRAINING_SET` samples on.

    >>> preset("neggrad_plus")["epochs"], preset("neggrad_plus", 60_000)["epochs"]
    (15, 1)
    """
    impl = _impl(method, family)
    large = n_train is not None and n_train >= LARGE_TRAINING_SET
    return {**impl.defaults, **(impl.large if large else {})}


def parse_params(method: str, given: dict[str, Any] | list[str] | None, *, n_train: int | None = None,
                 family: str | None = None) -> dict[str, Any]:
    """The method's :func:`preset` for ``n_train`` training samples updated by ``given`` (a dict,
    or ``KEY=VALUE`` strings), typed like the defaults."""
    defaults = preset(method, n_train, family) if method in _REGISTRY else {}
    return typed_params(defaults, given, owner=f"'{method}'")


def typed_params(defaults: dict[str, Any], given: dict[str, Any] | list[str] | None, *, owner: str, kind: str = "Method") -> dict[str, Any]:
    """``defaults`` updated by ``given`` (a dict, or ``KEY=VALUE`` strings), each value typed like
    its default; ``kind`` and ``owner`` name what the parameters belong to in error messages
    (``Method 'neggrad' has no parameter ...``). Shared by unlearning methods and threats."""
    if isinstance(given, list):
        pairs = {}
        for item in given:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise AuditInputError(f"'{item}' is not KEY=VALUE.")
            pairs[key.strip()] = value.strip()
        given = pairs
    params = dict(defaults)
    for key, value in (given or {}).items():
        if key not in defaults:
            known = ", ".join(defaults) or "none"
            raise AuditInputError(f"{kind} {owner} has no parameter '{key}' (its parameters: {known}).")
        type_ = type(defaults[key])
        try:
            if type_ is bool and isinstance(value, str):
                params[key] = value.lower() in ("1", "true", "yes", "on")
            else:
                params[key] = type_(value)
        except (TypeError, ValueError):
            raise AuditInputError(f"Parameter '{key}' of {owner} must be a {type_.__name__}, not '{value}'.") from None
    return params


@dataclass(frozen=True, eq=False)
class UnlearnResult:
    """The unlearned model, its record (for its file) and how long unlearning took."""

    model: nn.Module
    record: ModelRecord
    method: str
    params: dict
    seconds: float


def unlearn(
    model: nn.Module,
    record: ModelRecord,
    forget_indices,
    *,
    method: str,
    params: dict[str, Any] | list[str] | None = None,
    dataset: Dataset | None = None,
    source_sha256: str | None = None,
    progress: Progress | None = None,
    device: torch.device | str | None = None,
) -> UnlearnResult:
    """Unlearn ``forget_indices`` from ``model`` (left untouched) with ``method``."""
    from ..models.ddpm import model_family

    family = model_family(record)
    impl = get_method(method, family)
    params = parse_params(method, params, n_train=len(record.train_indices), family=family)
    data = dataset or load_dataset(DatasetSpec.from_dict(record.dataset))
    forget_idx = validate_indices(forget_indices, record.train_indices, record.n_train_split)
    retain_idx = np.setdiff1d(record.train_indices, forget_idx)
    device = device if isinstance(device, torch.device) else pick_device(device)
    ctx = UnlearnContext(data, record, forget_idx, retain_idx, device, progress)

    started = time.perf_counter()
    seed_everything(int(params.get("seed", 0)))
    working = copy.deepcopy(model).to(device)
    result = impl.run(working, ctx, **params).cpu().eval()
    seconds = time.perf_counter() - started
    report(progress, 1.0, "Evaluating")

    fx, fy = ctx.forget_data()
    rx, ry = ctx.retain_data()
    if family == "diffusion":
        from ..train_diffusion import diffusion_metrics

        metrics = diffusion_metrics(result, {"forget": (fx, fy), "retain": (rx, ry), "test": (data.x_test, data.y_test)}, device=device)
        result.cpu()
    else:
        metrics = {
            "forget_acc": accuracy(result, fx, fy),
            "retain_acc": accuracy(result, rx, ry),
            "test_acc": accuracy(result, data.x_test, data.y_test),
        }
    metrics.update({"unlearn_seconds": round(seconds, 3), "device": str(device)})
    new_record = record.with_updates(
        train_indices=retain_idx,
        recipe={**record.recipe, **ctx.recipe_updates},
        metrics=metrics,
        unlearning={
            "method": method,
            "params": params,
            "forget_indices": forget_idx.tolist(),
            "source_sha256": source_sha256,
            "seconds": round(seconds, 3),
            **({"notes": ctx.notes} if ctx.notes else {}),
        },
    )
    return UnlearnResult(result, new_record, method, params, seconds)


from . import basic, diffusion, gradient, sisa, teacher  # noqa: E402,F401  (registers the methods)
