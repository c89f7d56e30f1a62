"""A label-only membership attack: robustness of the predicted label to augmentations and noise.

Choquette-Choo, Tramer, Carlini & Papernot, *Label-Only Membership Inference Attacks* (ICML 2021),
the "data augmentation" / "noise robustness" variant (not the decision-boundary distance under a
query budget): the attacker sees only predicted labels, queries each sample under perturbations,
and calls it a member when the label stays right under more of them (training pulls the
decision boundary away from members). Queries: the augmentations LiRA uses where the data allows
them (:func:`~mu_core.attacks.features.augmentations`: flips, one-pixel shifts), each with
Gaussian pixel noise at three scales (0.25, 0.5 and 1 times the pixel standard deviation of the
audited samples), :data:`NOISE_DRAWS` seeded draws per scale, plus the clean queries.
Deliberate deviation: the paper fits a small threshold model on shadow models' robustness
vectors; here the score is the plain share of correct answers (one threshold, no shadow models),
which needs no knowledge beyond the model's labels.
"""

from __future__ import annotations

import numpy as np
import torch

from . import AttackContext, register_attack
from .features import augmentations

#: Noise draws per scale and augmentation.
NOISE_DRAWS = 8
#: Noise scales, in units of the audited samples' pixel standard deviation.
NOISE_SCALES = (0.25, 0.5, 1.0)


@torch.no_grad()
def label_robustness(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, augs, sigma: float, seed: int,
                     device: torch.device) -> np.ndarray:
    """Per sample, the share of perturbed queries (augmentations x noise) whose predicted label is ``y``."""
    from ..train import predict_logits

    generator = torch.Generator().manual_seed(seed)
    correct = torch.zeros(len(x), dtype=torch.float64)
    queries = 0
    for aug in augs:
        base = aug(x)
        correct += (predict_logits(model, base, device=device).argmax(-1) == y).double()
        queries += 1
        for scale in NOISE_SCALES:
            for _ in range(NOISE_DRAWS):
                noisy = base + scale * sigma * torch.randn(base.shape, generator=generator)
                correct += (predict_logits(model, noisy, device=device).argmax(-1) == y).double()
                queries += 1
    return (correct / queries).numpy()


@register_attack(
    "label_only",
    summary="Label-only (Choquette-Choo et al. 2021, augmentation and noise robustness): how often the predicted label stays right "
            "under flips/shifts (where the data allows) and Gaussian noise",
    higher_means="score = share of perturbed queries still labelled correctly; higher = more robust = more member-like",
    knowledge="label-only: the predicted label (no probabilities) and the true label",
)
def label_only_attack(ctx: AttackContext, role: str):
    augs = augmentations(ctx.data.spec.name, ctx.data.in_shape)
    (mx, my), (nx, ny) = ctx.member_data(), ctx.nonmember_data()
    sigma = float(torch.cat([mx, nx]).std())
    model = ctx.models[role]
    members = label_robustness(model, mx, my, augs=augs, sigma=sigma, seed=ctx.seed + 71, device=ctx.device)
    nonmembers = label_robustness(model, nx, ny, augs=augs, sigma=sigma, seed=ctx.seed + 72, device=ctx.device)
    return members, nonmembers, {"variant": "augmentation and noise robustness", "queries_per_sample": len(augs) * (1 + NOISE_DRAWS * len(NOISE_SCALES))}
