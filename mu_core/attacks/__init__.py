"""Membership-inference attacks behind a registry.

Every ROC-type attack gives a score per sample where **higher means more member-like**, and
states what the attacker is assumed to know. ROCs are computed the same way for all of them
(:func:`mu_core.audit.metrics.roc_from_scores`, members = positives). Attacks of another kind
(``kaggle_epsilon``) return their own documented numbers instead.

A scorer receives an :class:`AttackContext` (the models, the members and non-members, the
data, the reference models on demand) and a model role; it returns ``(member_scores,
nonmember_scores)``, or ``None`` when it does not apply to that role (``deletion_inference``
has nothing to compare the original with).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .._types import Progress
from ..errors import AuditInputError

__all__ = [
    "ALL_KNOWLEDGE",
    "DEFAULT_ATTACKS",
    "AttackContext",
    "AttackInfo",
    "AttackNotApplicable",
    "get_attack",
    "list_attacks",
    "register_attack",
]

Scorer = Callable[..., Any]


class AttackNotApplicable(Exception):
    """An attack cannot run on this audit (e.g. no unlearning method to replicate); the message says why."""


@dataclass(frozen=True)
class AttackInfo:
    """A registry entry.

    ``kind`` is ``"roc"`` (``scorer(ctx, role) -> (members, nonmembers) | None``) or
    ``"summary"`` (``scorer(ctx) -> dict`` of documented keys). ``verdict`` says whether the
    attack takes part in the forgotten / not-forgotten verdict (attacks that measure the
    *deletion* rather than membership in one model do not).
    """

    name: str
    summary: str
    higher_means: str
    knowledge: str
    reference_models: bool
    scorer: Scorer = field(repr=False)
    kind: str = "roc"
    needs_method: bool = False
    verdict: bool = True


_REGISTRY: dict[str, AttackInfo] = {}

#: The attacks an audit runs when none are named: none of them trains reference models.
DEFAULT_ATTACKS: tuple[str, ...] = ("loss", "confidence", "entropy", "modified_entropy")
#: Shown in the app: what each knowledge level means.
ALL_KNOWLEDGE = ("black-box outputs", "reference data", "weights", "the unlearning method")


def register_attack(
    name: str,
    *,
    summary: str,
    higher_means: str,
    knowledge: str,
    reference_models: bool = False,
    kind: str = "roc",
    needs_method: bool = False,
    verdict: bool = True,
):
    """Decorator adding a scorer under ``name``."""

    def decorate(scorer: Scorer) -> Scorer:
        _REGISTRY[name] = AttackInfo(name, summary, higher_means, knowledge, reference_models, scorer, kind, needs_method, verdict)
        return scorer

    return decorate


def list_attacks() -> list[str]:
    return list(_REGISTRY)


def get_attack(name: str) -> AttackInfo:
    if name not in _REGISTRY:
        raise AuditInputError(f"Unknown attack '{name}'; choose from: {', '.join(_REGISTRY)}.")
    return _REGISTRY[name]


@dataclass(eq=False)
class AttackContext:
    """Everything an attack may use. ``member_idx`` index the training split, ``nonmember_idx``
    the test split; ``pool_idx`` is the held-out pool non-members were drawn from."""

    models: dict[str, nn.Module]
    records: dict[str, Any]
    data: Any
    member_idx: np.ndarray
    nonmember_idx: np.ndarray
    pool_idx: np.ndarray
    device: torch.device
    seed: int = 0
    reference_count: int = 16
    reference_dir: Any = None
    batched: bool | None = None
    method: str | None = None
    method_params: dict | None = None
    progress: Progress | None = None
    #: Attack options, e.g. ``lira_variance`` ("fixed" | "per_example"), ``rmia_gamma``, ``rmia_a``.
    options: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)

    @property
    def original_record(self):
        return self.records["original"]

    def member_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(self.member_idx)
        return self.data.x_train[idx], self.data.y_train[idx]

    def nonmember_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(self.nonmember_idx)
        return self.data.x_test[idx], self.data.y_test[idx]

    def logits(self, role: str, which: str, augmented: bool = False) -> torch.Tensor:
        """Cached logits of a model on the members or non-members, ``(A, N, C)`` when augmented."""
        from .features import augmentations, logits_under

        key = ("logits", role, which, augmented)
        if key not in self.cache:
            x, _ = self.member_data() if which == "members" else self.nonmember_data()
            augs = augmentations(self.data.spec.name, self.data.in_shape) if augmented else augmentations(None, None)
            self.cache[key] = logits_under(self.models[role], x, augs, device=self.device)
        return self.cache[key]

    def labels(self, which: str) -> torch.Tensor:
        return (self.member_data() if which == "members" else self.nonmember_data())[1]

    def references(self):
        """The reference models (trained on first use, or loaded from ``reference_dir``)."""
        if "references" not in self.cache:
            from ..models.ddpm import model_family
            from .reference import get_references

            if model_family(self.original_record) != "classifier":
                raise AttackNotApplicable("its reference models are classifiers; for a diffusion model use gsa1 or gsa2")
            self.cache["references"] = get_references(self)
        return self.cache["references"]

    def unlearning_method(self) -> tuple[str, dict]:
        """The method to replicate: ``method`` if given, else the unlearned model's record."""
        if self.method:
            from ..unlearn import parse_params

            return self.method, parse_params(self.method, self.method_params or {})
        record = self.records.get("unlearned")
        recorded = (record.unlearning or {}) if record is not None else {}
        if recorded.get("method"):
            return str(recorded["method"]), dict(recorded.get("params") or {})
        raise AttackNotApplicable(
            "the unlearning method is unknown: pass --method NAME (or choose it on the page); "
            "the unlearned model's file does not record one"
        )


from . import threshold  # noqa: E402,F401,I001  (registers the attacks, in this order)
from . import label_only, learned, reference_attacks, unlearning  # noqa: E402, F401
from . import diffusion  # noqa: E402, F401
