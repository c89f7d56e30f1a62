"""Per-sample quantities attacks are built from: logits under augmentations, and the scores of
``../shared/REFERENCES.md`` computed stably from logits."""

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
