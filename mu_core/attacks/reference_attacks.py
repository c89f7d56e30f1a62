"""Attacks that compare the audited model with reference models: LiRA and RMIA, online and offline.

Both score each target (forgotten sample or non-member) by where the audited model's output
sits relative to the same sample's outputs under reference models trained with it (IN) and
without it (OUT); see :mod:`mu_core.attacks.reference` for how those are trained.
"""

from __future__ import annotations

import numpy as np
import torch

from . import AttackContext, register_attack
from .features import augmentations, lira_phi, logits_under

#: Smallest standard deviation a Gaussian may have (phi is a log-odds, so this is tiny).
MIN_STD = 1e-3
#: Population samples RMIA compares each target with.
RMIA_Z = 2000


def _targets(ctx: AttackContext):
    refs = ctx.references()
    pos = {"members": refs.positions(train_idx=ctx.member_idx), "nonmembers": refs.positions(test_idx=ctx.nonmember_idx)}
    return refs, pos


def _ref_phi(ctx: AttackContext) -> np.ndarray:
    """phi of every population sample under every reference model and augmentation: (K, A, P)."""
    if "ref_phi" not in ctx.cache:
        refs = ctx.references()
        _, y = refs.population(ctx.data)
        ctx.cache["ref_phi"] = lira_phi(refs.logits, y)
    return ctx.cache["ref_phi"]


def _gaussian_logpdf(x, mu, std):
    return -0.5 * ((x - mu) / std) ** 2 - np.log(std)


def lira_scores(ctx: AttackContext, role: str, *, online: bool, phi_in: np.ndarray | None = None,
                median_over: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """LiRA (Carlini et al. 2022) for members and non-members of the audit.

    ``phi_in`` (K, A, P), if given, replaces the IN distribution (U-LiRA passes unlearned models
    there), and ``median_over`` the population positions the fixed variance is taken over.
    Variance: ``ctx.options["lira_variance"]`` = ``"fixed"`` (default below 64 reference models:
    the median over the population of per-sample standard deviations, as in the paper's code) or
    ``"per_example"``. Offline test: one-sided, score = mean over augmentations of
    (phi - mu_out) / s_out, i.e. how far phi sits above the OUT distribution (ranking by it is
    ranking by the one-sided p-value); public code's -log N(phi; mu_out, s_out) is not used.
    """
    refs, pos = _targets(ctx)
    phi_ref = _ref_phi(ctx)
    phi_in = phi_ref if phi_in is None else phi_in
    keep = refs.keep
    k = keep.shape[0]
    over = slice(None) if median_over is None else median_over
    mode = ctx.options.get("lira_variance") or ("fixed" if k < 64 else "per_example")

    def stats(phi: np.ndarray, mask: np.ndarray):
        m = mask[:, None, :].astype(np.float64)
        n = np.maximum(m.sum(0), 1)
        mu = (phi * m).sum(0) / n
        var = (((phi - mu) ** 2) * m).sum(0) / np.maximum(n - 1, 1)
        std = np.sqrt(var)
        if mode == "fixed":
            std = np.broadcast_to(np.median(std[:, over], axis=1, keepdims=True), std.shape)
        return mu, np.maximum(std, MIN_STD)

    mu_out, s_out = stats(phi_ref, ~keep)
    mu_in, s_in = stats(phi_in, keep)
    out = []
    for which in ("members", "nonmembers"):
        p = pos[which]
        y = ctx.labels(which)
        phi_t = lira_phi(ctx.logits(role, which, augmented=True), y)  # (A, N)
        if online:
            s = _gaussian_logpdf(phi_t, mu_in[:, p], s_in[:, p]) - _gaussian_logpdf(phi_t, mu_out[:, p], s_out[:, p])
        else:
            s = (phi_t - mu_out[:, p]) / s_out[:, p]
        out.append(s.mean(0))
    return out[0], out[1]


@register_attack(
    "lira_online",
    summary="LiRA online (Carlini et al. 2022): Gaussians of phi under reference models trained with and without each sample",
    higher_means="score = log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out), averaged over query augmentations; higher = member",
    knowledge="black-box outputs; data from the same distribution and the training recipe (to train reference models)",
    reference_models=True,
)
def lira_online(ctx: AttackContext, role: str):
    return lira_scores(ctx, role, online=True)


@register_attack(
    "lira_offline",
    summary="LiRA offline: only reference models trained without each sample; one-sided test against them",
    higher_means="score = (phi - mu_out) / s_out, averaged over augmentations; higher = member",
    knowledge="black-box outputs; data from the same distribution and the training recipe",
    reference_models=True,
)
def lira_offline(ctx: AttackContext, role: str):
    return lira_scores(ctx, role, online=False)


def _probs_true(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """p_y averaged over augmentations: logits (..., A, N, C) -> (..., N)."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    index = y.view(*([1] * (logits.dim() - 2)), -1, 1).expand(*logits.shape[:-1], 1)
    return logp.gather(-1, index).squeeze(-1).exp().mean(-2).numpy()


def _rmia_z(ctx: AttackContext) -> np.ndarray:
    if "rmia_z" not in ctx.cache:
        refs, pos = _targets(ctx)
        candidates = np.setdiff1d(np.arange(refs.keep.shape[1]), np.r_[pos["members"], pos["nonmembers"]])
        rng = np.random.default_rng(ctx.seed + 31)
        ctx.cache["rmia_z"] = np.sort(rng.choice(candidates, size=min(RMIA_Z, candidates.size), replace=False))
    return ctx.cache["rmia_z"]


def _ref_p(ctx: AttackContext) -> np.ndarray:
    """p_y of every population sample under every reference model (augmentation mean): (K, P)."""
    if "ref_p" not in ctx.cache:
        refs = ctx.references()
        _, y = refs.population(ctx.data)
        ctx.cache["ref_p"] = _probs_true(refs.logits, y)
    return ctx.cache["ref_p"]


def _prior(ref_p: np.ndarray, keep: np.ndarray, online: bool, a: float) -> np.ndarray:
    if online:
        return ref_p.mean(0)
    out = ~keep
    p_out = (ref_p * out).sum(0) / np.maximum(out.sum(0), 1)
    return ((1 + a) * p_out + (1 - a)) / 2


def _rmia_from(p_x_theta, prior_x, p_z_theta, prior_z, gamma: float) -> np.ndarray:
    ratio_z = np.sort(p_z_theta / np.maximum(prior_z, 1e-30))
    ratio_x = p_x_theta / np.maximum(prior_x, 1e-30)
    return np.searchsorted(ratio_z, ratio_x / gamma, side="right") / ratio_z.size


def tune_offline_a(ctx: AttackContext) -> float:
    """RMIA's offline ``a``: the value in 0, 0.1, ..., 1 with the best AUC when reference model 0 is
    attacked with the others (on non-target population samples), as the paper suggests."""
    if "rmia_a" in ctx.options:
        return float(ctx.options["rmia_a"])
    if "rmia_a" not in ctx.cache:
        from sklearn.metrics import roc_auc_score

        refs = ctx.references()
        ref_p = _ref_p(ctx)
        z = _rmia_z(ctx)
        half = z.size // 2
        xs, zs = z[:half], z[half:]
        others = np.arange(1, refs.count)
        best, best_auc = 0.5, -1.0
        for a in np.linspace(0, 1, 11):
            prior = _prior(ref_p[others], refs.keep[others], False, a)
            s = _rmia_from(ref_p[0, xs], prior[xs], ref_p[0, zs], prior[zs], 1.0)
            labels = refs.keep[0, xs]
            if labels.all() or not labels.any():
                continue
            auc = roc_auc_score(labels, s)
            if auc > best_auc:
                best, best_auc = float(a), auc
        ctx.cache["rmia_a"] = round(best, 2)
    return ctx.cache["rmia_a"]


def rmia_scores(ctx: AttackContext, role: str, *, online: bool):
    """RMIA (Zarifzadeh et al. 2024): score(x) = share of population samples z with
    LR(x, z) = [p(x|theta) / p(x)] / [p(z|theta) / p(z)] >= gamma (``ctx.options["rmia_gamma"]``, default 1)."""
    refs, pos = _targets(ctx)
    ref_p = _ref_p(ctx)
    a = 1.0 if online else tune_offline_a(ctx)
    prior = _prior(ref_p, refs.keep, online, a)
    gamma = float(ctx.options.get("rmia_gamma", 1.0))
    z = _rmia_z(ctx)
    key = ("rmia_pz", role)
    if key not in ctx.cache:
        pop_x, pop_y = refs.population(ctx.data)
        zi = torch.from_numpy(z)
        augs = augmentations(ctx.data.spec.name, ctx.data.in_shape)
        ctx.cache[key] = _probs_true(logits_under(ctx.models[role], pop_x[zi], augs, device=ctx.device), pop_y[zi])
    p_z = ctx.cache[key]
    out = []
    for which in ("members", "nonmembers"):
        p_x = _probs_true(ctx.logits(role, which, augmented=True), ctx.labels(which))
        out.append(_rmia_from(p_x, prior[pos[which]], p_z, prior[z], gamma))
    extra = {} if online else {"a": a}
    return out[0], out[1], {**extra, "gamma": gamma, "population_z": int(z.size)}


@register_attack(
    "rmia_online",
    summary="RMIA online (Zarifzadeh et al. 2024): likelihood ratio against population samples, prior from all reference models",
    higher_means="score = share of population samples z with LR(x, z) >= gamma; higher = member",
    knowledge="black-box outputs; population data and the training recipe (reference models)",
    reference_models=True,
)
def rmia_online(ctx: AttackContext, role: str):
    return rmia_scores(ctx, role, online=True)


@register_attack(
    "rmia_offline",
    summary="RMIA offline: prior from reference models trained without each sample, p(x) = ((1 + a) p_OUT + (1 - a)) / 2",
    higher_means="score = share of population samples z with LR(x, z) >= gamma; higher = member",
    knowledge="black-box outputs; population data and the training recipe (reference models)",
    reference_models=True,
)
def rmia_offline(ctx: AttackContext, role: str):
    return rmia_scores(ctx, role, online=False)
