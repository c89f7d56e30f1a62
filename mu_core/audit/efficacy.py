"""Unlearning efficacy metrics as the SalUn paper reports them: UA, RA, TA, MIA-efficacy, Avg. Gap.

All values are fractions in [0, 1] (the papers print them in percent).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data import Dataset
from ..train import accuracy, predict_logits

__all__ = ["METRIC_KEYS", "avg_gap", "confidence_svc", "efficacy_metrics", "mia_efficacy", "modified_entropy"]

#: The metrics Avg. Gap averages over.
METRIC_KEYS = ("ua", "ra", "ta", "mia_efficacy")
#: Largest number of samples per side the SVC is fitted on (an RBF SVC is quadratic in samples).
SVC_MAX_PER_SIDE = 2000


def modified_entropy(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-30) -> np.ndarray:
    """Song & Mittal (2021): Mentr = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i).

    Lower means more member-like. (A widely copied implementation writes log(p_i) where the
    formula has log(1 - p_i); this one follows the paper.)

    >>> round(float(modified_entropy(np.array([[0.7, 0.2, 0.1]]), np.array([0]))[0]), 4)
    0.1622
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    rows = np.arange(len(labels))
    p_y = probs[rows, labels]
    other = probs.copy()
    other[rows, labels] = 0.0
    term_y = -(1.0 - p_y) * np.log(np.maximum(p_y, eps))
    term_other = -np.sum(other * np.log(np.maximum(1.0 - other, eps)), axis=1)
    return term_y + term_other


def confidence_svc():
    """SalUn's MIA-efficacy classifier: an RBF SVC (C = 3, gamma "auto") on one confidence feature."""
    from sklearn.svm import SVC

    return SVC(C=3, gamma="auto", kernel="rbf")


def _features(model: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str, device: torch.device) -> np.ndarray:
    probs = torch.softmax(predict_logits(model, x, device=device), dim=1).double().numpy()
    labels = y.cpu().numpy()
    if kind == "confidence":
        return probs[np.arange(len(labels)), labels][:, None]
    if kind == "modified_entropy":
        return -modified_entropy(probs, labels)[:, None]
    raise ValueError(f"unknown MIA-efficacy feature '{kind}'")


def mia_efficacy(
    model: nn.Module,
    data: Dataset,
    retain_idx: np.ndarray,
    forget_idx: np.ndarray,
    *,
    feature: str = "confidence",
    seed: int = 0,
    device: torch.device | None = None,
) -> float:
    """SalUn's MIA-efficacy: the share of the forget set an SVC calls *non-members*.

    An RBF SVC is trained on the model's ``feature`` (true-class confidence, as SalUn reports,
    or the modified entropy) with retain samples as members and test samples as non-members,
    equally many of each (at most :data:`SVC_MAX_PER_SIDE`, seeded). Its ideal is the retrained
    model's value, not 1.
    """
    device = device or torch.device("cpu")
    rng = np.random.default_rng(seed)
    n = min(len(retain_idx), data.n_test, SVC_MAX_PER_SIDE)
    shadow_in = np.sort(rng.choice(retain_idx, size=n, replace=False))
    shadow_out = np.sort(rng.choice(data.n_test, size=n, replace=False))
    x_in = _features(model, data.x_train[torch.from_numpy(shadow_in)], data.y_train[torch.from_numpy(shadow_in)], feature, device)
    x_out = _features(model, data.x_test[torch.from_numpy(shadow_out)], data.y_test[torch.from_numpy(shadow_out)], feature, device)
    svc = confidence_svc()
    svc.fit(np.r_[x_in, x_out], np.r_[np.ones(n), np.zeros(n)])
    fidx = torch.from_numpy(np.asarray(forget_idx))
    predicted = svc.predict(_features(model, data.x_train[fidx], data.y_train[fidx], feature, device))
    return float(1.0 - predicted.mean())


def efficacy_metrics(
    model: nn.Module,
    data: Dataset,
    retain_idx: np.ndarray,
    forget_idx: np.ndarray,
    *,
    forgotten_class: int | None = None,
    seed: int = 0,
    device: torch.device | None = None,
) -> dict[str, float]:
    """UA = 1 - forget accuracy, RA = retain accuracy, TA = test accuracy (for a whole-class
    request, on the other classes), and MIA-efficacy."""
    device = device or torch.device("cpu")
    fidx, ridx = torch.from_numpy(np.asarray(forget_idx)), torch.from_numpy(np.asarray(retain_idx))
    if forgotten_class is None:
        tx, ty = data.x_test, data.y_test
    else:
        keep = data.y_test != forgotten_class
        tx, ty = data.x_test[keep], data.y_test[keep]
    return {
        "ua": 1.0 - accuracy(model, data.x_train[fidx], data.y_train[fidx], device=device),
        "ra": accuracy(model, data.x_train[ridx], data.y_train[ridx], device=device),
        "ta": accuracy(model, tx, ty, device=device),
        "mia_efficacy": mia_efficacy(model, data, retain_idx, forget_idx, seed=seed, device=device),
    }


def avg_gap(metrics: dict[str, float], reference: dict[str, float]) -> float:
    """Mean absolute difference to the reference (retraining) over UA, RA, TA and MIA-efficacy."""
    return float(np.mean([abs(metrics[k] - reference[k]) for k in METRIC_KEYS]))
