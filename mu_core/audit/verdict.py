"""Honest uncertainty and the verdict: bootstrap intervals, the forgotten / not-forgotten rule,
power, over-unlearning, per-class slices and per-record verdicts.

This module is the one place that decides ``forgotten`` / ``not_forgotten`` / ``inconclusive``.
Its general entry point is :func:`judge`: per attack, the member and non-member scores of the
original, the unlearned model and K exact retrains in, the verdict out. :func:`decide` does the
same from bootstrap AUCs already computed (what :func:`mu_core.audit.report.run_audit` uses).

**The rule** (:data:`VERDICT_RULE`, printed on the page and in the report). For every attack that
measures membership in one model, d = AUC(unlearned) - AUC(reference), where the reference is the
mean AUC of K exact retrains (models trained from scratch without the forget set, consecutive
seeds) on the same records, or chance (0.5) when there is none.

*Two sources of randomness enter d's interval.* (1) Which records were drawn: a paired bootstrap
resamples members and non-members (the same resample for every model). (2) Retraining's own
randomness: the unlearned model is one more draw from "what training without the forget set
gives", so under exact unlearning d's spread also holds the spread of AUC between retrains on
these very records, times sqrt(1 + 1/K) (one new draw minus the mean of K, a prediction
interval). That spread is estimated from the K retrains and added to each bootstrap resample as a
Gaussian multiplier draw sum_k g_k (AUC_k - mean) / sqrt(K - 1), g_k ~ N(0, 1), which keeps the
correlation between attacks (a retrain that overfits more is more member-like under every
attack). With few retrains the spread itself is uncertain, so the draw is widened by
t_{K-1} / z at 1 - alpha (Student's factor; 1.43 for K = 4, 1.15 for K = 8). Why this and not a
plain bootstrap over retrains: with K = 2-8 a resampled retrain takes only K values, too coarse
for tail quantiles, and a bootstrap over records alone holds both models fixed, so two exact
retrains with different seeds came out ``not_forgotten`` (issue 11). With one retrain the spread
cannot be estimated; the test then covers records only and the reason says so.

- ``not_forgotten``: some attack's one-sided lower bound of d is above 0, the bounds simultaneous
  over the m attacks at level alpha (bootstrap max-t, Westfall & Young: tighter than Bonferroni
  when attacks agree, as LOSS and confidence always do).
- ``forgotten``: no attack is, every attack's (1 - 2 alpha) interval of d lies within
  [-margin, +margin] (two one-sided tests; an intersection-union test needs no multiplicity
  correction), **and the audit has power**: the same test run on the untouched original flags it
  (some attack's simultaneous lower bound of AUC(original) - AUC(reference) is above 0). Without
  power "no attack sees membership" says nothing: the audit could not tell the original from
  retraining either.
- ``inconclusive``: otherwise.

``over_unlearning``: some attack's simultaneous upper bound of d is below 0: the forget
set now looks *less* member-like than the reference, which an attacker can detect too.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "RECORD_FDR",
    "VERDICT_RULE",
    "auc_fast",
    "benjamini_hochberg",
    "bootstrap_aucs",
    "bootstrap_tprs",
    "decide",
    "judge",
    "per_class_aucs",
    "record_counts",
    "record_verdicts",
    "resamples",
    "roc_intervals",
]

VERDICT_RULE = (
    "Reference: the mean AUC of K exact retrains (trained from scratch without the forget set, consecutive seeds) on the same "
    "records, or chance (0.5) without any. For each membership attack, d = AUC(unlearned) - AUC(reference). Its interval holds "
    "both which records were drawn (paired bootstrap over members and non-members) and retraining's own randomness (the spread "
    "of AUC between the retrains, times sqrt(1 + 1/K) and Student's t_{K-1}/z factor, added as a Gaussian multiplier draw; not "
    "estimable with one retrain). "
    "not_forgotten: some attack's lower bound of d (one-sided, simultaneous over the attacks at level alpha by the bootstrap max-t "
    "method) is above 0. "
    "forgotten: no attack is, every attack's (1 - 2 alpha) interval of d lies within +/- the margin, and the audit has power: "
    "the same test flags the untouched original (some attack's lower bound of AUC(original) - AUC(reference) is above 0). "
    "inconclusive: otherwise. "
    "Per record: not_forgotten when Benjamini-Hochberg at 10% FDR flags its p-value against held-out data and it stands out "
    "more than under every retrain; forgotten only with positive evidence: the original flagged it, more than any retrain, "
    "and the unlearned model no longer does (it stands out no more than under some retrain, or without retrains is not in "
    "the top 10% of held-out data); inconclusive otherwise."
)
#: Without retrains, records whose scores rank among the top share of held-out data are not called forgotten.
RECORD_FORGOTTEN_P = 0.1
#: False-discovery rate for flagging individual records (Benjamini-Hochberg).
RECORD_FDR = 0.1
#: The three per-record answers, in display order.
RECORD_VERDICTS = ("forgotten", "not_forgotten", "inconclusive")


def auc_fast(members: np.ndarray, nonmembers: np.ndarray) -> float:
    """AUC by the Mann-Whitney statistic (ties count half); equals scikit-learn's roc_auc_score."""
    from scipy.stats import rankdata

    ranks = rankdata(np.r_[members, nonmembers])
    n1, n0 = len(members), len(nonmembers)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def resamples(n_members: int, n_nonmembers: int, b: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``b`` bootstrap resamples: indices into the members ``(b, n_members)`` and non-members ``(b, n_nonmembers)``."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_members, size=(b, n_members)), rng.integers(0, n_nonmembers, size=(b, n_nonmembers))


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each of ``n`` items is drawn in each resample: ``(b, n)`` float64."""
    b = idx.shape[0]
    flat = (idx + n * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def bootstrap_aucs(members: np.ndarray, nonmembers: np.ndarray, idx: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """AUC on each bootstrap resample ``idx`` (from :func:`resamples`), all at once.

    A resample is a multiset, so its AUC is sum_i w_i G(x_i) / (n1 n0), w_i the member's count and
    G(x) = (#resampled non-members below x) + half those tied with it, read off the cumulative
    counts of the sorted non-members: O(b (n1 + n0)) memory and time, no loop over resamples."""
    members, nonmembers = np.asarray(members, np.float64), np.asarray(nonmembers, np.float64)
    n1, n0 = members.size, nonmembers.size
    order = np.argsort(nonmembers, kind="stable")
    sorted_n = nonmembers[order]
    c = _counts(idx[1], n0)[:, order]
    cum = np.concatenate([np.zeros((c.shape[0], 1)), np.cumsum(c, axis=1)], axis=1)
    left, right = np.searchsorted(sorted_n, members, "left"), np.searchsorted(sorted_n, members, "right")
    g = (cum[:, left] + cum[:, right]) / 2.0
    w = _counts(idx[0], n1)
    return (w * g).sum(axis=1) / (n1 * n0)


def bootstrap_tprs(members: np.ndarray, nonmembers: np.ndarray, idx: tuple[np.ndarray, np.ndarray], target: float) -> np.ndarray:
    """TPR at FPR <= ``target`` (as :func:`~mu_core.audit.metrics.tpr_at_fpr` reads it off the ROC) on each
    resample at once: with a = floor(target n0) false positives allowed, the best threshold lies just above
    the (a+1)-th largest resampled non-member v, and TPR = share of resampled members above v."""
    members, nonmembers = np.asarray(members, np.float64), np.asarray(nonmembers, np.float64)
    n1, n0 = members.size, nonmembers.size
    allowed = int(np.floor(target * n0 + 1e-12 * n0))
    if allowed >= n0:
        return np.ones(idx[0].shape[0])
    order = np.argsort(-nonmembers, kind="stable")
    desc = nonmembers[order]
    cum = np.cumsum(_counts(idx[1], n0)[:, order], axis=1)
    v = desc[np.argmax(cum > allowed, axis=1)]
    m_order = np.argsort(members, kind="stable")
    sorted_m = members[m_order]
    wcum = np.concatenate([np.zeros((idx[0].shape[0], 1)), np.cumsum(_counts(idx[0], n1)[:, m_order], axis=1)], axis=1)
    at_or_below = np.take_along_axis(wcum, np.searchsorted(sorted_m, v, "right")[:, None], axis=1)[:, 0]
    return (n1 - at_or_below) / n1


def roc_intervals(members: np.ndarray, nonmembers: np.ndarray, idx, level: float = 0.95) -> tuple[dict, np.ndarray]:
    """Percentile bootstrap intervals of AUC and of TPR at 1% / 0.1% / 0.01% FPR (None where the FPR is not
    meaningful), and the bootstrap AUCs themselves."""
    from .metrics import TPR_TARGETS

    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    aucs = bootstrap_aucs(members, nonmembers, idx)
    out = {"auc_ci": [float(np.quantile(aucs, lo_q)), float(np.quantile(aucs, hi_q))]}
    for key, target in TPR_TARGETS.items():
        if len(nonmembers) < round(1.0 / target):
            out[f"{key}_ci"] = None
        else:
            tprs = bootstrap_tprs(members, nonmembers, idx, target)
            out[f"{key}_ci"] = [float(np.quantile(tprs, lo_q)), float(np.quantile(tprs, hi_q))]
    return out, aucs


def per_class_aucs(members: np.ndarray, nonmembers: np.ndarray, member_labels: np.ndarray, nonmember_labels: np.ndarray,
                   class_names) -> dict[str, float]:
    """AUC within each class that has members and non-members."""
    out = {}
    for c in np.unique(member_labels):
        a, b = members[member_labels == c], nonmembers[nonmember_labels == c]
        if a.size and b.size:
            out[class_names[int(c)]] = auc_fast(a, b)
    return out


def _simultaneous(deviations: np.ndarray, d_hat: np.ndarray, level: float, side: str) -> np.ndarray:
    """Simultaneous one-sided bounds over attacks by the bootstrap max-t method (Westfall & Young):
    ``deviations`` (b, m) are draws of (estimate - truth); the critical value is the ``level`` quantile
    of the largest standardised deviation over attacks, so near-duplicate attacks (LOSS and confidence
    rank alike) cost less than Bonferroni would."""
    se = np.maximum(deviations.std(axis=0, ddof=1), 1e-9)
    t = deviations / se
    worst = np.max(t if side == "lower" else -t, axis=1)
    c = float(np.quantile(worst, level))
    return d_hat - c * se if side == "lower" else d_hat + c * se


def _retrain_matrix(boot: dict, point: dict, attacks: list[str]) -> tuple[int, np.ndarray | None, np.ndarray | None]:
    """K and the retrains' bootstrap AUCs (b, K, m) and point AUCs (K, m), from ``retrains`` (or one ``retrained``)."""
    def per_attack(a):
        if "retrains" in boot[a]:
            retrains = np.asarray(boot[a]["retrains"], np.float64)
            return retrains.reshape(retrains.shape[0], -1), np.asarray(point[a]["retrains"], np.float64)
        if "retrained" in boot[a]:
            return np.asarray(boot[a]["retrained"], np.float64)[:, None], np.array([point[a]["retrained"]], np.float64)
        return None, None

    pairs = [per_attack(a) for a in attacks]
    k = min((0 if p[0] is None else p[0].shape[1]) for p in pairs)
    if k == 0:
        return 0, None, None
    return k, np.stack([p[0][:, :k] for p in pairs], axis=2), np.stack([p[1][:k] for p in pairs], axis=1)


def _training_draws(ref_points: np.ndarray, b: int, alpha: float, seed: int) -> np.ndarray:
    """Draws (b, m) of one new retrain's AUC minus the mean of the K retrains (see the module doc):
    a Gaussian multiplier draw from the retrains' spread, times sqrt(1 + 1/K) and t_{K-1}/z."""
    from scipy.stats import norm, t

    k, m = ref_points.shape
    if k < 2:
        return np.zeros((b, m))
    centred = ref_points - ref_points.mean(axis=0)
    g = np.random.default_rng(seed).standard_normal((b, k))
    widen = np.sqrt(1 + 1 / k) * float(t.ppf(1 - alpha, k - 1) / norm.ppf(1 - alpha))
    return widen * (g @ centred) / np.sqrt(k - 1)


def _no_power_reason(power: dict, has_original: bool) -> str:
    if not has_original:
        return ("Without the original model the audit cannot show it has power (that it could tell an unforgotten model from "
                "retraining), so no attack seeing membership proves nothing.")
    best = max(power, key=lambda a: power[a]["d"])
    lo, hi = power[best]["d_ci"]
    return (f"The audit cannot tell even the untouched original from retraining: no attack separates them with confidence "
            f"(best: {best}, AUC difference {power[best]['d']:+.3f}, interval [{lo:+.3f}, {hi:+.3f}]), so finding no membership "
            "in the unlearned model says nothing. Power would come from more forgotten records, attacks with reference models "
            "(lira_online, rmia_online), or a leakier setting (a model that overfits more).")


def decide(boot: dict[str, dict[str, np.ndarray]], point: dict[str, dict[str, float]], *, margin: float = 0.1, alpha: float = 0.05,
           seed: int = 0) -> dict:
    """The verdict from bootstrap AUCs and point AUCs of the attacks that take part.

    ``boot[attack]`` holds ``(b,)`` arrays for ``unlearned`` and ``original`` (either may be missing)
    and ``retrains`` ``(b, K)`` (or one ``retrained`` ``(b,)``), computed on the *same* resamples;
    ``point[attack]`` the AUCs on all records (``retrains`` a list of K). Returns ``verdict``,
    ``verdict_reason``, ``over_unlearning``, ``verdict_detail`` (per attack), ``power`` (per attack:
    ``d`` = AUC(original) - AUC(reference), ``d_ci`` its simultaneous bounds), ``has_power`` and
    ``auc_spread`` (per attack: the retrains' AUCs, their range and standard deviation)."""
    attacks = [a for a in boot if "unlearned" in boot[a] or "original" in boot[a]]
    k, ref_boot, ref_points = _retrain_matrix(boot, point, attacks) if attacks else (0, None, None)
    spread = {} if ref_points is None else {
        a: {"aucs": [float(v) for v in ref_points[:, i]], "min": float(ref_points[:, i].min()), "max": float(ref_points[:, i].max()),
            "range": float(np.ptp(ref_points[:, i])), "sd": float(ref_points[:, i].std(ddof=1)) if k > 1 else None}
        for i, a in enumerate(attacks)}
    empty = {"verdict": "inconclusive", "over_unlearning": False, "verdict_detail": {}, "power": {}, "has_power": False, "auc_spread": spread}
    judged = [a for a in attacks if "unlearned" in boot[a]]
    if not judged:
        return {**empty, "verdict_reason": "There is no unlearned model to judge." if boot else "No membership attack ran on the unlearned model."}
    b = len(boot[judged[0]]["unlearned"])
    ref_b = np.full((b, len(attacks)), 0.5) if k == 0 else ref_boot.mean(axis=1)
    ref_p = np.full(len(attacks), 0.5) if k == 0 else ref_points.mean(axis=0)
    train = _training_draws(ref_points, b, alpha, seed) if k else np.zeros((b, len(attacks)))

    def bounds(role):
        cols = [i for i, a in enumerate(attacks) if role in boot[a]]
        d_boot = np.stack([np.asarray(boot[attacks[i]][role]) - ref_b[:, i] for i in cols], axis=1)
        d_hat = np.array([point[attacks[i]][role] - ref_p[i] for i in cols])
        deviations = (d_boot - d_hat) + train[:, cols]
        return ([attacks[i] for i in cols], d_hat, deviations, _simultaneous(deviations, d_hat, 1 - alpha, "lower"),
                _simultaneous(deviations, d_hat, 1 - alpha, "upper"))

    names, d_hat, dev, lower, upper = bounds("unlearned")
    power: dict[str, dict] = {}
    if any("original" in boot[a] for a in attacks):
        o_names, o_hat, _, o_lower, o_upper = bounds("original")
        power = {a: {"d": float(o_hat[i]), "d_ci": [float(o_lower[i]), float(o_upper[i])]} for i, a in enumerate(o_names)}
    has_power = any(p["d_ci"][0] > 0 for p in power.values())
    ref_kind = "chance" if k == 0 else "retrained"
    detail, flagged, over, outside = {}, [], [], []
    for i, a in enumerate(names):
        tost = [float(d_hat[i] + np.quantile(dev[:, i], alpha)), float(d_hat[i] + np.quantile(dev[:, i], 1 - alpha))]
        detail[a] = {"reference": ref_kind, "reference_auc": float(ref_p[attacks.index(a)]), "auc_difference": float(d_hat[i]),
                     "lower_bound": float(lower[i]), "upper_bound": float(upper[i]), "equivalence_interval": tost,
                     "within_margin": bool(-margin <= tost[0] and tost[1] <= margin)}
        flagged += [a] * bool(lower[i] > 0)
        over += [a] * bool(upper[i] < 0)
        outside += [a] * (not detail[a]["within_margin"])
    m = len(names)
    ref_words = "chance (AUC 0.5)" if k == 0 else ("the retrained model" if k == 1 else f"{k} retrains")
    if flagged:
        a = max(flagged, key=lambda x: detail[x]["lower_bound"])
        dd = detail[a]
        verdict = "not_forgotten"
        reason = (f"The {a} attack still tells the forgotten records from held-out data better than against {ref_words}: "
                  f"AUC {point[a]['unlearned']:.3f}, {dd['auc_difference']:+.3f} over the reference, and even the lower "
                  f"confidence bound ({dd['lower_bound']:+.3f}, corrected for {m} attack{'s' * (m > 1)}) is above zero.")
    elif outside:
        a = max(outside, key=lambda x: detail[x]["equivalence_interval"][1] - detail[x]["equivalence_interval"][0])
        lo, hi = detail[a]["equivalence_interval"]
        verdict = "inconclusive"
        reason = (f"No attack shows membership beyond {ref_words} with confidence, but the {a} attack's interval of the AUC "
                  f"difference [{lo:+.3f}, {hi:+.3f}] reaches beyond the +/-{margin:g} margin, so equivalence is not shown: "
                  "more forgotten records or held-out data, or more retrains, would narrow it.")
        if not has_power:
            reason += " " + _no_power_reason(power, bool(power))
    elif not has_power:
        verdict = "inconclusive"
        reason = (f"No attack does better than against {ref_words}, and all {m} intervals lie within +/-{margin:g}, yet that is "
                  "not evidence of forgetting. " + _no_power_reason(power, bool(power)))
    else:
        best = max(power, key=lambda x: power[x]["d_ci"][0])
        verdict = "forgotten"
        reason = (f"No attack does better than against {ref_words}, for all {m} attack{'s' * (m > 1)} the confidence interval "
                  f"of the AUC difference lies within +/-{margin:g} of the reference, and the audit has power: the {best} attack "
                  f"tells the untouched original from the reference (AUC difference {power[best]['d']:+.3f}, lower bound "
                  f"{power[best]['d_ci'][0]:+.3f}).")
    if k == 1:
        reason += (" With one retrain, retraining's own randomness is not in the test (a second exact retrain can differ by "
                   "chance); use several retrains (--retrains 4).")
    if over:
        reason += (f" Over-unlearning: under {', '.join(over)} the forget set looks less member-like than the reference, "
                   "which an attacker can also detect.")
    return {"verdict": verdict, "verdict_reason": reason, "over_unlearning": bool(over), "verdict_detail": detail, "power": power,
            "has_power": has_power, "auc_spread": spread}


def judge(scores: dict[str, dict], *, margin: float = 0.1, alpha: float = 0.05, bootstrap: int = 200, seed: int = 0) -> dict:
    """The verdict from raw scores: the general entry point (threat and diffusion audits call this).

    ``scores[attack]`` maps ``original`` and ``unlearned`` to ``(member_scores, nonmember_scores)``
    (higher = more member-like) and ``retrains`` to a list of K such pairs (exact retrains), all on
    the same members and non-members. Returns what :func:`decide` returns.

    >>> rng = np.random.default_rng(0)
    >>> same = lambda: (rng.normal(0, 1, 200), rng.normal(0, 1, 400))
    >>> leaky = (rng.normal(1.5, 1, 200), rng.normal(0, 1, 400))
    >>> judge({"loss": {"original": leaky, "unlearned": leaky, "retrains": [same() for _ in range(4)]}})["verdict"]
    'not_forgotten'
    """
    boot: dict[str, dict] = {}
    point: dict[str, dict] = {}
    for attack, per_model in scores.items():
        pairs = {role: per_model[role] for role in ("original", "unlearned") if per_model.get(role) is not None}
        retrains = list(per_model.get("retrains") or [])
        sizes = {(len(m), len(n)) for m, n in [*pairs.values(), *retrains]}
        if len(sizes) != 1:
            raise ValueError("every model must be scored on the same members and non-members")
        idx = resamples(*sizes.pop(), bootstrap, seed + 1)
        boot[attack] = {role: bootstrap_aucs(m, n, idx) for role, (m, n) in pairs.items()}
        point[attack] = {role: auc_fast(m, n) for role, (m, n) in pairs.items()}
        if retrains:
            boot[attack]["retrains"] = np.stack([bootstrap_aucs(m, n, idx) for m, n in retrains], axis=1)
            point[attack]["retrains"] = [auc_fast(m, n) for m, n in retrains]
    return decide(boot, point, margin=margin, alpha=alpha, seed=seed)


def _p_values(scores: np.ndarray, nonmember_scores: np.ndarray) -> np.ndarray:
    """Empirical p-value of each score against the non-members: (1 + #{non-member >= s}) / (1 + n)."""
    srt = np.sort(nonmember_scores)
    greater_equal = srt.size - np.searchsorted(srt, scores, side="left")
    return (1 + greater_equal) / (1 + srt.size)


def benjamini_hochberg(p: np.ndarray, q: float) -> np.ndarray:
    """Booleans: which hypotheses BH rejects at false-discovery rate q."""
    order = np.argsort(p)
    n = p.size
    passed = p[order] <= q * np.arange(1, n + 1) / n
    reject = np.zeros(n, dtype=bool)
    if passed.any():
        reject[order[: np.max(np.flatnonzero(passed)) + 1]] = True
    return reject


def record_verdicts(attack: str, scores: dict, member_idx: np.ndarray, member_labels: np.ndarray, class_names) -> list[dict]:
    """Per forgotten record, under ``attack``: its score on the unlearned model, its p-value against
    held-out data (the share of held-out samples scoring at least as high), its exposure
    (-log2 p: 0 = typical of unseen data, 7 = above all of 127 held-out samples), the same under
    the original and the retrains, and a three-way verdict.

    ``scores`` maps ``unlearned`` and ``original`` to ``(members, nonmembers)`` and ``retrains`` to a
    list of them (or one ``retrained``). ``not_forgotten``: Benjamini-Hochberg at FDR 10% over the
    records flags it, and it stands out more than under every retrain. ``forgotten`` only with
    positive evidence that it now scores as under retraining: the original flagged it (BH) and more
    than under any retrain (it was memorised, not merely easy), and the unlearned model stands out no
    more than under some retrain (without retrains: not in the top 10% of held-out data).
    ``inconclusive`` otherwise, e.g. every record the original never exposed."""
    if "unlearned" not in scores:
        return []
    m, n = scores["unlearned"]
    p = _p_values(m, n)
    retrains = list(scores.get("retrains") or ([scores["retrained"]] if "retrained" in scores else []))
    ref_ps = np.stack([_p_values(*pair) for pair in retrains]) if retrains else None
    ref_min = None if ref_ps is None else ref_ps.min(axis=0)
    orig = _p_values(*scores["original"]) if "original" in scores else None
    exposed = benjamini_hochberg(orig, RECORD_FDR) if orig is not None else np.zeros(p.size, dtype=bool)
    if orig is not None and ref_min is not None:
        exposed &= orig < ref_min
    flagged = benjamini_hochberg(p, RECORD_FDR)
    out = []
    for i, idx in enumerate(member_idx):
        if flagged[i] and (ref_min is None or p[i] < ref_min[i]):
            verdict = "not_forgotten"
        elif exposed[i] and (p[i] >= ref_min[i] if ref_min is not None else p[i] >= RECORD_FORGOTTEN_P):
            verdict = "forgotten"
        else:
            verdict = "inconclusive"
        out.append({
            "index": int(idx), "label": int(member_labels[i]), "class": class_names[int(member_labels[i])], "attack": attack,
            "score": float(m[i]), "p_value": float(p[i]), "exposure": float(-np.log2(p[i])),
            "retrained_p_value": None if ref_ps is None else float(np.median(ref_ps[:, i])),
            "original_p_value": None if orig is None else float(orig[i]),
            "verdict": verdict,
        })
    return out


def record_counts(records: list[dict]) -> dict[str, int]:
    """How many records got each of the three per-record verdicts."""
    return {v: sum(r["verdict"] == v for r in records) for v in RECORD_VERDICTS}
