"""Unlearning-specific attacks: U-LiRA and the NeurIPS 2023 challenge's forgetting score.

Both need the unlearning method (``audit --method NAME``, else the unlearned model's record)
and reference models. Each reference model k is *unlearned with that method* on the audit's
targets it was trained on (forgotten samples and non-members alike, so the two are treated the
same; the paper's request holds forgotten samples only): for every target, the models that
trained on it and then unlearned it form the IN distribution, the models that never saw it
(retrained without it) the OUT distribution.

**Request size.** A model trains on about half the targets, (members + non-members) / 2, about
twice the audited request; methods whose strength grows with the request (gradient ascent sums
over it) would then change their IN scores. So each reference model's targets are split into
requests of the audited request's size (the last one topped up with other samples the model
trained on), each unlearned from a fresh copy of the model, and a target's scores come from the
run that unlearned it: about two unlearning runs per reference model.
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
#: The scorer's bin edges: 0, 0.5, ..., 6.0.
KAGGLE_BINS = 13


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
    size = int(ctx.member_idx.size)
    key = hashlib.sha256(json.dumps({"method": method, "params": params, "fp": refs.fingerprint, "request_size": size}, sort_keys=True,
                                    default=str).encode())
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
    rng = np.random.default_rng(ctx.seed + 53)
    for k in range(refs.count):
        trained_on = np.flatnonzero(refs.keep[k]).astype(np.int64)
        record = ModelRecord(arch=refs.arch, in_shape=refs.in_shape, class_names=original.class_names, dataset=original.dataset,
                             train_indices=trained_on, n_train_split=len(pop_x), recipe={**original.recipe, "seed": REFERENCE_SEED + k})
        sub = None if ctx.progress is None else (lambda f, m, k=k: ctx.progress(f, f"Unlearning reference model {k + 1}/{refs.count} with {method}: {m}"))
        report(ctx.progress, 0.0, f"Unlearning reference model {k + 1}/{refs.count} with {method}")
        model_logits = None
        for request, own in same_size_requests(np.intersect1d(targets, trained_on), trained_on, size, rng):
            try:
                result = unlearn(refs.model(k), record, request, method=method, params=params, dataset=pop_data, progress=sub, device=ctx.device)
            except AuditInputError as exc:
                raise AttackNotApplicable(f"the reference models cannot be unlearned with '{method}': {exc}") from None
            run_logits = logits_under(result.model, pop_x, augs, device=ctx.device)
            if model_logits is None:
                model_logits = run_logits
            else:
                model_logits[:, own] = run_logits[:, own]
        logits.append(model_logits if model_logits is not None else logits_under(refs.model(k), pop_x, augs, device=ctx.device))
    stacked = torch.stack(logits)
    if cache_file is not None:
        from safetensors.torch import save_file

        cache_file.parent.mkdir(parents=True, exist_ok=True)
        save_file({"logits": stacked.contiguous()}, str(cache_file))
    out = {"method": method, "params": params, "logits": stacked}
    ctx.cache["unlearned_refs"] = out
    return out


def same_size_requests(in_targets: np.ndarray, trained_on: np.ndarray, size: int, rng: np.random.Generator):
    """Split a reference model's targets into requests of ``size`` samples (the audited request's size):
    yields ``(request, own)``, ``own`` the targets whose scores that run gives; a short last request is
    topped up with other samples the model trained on, when it has them.

    >>> reqs = list(same_size_requests(np.arange(5), np.arange(20), 2, np.random.default_rng(0)))
    >>> [len(r) for r, _ in reqs], sorted(np.concatenate([o for _, o in reqs]).tolist())
    ([2, 2, 2], [0, 1, 2, 3, 4])
    """
    if in_targets.size == 0:
        return
    size = max(int(size), 1)
    shuffled = rng.permutation(in_targets)
    spare = rng.permutation(np.setdiff1d(trained_on, in_targets))
    for start in range(0, shuffled.size, size):
        own = np.sort(shuffled[start : start + size])
        fill = spare[: size - own.size]
        yield np.sort(np.r_[own, fill]).astype(np.int64), own


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
    """The challenge's per-sample epsilon, as its scorer computes it: over threshold attacks on the
    scalar, the largest max(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR). An attack
    with FPR and FNR both zero gives infinity; one with exactly one of them zero is discarded; one with
    both FPR and FNR above 1 - delta (both logarithms undefined: the attack is reliably *wrong*, so its
    inverse is perfect) also gives infinity. Samples unlearned far *past* retraining are therefore
    caught (an earlier version dropped that case and gave them full points).

    >>> epsilon_from_samples(np.array([0.1, 0.2]), np.array([5.0, 6.0]))
    inf
    >>> epsilon_from_samples(np.array([9.0, 9.5]), np.array([1.0, 2.0]))  # unlearned losses far above retrained ones
    inf
    >>> epsilon_from_samples(np.array([1.0, 1.0, 1.0]), np.array([1.0, 1.0, 1.0]))
    0.0
    """
    best = 0.0
    for t in np.unique(np.r_[unlearned, retrained]):
        fpr = float(np.mean(retrained <= t))
        fnr = float(np.mean(unlearned > t))
        if fpr == 0 and fnr == 0:
            return float("inf")
        if fpr == 0 or fnr == 0:
            continue
        ok1, ok2 = 1 - delta - fpr > 0, 1 - delta - fnr > 0
        if not (ok1 or ok2):
            return float("inf")
        terms = [np.log(1 - delta - fpr) - np.log(fnr) if ok1 else -np.inf, np.log(1 - delta - fnr) - np.log(fpr) if ok2 else -np.inf]
        best = max(best, float(np.max(terms)))
    return best


def forgetting_points(eps: np.ndarray, bin_width: float = KAGGLE_BIN) -> np.ndarray:
    """The challenge's H(s) = 2 / 2^k, k the bin of epsilon among the edges 0, 0.5, ..., 6.0
    (``np.digitize``, as its scorer): eps in [0, 0.5) gives k = 1 and H = 1; eps >= 6 or infinite
    gives k = 13 and H = 2 / 2^13.

    >>> forgetting_points(np.array([0.0, 0.6, 6.0, np.inf])).tolist()
    [1.0, 0.5, 0.000244140625, 0.000244140625]
    """
    eps = np.asarray(eps, dtype=np.float64)
    return 2.0 / 2.0 ** np.digitize(eps, np.arange(KAGGLE_BINS) * bin_width)


@register_attack(
    "kaggle_epsilon",
    summary="NeurIPS 2023 unlearning challenge: per-sample epsilon from unlearned vs retrained reference models, forgetting quality F and the final score",
    higher_means="not an ROC: forgetting_quality F (mean of 2 / 2^bin(eps)) in [2^-12, 1], higher = closer to retraining; score = F x RA ratio x TA ratio",
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
