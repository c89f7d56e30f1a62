"""Membership-inference attacks behind a registry.

Every attack gives a score per sample where **higher means more member-like**, and states what
the attacker is assumed to know. ROCs are computed the same way for all of them
(:func:`mu_core.audit.metrics.roc_from_scores`, members = positives).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import AuditInputError

__all__ = ["DEFAULT_ATTACKS", "AttackInfo", "get_attack", "list_attacks", "register_attack"]

Scorer = Callable[..., np.ndarray]


@dataclass(frozen=True)
class AttackInfo:
    """A registry entry. ``scorer(model, x, y, *, device) -> scores`` (higher = member-like)."""

    name: str
    summary: str
    higher_means: str
    knowledge: str
    reference_models: bool
    scorer: Scorer = field(repr=False)


_REGISTRY: dict[str, AttackInfo] = {}

#: The attacks an audit runs when none are named: none of them trains reference models.
DEFAULT_ATTACKS: tuple[str, ...] = ("loss",)


def register_attack(name: str, *, summary: str, higher_means: str, knowledge: str, reference_models: bool = False):
    """Decorator adding a scorer under ``name``."""

    def decorate(scorer: Scorer) -> Scorer:
        _REGISTRY[name] = AttackInfo(name, summary, higher_means, knowledge, reference_models, scorer)
        return scorer

    return decorate


def list_attacks() -> list[str]:
    return list(_REGISTRY)


def get_attack(name: str) -> AttackInfo:
    if name not in _REGISTRY:
        raise AuditInputError(f"Unknown attack '{name}'; choose from: {', '.join(_REGISTRY)}.")
    return _REGISTRY[name]


@torch.no_grad()
def true_class_log_probs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, device: torch.device, batch_size: int = 1024) -> np.ndarray:
    """log p_y(x) for each sample, computed stably with log-softmax."""
    from ..train import predict_logits

    logits = predict_logits(model, x, device=device, batch_size=batch_size)
    return torch.log_softmax(logits, dim=1).gather(1, y.view(-1, 1).cpu()).squeeze(1).double().numpy()


@register_attack(
    "loss",
    summary="LOSS attack (Yeom et al. 2018): members have lower loss; one global threshold",
    higher_means="score = log p_y = -cross-entropy; higher (lower loss) = more member-like",
    knowledge="black-box: the model's output probabilities and the true label",
)
def loss_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, device: torch.device) -> np.ndarray:
    return true_class_log_probs(model, x, y, device=device)
