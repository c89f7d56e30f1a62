"""Unlearning-specific attacks: U-LiRA and the NeurIPS 2023 challenge's forgetting score.

Both need the unlearning method (``audit --method NAME``, else the unlearned model's record)
and reference models. Each reference model k is *unlearned with that method* on the audit's
targets it was trained on (forgotten samples and non-members alike, so the two are treated the
same; the paper's request holds forgotten samples only): for every target, the models that
trained on it and then unlearned it form the IN distribution, the models that never saw it
(retrained without it) the OUT distribution.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from .._types import report
from . import AttackContext, AttackNotApplicable, register_attack
from .features import augmentations, lira_phi, logits_under, true_log_prob
from .reference import REFERENCE_SEED
from .reference_attacks import _targets, lira_scores

#: Kaggle scorer's delta, as in public copies of it.
KAGGLE_DELTA = 0.01
KAGGLE_BIN = 0.5


def unlearned_references(ctx: AttackContext) -> dict:
    """Logits (K, A, P, C) of the reference models after unlearning their targets, plus the method."""
    if "unlearned_refs" in ctx.cache:
        return ctx.cache["unlearned_refs"]
    method, params = ctx.unlearning_method()
    from ..data import Dataset
    from ..errors import AuditInputError
    from ..models import ModelRecord
    from ..unlearn import unlearn

    refs, pos = _targets(ctx)
    targets = np.r_[pos["members"], pos["nonmembers"]]
    key = hashlib.sha256(json.dumps({"method": method, "params": params, "fp": refs.fingerprint}, sort_keys=True, default=str).encode())
    key.update(np.sort(targets).tobytes())
    cache_file = Path(ctx.reference_dir) / f"unlearned_{key.hexdigest()[:16]}.safetensors" if ctx.reference_dir else None
    if cache_file is not None and cache_file.is_file():
        from safetensors.torch import load_file

        result = {"method": method, "params": params, "logits": load_file(str(cache_file))["logits"]}
        ctx.cache["unlearned_refs"] = result
        return result

    pop_x, pop_y = refs.population(ctx.data)
    rest = torch.from_numpy(np.setdiff1d(np.arange(ctx.data.n_test), refs.pop_test))
    pop_data = Dataset(ctx.data.spec, pop_x, pop_y, ctx.data.x_test[rest] if len(rest) else ctx.data.x_test,
                       ctx.data.y_test[rest] if len(rest) else ctx.data.y_test, ctx.data.class_names)
    augs = augmentations(ctx.data.spec.name, ctx.data.in_shape)
    original = ctx.original_record
    logits = []
    for k in range(refs.count):
        request = np.intersect1d(targets, np.flatnonzero(refs.keep[k]))
        record = ModelRecord(arch=refs.arch, in_shape=refs.in_shape, class_names=original.class_names, dataset=original.dataset,
                             train_indices=np.flatnonzero(refs.keep[k]).astype(np.int64), n_train_split=len(pop_x),
                             recipe={**original.recipe, "seed": REFERENCE_SEED + k})
        sub = None if ctx.progress is None else (lambda f, m, k=k: ctx.progress(f, f"Unlearning reference model {k + 1}/{refs.count} with {method}: {m}"))
        report(ctx.progress, 0.0, f"Unlearning reference model {k + 1}/{refs.count} with {method}")
        try:
            result = unlearn(refs.model(k), record, request, method=method, params=params, dataset=pop_data, progress=sub, device=ctx.device)
        except AuditInputError as exc:
            raise AttackNotApplicable(f"the reference models cannot be unlearned with '{method}': {exc}") from None
        logits.append(logits_under(result.model, pop_x, augs, device=ctx.device))
    stacked = torch.stack(logits)
    if cache_file is not None:
        from safetensors.torch import save_file

        cache_file.parent.mkdir(parents=True, exist_ok=True)
        save_file({"logits": stacked.contiguous()}, str(cache_file))
    out = {"method": method, "params": params, "logits": stacked}
    ctx.cache["unlearned_refs"] = out
    return out


@register_attack(
    "ulira",
    summary="U-LiRA (Hayes et al. 2024): LiRA where IN = reference models trained with the sample and then unlearned by the same method, OUT = retrained without it",
    higher_means="score = log N(phi; mu_unlearned, s) - log N(phi; mu_retrained, s); higher = looks trained-then-unlearned rather than never seen",
    knowledge="black-box outputs; population data, the training recipe and the unlearning method (reference models)",
    reference_models=True,
    needs_method=True,
)
def ulira_attack(ctx: AttackContext, role: str):
    ctx.unlearning_method()  # says so before any reference model is trained
    refs, pos = _targets(ctx)
    unl = unlearned_references(ctx)
    _, pop_y = refs.population(ctx.data)
    phi_in = lira_phi(unl["logits"], pop_y)
    targets = np.r_[pos["members"], pos["nonmembers"]]
    members, nonmembers = lira_scores(ctx, role, online=True, phi_in=phi_in, median_over=targets)
    return members, nonmembers, {"method": unl["method"]}


def epsilon_from_samples(unlearned: np.ndarray, retrained: np.ndarray, delta: float = KAGGLE_DELTA) -> float:
    """The challenge's per-sample epsilon: over threshold attacks on the scalar, the largest
    max(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR); attacks with exactly
    one of FPR, FNR at zero are discarded, both zero gives infinity.

    >>> epsilon_from_samples(np.array([0.1, 0.2]), np.array([5.0, 6.0]))
    inf
    >>> epsilon_from_samples(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])) < 1
    True
    """
    best = 0.0
    for t in np.unique(np.r_[unlearned, retrained]):
        fpr = float(np.mean(retrained <= t))
        fnr = float(np.mean(unlearned > t))
        if fpr == 0 and fnr == 0:
            return float("inf")
        if fpr == 0 or fnr == 0:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = [np.log(1 - delta - fpr) - np.log(fnr) if 1 - delta - fpr > 0 else -np.inf,
                     np.log(1 - delta - fnr) - np.log(fpr) if 1 - delta - fnr > 0 else -np.inf]
        best = max(best, float(np.max(terms)))
    return best


def forgetting_points(eps: np.ndarray, bin_width: float = KAGGLE_BIN) -> np.ndarray:
    """H(s) = 2 / 2^n(s), n = the 0.5-wide bin of epsilon; infinite epsilon scores 0.

    >>> forgetting_points(np.array([0.0, 0.6, np.inf])).tolist()
    [2.0, 1.0, 0.0]
    """
    eps = np.asarray(eps, dtype=np.float64)
    finite = np.isfinite(eps)
    out = np.zeros_like(eps)
    out[finite] = 2.0 / 2.0 ** np.floor(eps[finite] / bin_width)
    return out


@register_attack(
    "kaggle_epsilon",
    summary="NeurIPS 2023 unlearning challenge: per-sample epsilon from unlearned vs retrained reference models, forgetting quality F and the final score",
    higher_means="not an ROC: forgetting_quality F (mean of 2 / 2^bin(eps)) in [0, 2], higher = closer to retraining; score = F x RA ratio x TA ratio",
    knowledge="the unlearning method, the training recipe and population data (reference models unlearned and retrained)",
    reference_models=True,
    needs_method=True,
    kind="summary",
    verdict=False,
)
def kaggle_attack(ctx: AttackContext) -> dict:
    """Deviation: the challenge uses 512 unlearned and 512 retrained models; here each forgotten
    sample has K/2 of each (the reference models), so epsilon is coarse. The utility ratios use
    the audited unlearned and retrained models when both are given, else the reference models'."""
    ctx.unlearning_method()
    refs, pos = _targets(ctx)
    unl = unlearned_references(ctx)
    _, pop_y = refs.population(ctx.data)
    loss_unl = -true_log_prob(unl["logits"][:, 0], pop_y)  # (K, P)
    loss_ref = -true_log_prob(refs.logits[:, 0], pop_y)
    eps = []
    for p in pos["members"]:
        inside = refs.keep[:, p]
        eps.append(epsilon_from_samples(loss_unl[inside, p], loss_ref[~inside, p]))
    eps = np.asarray(eps)
    points = forgetting_points(eps)
    quality = float(points.mean())
    ratio_source = "audited models"
    if "unlearned" in ctx.models and "retrained" in ctx.models:
        from ..train import accuracy

        retain = torch.from_numpy(np.setdiff1d(ctx.original_record.train_indices, ctx.member_idx))
        rx, ry = ctx.data.x_train[retain], ctx.data.y_train[retain]
        ra = accuracy(ctx.models["unlearned"], rx, ry, device=ctx.device) / max(accuracy(ctx.models["retrained"], rx, ry, device=ctx.device), 1e-9)
        ta = accuracy(ctx.models["unlearned"], ctx.data.x_test, ctx.data.y_test, device=ctx.device) / max(
            accuracy(ctx.models["retrained"], ctx.data.x_test, ctx.data.y_test, device=ctx.device), 1e-9)
    else:
        ratio_source = "reference models"
        pred_unl, pred_ref = unl["logits"][:, 0].argmax(-1).numpy(), refs.logits[:, 0].argmax(-1).numpy()
        correct_unl, correct_ref = pred_unl == pop_y.numpy(), pred_ref == pop_y.numpy()
        ra = float(correct_unl[refs.keep].mean() / max(correct_ref[refs.keep].mean(), 1e-9))
        ta = float(correct_unl[~refs.keep].mean() / max(correct_ref[~refs.keep].mean(), 1e-9))
    finite = eps[np.isfinite(eps)]
    return {
        "forgetting_quality": quality,
        "score": quality * ra * ta,
        "ra_ratio": float(ra),
        "ta_ratio": float(ta),
        "ratio_source": ratio_source,
        "epsilon_median": float(np.median(eps)) if eps.size and np.isfinite(np.median(eps)) else None,
        "epsilon_infinite_share": float(np.mean(~np.isfinite(eps))) if eps.size else None,
        "epsilon_finite_mean": float(finite.mean()) if finite.size else None,
        "models_per_side": int(refs.count // 2),
        "delta": KAGGLE_DELTA,
        "method": unl["method"],
    }
