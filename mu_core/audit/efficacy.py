"""Unlearning efficacy metrics as the SalUn paper reports them: UA, RA, TA, MIA-efficacy, Avg. Gap.

All values are fractions in [0, 1] (the papers print them in percent).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ..attacks.features import SVC_RESOLUTION, confidence_svc, fit_confidence_svc, modified_entropy
from ..data import Dataset
from ..train import predict_logits

__all__ = [
    "METRIC_KEYS",
    "MIA_DRAWS",
    "avg_gap",
    "confidence_svc",
    "efficacy_metrics",
    "fit_confidence_svc",
    "mia_efficacy",
    "modified_entropy",
]

#: The metrics Avg. Gap averages over.
METRIC_KEYS = ("ua", "ra", "ta", "mia_efficacy")
#: Shadow draws MIA-efficacy is averaged over (see :func:`mia_efficacy`).
MIA_DRAWS = 16
def _probs(model: nn.Module, x: torch.Tensor, device: torch.device) -> np.ndarray:
    return torch.softmax(predict_logits(model, x, device=device), dim=1).double().numpy()


def _split_probs(model: nn.Module, data: Dataset, ridx: np.ndarray, fidx: np.ndarray, device: torch.device) -> dict[str, np.ndarray]:
    """Softmax outputs on the retain, test and forget splits (one forward pass each)."""
    return {
        "retain": _probs(model, data.x_train[torch.from_numpy(ridx)], device),
        "test": _probs(model, data.x_test, device),
        "forget": _probs(model, data.x_train[torch.from_numpy(fidx)], device),
    }


def _feature(probs: np.ndarray, labels: np.ndarray, kind: str) -> np.ndarray:
    if kind == "confidence":
        return probs[np.arange(len(labels)), labels]
    if kind == "modified_entropy":
        return -modified_entropy(probs, labels)
    raise ValueError(f"unknown MIA-efficacy feature '{kind}'")


def _efficacy_draws(retain: np.ndarray, test: np.ndarray, forget: np.ndarray, *, draws: int, seed: int) -> np.ndarray:
    """Per draw: the share of ``forget`` an SVC fitted on equally many retain (members) and test
    (non-members) feature values calls non-members."""
    n = min(len(retain), len(test))
    # The SVC sees rounded values (see fit_confidence_svc); ask it once per distinct one.
    queries, where = np.unique(np.round(forget / SVC_RESOLUTION) * SVC_RESOLUTION, return_inverse=True)
    out = np.empty(draws)
    for k in range(draws):
        rng = np.random.default_rng([seed, k])
        members = retain[rng.choice(len(retain), n, replace=False)]
        nonmembers = test if len(test) == n else test[rng.choice(len(test), n, replace=False)]
        out[k] = 1.0 - fit_confidence_svc(members, nonmembers).predict(queries[:, None])[where].mean()
    return out


def mia_efficacy(
    model: nn.Module,
    data: Dataset,
    retain_idx: np.ndarray,
    forget_idx: np.ndarray,
    *,
    feature: str = "confidence",
    draws: int = MIA_DRAWS,
    seed: int = 0,
    device: torch.device | None = None,
) -> float:
    """SalUn's MIA-efficacy: the share of the forget set an SVC calls *non-members*.

    An RBF SVC is trained on the model's ``feature`` (true-class confidence, as SalUn reports,
    or the modified entropy) with retain samples as members and test samples as non-members,
    equally many of each (every test sample where the retain set is larger, as SalUn does). Its
    ideal is the retrained model's value, not 1.

    Deviation: the value is the mean over ``draws`` seeded draws of the members. Where a model
    barely overfits, members and non-members overlap and the SVC's boundary swings with the
    sample: on the Fashion-MNIST cnn one draw ranges from 10% to 30% for the same model (the
    standard deviation over draws is about 6 points at 10,000 per side), more than the gaps
    between methods. :func:`efficacy_metrics` also reports the standard error of the mean.
    """
    device = device or torch.device("cpu")
    with _evaluated_on(model, device):
        return float(_mia_draws(model, data, retain_idx, forget_idx, feature=feature, draws=draws, seed=seed, device=device).mean())


@contextmanager
def _evaluated_on(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Run ``model`` on ``device`` inside the block; it goes back where it was afterwards."""
    home = next(model.parameters()).device
    model.to(device)
    try:
        yield
    finally:
        model.to(home)


def _mia_draws(model, data, retain_idx, forget_idx, *, feature, draws, seed, device, probs=None) -> np.ndarray:
    ridx, fidx = np.asarray(retain_idx), np.asarray(forget_idx)
    if probs is None:
        probs = _split_probs(model, data, ridx, fidx, device)
    labels = {"retain": data.y_train.numpy()[ridx], "test": data.y_test.numpy(), "forget": data.y_train.numpy()[fidx]}
    values = {k: _feature(probs[k], labels[k], feature) for k in probs}
    return _efficacy_draws(values["retain"], values["test"], values["forget"], draws=max(1, int(draws)), seed=seed)


def efficacy_metrics(
    model: nn.Module,
    data: Dataset,
    retain_idx: np.ndarray,
    forget_idx: np.ndarray,
    *,
    forgotten_class: int | None = None,
    seed: int = 0,
    draws: int = MIA_DRAWS,
    device: torch.device | None = None,
) -> dict[str, float]:
    """UA = 1 - forget accuracy, RA = retain accuracy, TA = test accuracy (for a whole-class
    request, on the other classes), MIA-efficacy (:func:`mia_efficacy`) and its standard error
    over the draws (``mia_efficacy_se``). One forward pass per split serves all of them."""
    device = device or torch.device("cpu")
    with _evaluated_on(model, device):
        return _efficacy_metrics(model, data, np.asarray(retain_idx), np.asarray(forget_idx), forgotten_class, seed, draws, device)


def _efficacy_metrics(model, data, ridx, fidx, forgotten_class, seed, draws, device) -> dict[str, float]:
    probs = _split_probs(model, data, ridx, fidx, device)
    y_test = data.y_test.numpy()
    correct_test = probs["test"].argmax(1) == y_test
    if forgotten_class is not None:
        correct_test = correct_test[y_test != forgotten_class]
    mia = _mia_draws(model, data, ridx, fidx, feature="confidence", draws=draws, seed=seed, device=device, probs=probs)
    return {
        "ua": 1.0 - float(np.mean(probs["forget"].argmax(1) == data.y_train.numpy()[fidx])),
        "ra": float(np.mean(probs["retain"].argmax(1) == data.y_train.numpy()[ridx])),
        "ta": float(np.mean(correct_test)),
        "mia_efficacy": float(mia.mean()),
        "mia_efficacy_se": float(mia.std(ddof=1) / np.sqrt(len(mia))) if len(mia) > 1 else 0.0,
    }


def avg_gap(metrics: dict[str, float], reference: dict[str, float]) -> float:
    """Mean absolute difference to the reference (retraining) over UA, RA, TA and MIA-efficacy."""
    return float(np.mean([abs(metrics[k] - reference[k]) for k in METRIC_KEYS]))
