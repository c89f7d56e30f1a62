"""Per-sample quantities attacks are built from: logits under augmentations, the scores of
``../shared/REFERENCES.md`` computed stably from logits, Song & Mittal's modified entropy and
SalUn's confidence SVC (:mod:`mu_core.audit.efficacy` imports the last two: attacks never import
the audit)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

#: Datasets whose images may be mirrored left-right without changing the class (digits and
#: MNIST may not: a mirrored 2 or 7 is no longer a digit).
FLIP_SAFE = frozenset({"fashion-mnist", "cifar10"})

Augmentation = Callable[[torch.Tensor], torch.Tensor]


def _shift(pixels: int) -> Augmentation:
    def shift(x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        if pixels > 0:
            out[..., pixels:] = x[..., :-pixels]
        else:
            out[..., :pixels] = x[..., -pixels:]
        return out

    return shift


def augmentations(dataset_name: str | None, in_shape: tuple[int, int, int] | None) -> list[Augmentation]:
    """The query augmentations LiRA averages over, "where the data allows": the identity; a
    left-right flip for :data:`FLIP_SAFE` datasets; one-pixel shifts left and right for images
    of at least 16 pixels (on 8x8 digits a pixel is an eighth of the image). ``None``: identity only."""
    augs: list[Augmentation] = [lambda x: x]
    if dataset_name is None or in_shape is None:
        return augs
    if dataset_name in FLIP_SAFE:
        augs.append(lambda x: torch.flip(x, dims=[-1]))
    if min(in_shape[1:]) >= 16:
        augs += [_shift(1), _shift(-1)]
    return augs


@torch.no_grad()
def logits_under(model: nn.Module, x: torch.Tensor, augs: list[Augmentation], *, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` on each augmentation of ``x``: a float32 CPU tensor ``(A, N, C)``."""
    from ..train import predict_logits

    model.eval()
    return torch.stack([predict_logits(model, aug(x), device=device, batch_size=batch_size).float().cpu() for aug in augs])


def true_log_prob(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """log p_y from logits ``(..., N, C)``, as float64 numpy ``(..., N)``."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    index = y.view(*([1] * (logits.dim() - 2)), -1, 1).expand(*logits.shape[:-1], 1)
    return logp.gather(-1, index).squeeze(-1).numpy()


def lira_phi(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """LiRA's phi = log p_y - log sum_{y' != y} p_y', computed as z_y - logsumexp(z_{-y})
    (no probability is ever rounded to 1). Shape ``(..., N)``."""
    z = logits.double()
    index = y.view(*([1] * (z.dim() - 2)), -1, 1).expand(*z.shape[:-1], 1)
    z_y = z.gather(-1, index).squeeze(-1)
    others = z.scatter(-1, index, float("-inf"))
    return (z_y - torch.logsumexp(others, dim=-1)).numpy()


def probabilities(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.double(), dim=-1).numpy()


#: The SVC's feature is rounded to this before fitting (see :func:`fit_confidence_svc`).
SVC_RESOLUTION = 1e-3


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


def fit_confidence_svc(members: np.ndarray, nonmembers: np.ndarray, *, resolution: float = SVC_RESOLUTION):
    """:func:`confidence_svc` fitted on one feature, members labelled 1 and non-members 0.

    The feature is rounded to ``resolution`` and equal (value, label) pairs are merged into one
    point weighted by their count. That is exactly the SVC on the rounded data (equal points add
    equal hinge terms), and at gamma 1 the kernel cannot tell values 0.001 apart, so every sample
    can be used: 10,000 per side fit in about 0.1 s.
    """
    values = np.r_[np.ravel(members), np.ravel(nonmembers)].astype(np.float64)
    labels = np.r_[np.ones(np.size(members), dtype=np.int64), np.zeros(np.size(nonmembers), dtype=np.int64)]
    points, counts = np.unique(np.stack([np.round(values / resolution), labels], axis=1), axis=0, return_counts=True)
    return confidence_svc().fit(points[:, :1] * resolution, points[:, 1].astype(np.int64), sample_weight=counts.astype(np.float64))
