"""Honest uncertainty and the verdict: bootstrap intervals, the forgotten / not-forgotten rule,
over-unlearning, per-class slices and per-record verdicts.

**The rule** (:data:`VERDICT_RULE`, printed on the page and in the report). For every attack that
measures membership in one model, d = AUC(unlearned) - AUC(reference), where the reference is
the retrained model's AUC on the same records when a retrained model is given, else 0.5 (chance).
Intervals come from a paired bootstrap (members and non-members resampled separately, the same
resample for both models).

- ``not_forgotten``: some attack's one-sided lower bound of d is above 0, the bounds being
  simultaneous over the m attacks at level alpha (bootstrap max-t, Westfall & Young: tighter than
  Bonferroni when attacks agree, as LOSS and confidence always do): the forget set is more
  member-like than the reference, with confidence, after correcting for trying several attacks.
- ``forgotten``: no attack is, and for every attack the (1 - 2 alpha) interval of d lies within
  [-margin, +margin] (two one-sided tests; "all attacks equivalent" is an intersection-union
  test, which needs no multiplicity correction).
- ``inconclusive``: otherwise (too few records for the margin, or an interval straddling it).

``over_unlearning``: some attack's simultaneous upper bound of d is below 0: the forget
set now looks *less* member-like than the reference, which an attacker can detect too.
"""

from __future__ import annotations

import numpy as np

__all__ = ["VERDICT_RULE", "auc_fast", "bootstrap_aucs", "decide", "per_class_aucs", "record_verdicts", "roc_intervals"]

VERDICT_RULE = (
    "Reference: the retrained model's AUC on the same records when a retrained model is given, else chance (0.5). "
    "For each membership attack, d = AUC(unlearned) - AUC(reference), with paired bootstrap intervals. "
    "not_forgotten: some attack's lower bound of d (one-sided, simultaneous over the attacks at level alpha by the bootstrap max-t "
    "method) is above 0. "
    "forgotten: no attack is, and every attack's (1 - 2 alpha) interval of d lies within +/- the margin. "
    "inconclusive: otherwise."
)
#: Records whose scores rank among the top share of held-out data are not called forgotten.
RECORD_FORGOTTEN_P = 0.1
#: False-discovery rate for flagging individual records (Benjamini-Hochberg).
RECORD_FDR = 0.1


def auc_fast(members: np.ndarray, nonmembers: np.ndarray) -> float:
    """AUC by the Mann-Whitney statistic (ties count half); equals scikit-learn's roc_auc_score."""
    from scipy.stats import rankdata

    ranks = rankdata(np.r_[members, nonmembers])
    n1, n0 = len(members), len(nonmembers)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def resamples(n_members: int, n_nonmembers: int, b: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_members, size=(b, n_members)), rng.integers(0, n_nonmembers, size=(b, n_nonmembers))


def bootstrap_aucs(members: np.ndarray, nonmembers: np.ndarray, idx: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """AUC on each bootstrap resample ``idx`` (from :func:`resamples`)."""
    return np.array([auc_fast(members[m], nonmembers[n]) for m, n in zip(idx[0], idx[1], strict=True)])


def roc_intervals(members: np.ndarray, nonmembers: np.ndarray, idx, level: float = 0.95) -> tuple[dict, np.ndarray]:
    """Percentile bootstrap intervals of AUC and of TPR at 1% / 0.1% / 0.01% FPR (None where the FPR is not
    meaningful), and the bootstrap AUCs themselves."""
    from .metrics import roc_from_scores

    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    aucs = bootstrap_aucs(members, nonmembers, idx)
    out = {"auc_ci": [float(np.quantile(aucs, lo_q)), float(np.quantile(aucs, hi_q))]}
    tprs: dict[str, list] = {}
    for m, n in zip(idx[0][:200], idx[1][:200], strict=True):
        for key, value in roc_from_scores(members[m], nonmembers[n]).tpr_at.items():
            tprs.setdefault(key, []).append(value)
    for key, values in tprs.items():
        out[f"{key}_ci"] = None if any(v is None for v in values) else [float(np.quantile(values, lo_q)), float(np.quantile(values, hi_q))]
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


def _simultaneous(d_boot: np.ndarray, d_hat: np.ndarray, level: float, side: str) -> np.ndarray:
    """Simultaneous one-sided bounds over attacks by the bootstrap max-t method (Westfall & Young):
    the critical value is the ``level`` quantile of the largest standardised deviation over attacks,
    so near-duplicate attacks (LOSS and confidence rank alike) cost less than Bonferroni would."""
    se = np.maximum(d_boot.std(axis=0, ddof=1), 1e-9)
    t = (d_boot - d_hat) / se
    worst = np.max(t if side == "lower" else -t, axis=1)
    c = float(np.quantile(worst, level))
    return d_hat - c * se if side == "lower" else d_hat + c * se


def decide(boot: dict[str, dict[str, np.ndarray]], point: dict[str, dict[str, float]], *, margin: float = 0.1, alpha: float = 0.05) -> dict:
    """The verdict from bootstrap AUCs ``boot[attack][role]`` and point AUCs ``point[attack][role]``
    of the attacks that take part. Returns verdict, verdict_reason, over_unlearning and per-attack details."""
    attacks = [a for a in boot if "unlearned" in boot[a]]
    if not attacks:
        reason = ("There is no unlearned model to judge." if boot else "No membership attack ran on the unlearned model.")
        return {"verdict": "inconclusive", "verdict_reason": reason, "over_unlearning": False, "verdict_detail": {}}
    m = len(attacks)
    refs = {a: "retrained" if "retrained" in boot[a] else "chance" for a in attacks}
    d_boot = np.stack([boot[a]["unlearned"] - (boot[a]["retrained"] if refs[a] == "retrained" else 0.5) for a in attacks], axis=1)
    d_hat = np.array([point[a]["unlearned"] - (point[a]["retrained"] if refs[a] == "retrained" else 0.5) for a in attacks])
    lower = _simultaneous(d_boot, d_hat, 1 - alpha, "lower")
    upper = _simultaneous(d_boot, d_hat, 1 - alpha, "upper")
    detail = {}
    flagged, over, outside = [], [], []
    for i, a in enumerate(attacks):
        tost = [float(np.quantile(d_boot[:, i], alpha)), float(np.quantile(d_boot[:, i], 1 - alpha))]
        detail[a] = {"reference": refs[a], "auc_difference": float(d_hat[i]), "lower_bound": float(lower[i]), "upper_bound": float(upper[i]),
                     "equivalence_interval": tost, "within_margin": bool(-margin <= tost[0] and tost[1] <= margin)}
        if lower[i] > 0:
            flagged.append(a)
        if upper[i] < 0:
            over.append(a)
        if not detail[a]["within_margin"]:
            outside.append(a)
    ref_words = "the retrained model" if all(r == "retrained" for r in refs.values()) else "chance (AUC 0.5)"
    if flagged:
        a = max(flagged, key=lambda x: detail[x]["lower_bound"])
        dd = detail[a]
        verdict = "not_forgotten"
        reason = (f"The {a} attack still tells the forgotten records from held-out data better than against {ref_words}: "
                  f"AUC {point[a]['unlearned']:.3f}, {dd['auc_difference']:+.3f} over the reference, and even the lower "
                  f"confidence bound ({dd['lower_bound']:+.3f}, corrected for {m} attack{'s' * (m > 1)}) is above zero.")
    elif not outside:
        verdict = "forgotten"
        reason = (f"No attack does better than against {ref_words}, and for all {m} attack{'s' * (m > 1)} the confidence interval "
                  f"of the AUC difference lies within +/-{margin:g} of the reference.")
    else:
        a = max(outside, key=lambda x: detail[x]["equivalence_interval"][1] - detail[x]["equivalence_interval"][0])
        lo, hi = detail[a]["equivalence_interval"]
        verdict = "inconclusive"
        reason = (f"No attack shows membership beyond {ref_words} with confidence, but the {a} attack's interval of the AUC "
                  f"difference [{lo:+.3f}, {hi:+.3f}] reaches beyond the +/-{margin:g} margin, so equivalence is not shown: "
                  "more forgotten records or held-out data would narrow it.")
    if over:
        reason += (f" Over-unlearning: under {', '.join(over)} the forget set looks less member-like than the reference, "
                   "which an attacker can also detect.")
    return {"verdict": verdict, "verdict_reason": reason, "over_unlearning": bool(over), "verdict_detail": detail}


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


def record_verdicts(attack: str, scores: dict[str, tuple[np.ndarray, np.ndarray]], member_idx: np.ndarray, member_labels: np.ndarray,
                    class_names) -> list[dict]:
    """Per forgotten record, under ``attack``: its score on the unlearned model, its p-value against
    held-out data (the share of held-out samples scoring at least as high), its exposure
    (-log2 p: 0 = typical of unseen data, 7 = above all of 127 held-out samples), the same under
    the retrained model, and a verdict: ``not_forgotten`` when Benjamini-Hochberg at FDR 10% over the
    records flags it (and it stands out more than under the retrained model, if given);
    ``forgotten`` when it is not among the top 10% of held-out data (or stands out no more than under
    the retrained model); ``inconclusive`` otherwise."""
    if "unlearned" not in scores:
        return []
    m, n = scores["unlearned"]
    p = _p_values(m, n)
    ref_p = _p_values(*scores["retrained"]) if "retrained" in scores else None
    orig = _p_values(*scores["original"]) if "original" in scores else None
    flagged = benjamini_hochberg(p, RECORD_FDR)
    out = []
    for i, idx in enumerate(member_idx):
        beyond_ref = ref_p is None or p[i] < ref_p[i]
        if flagged[i] and beyond_ref:
            verdict = "not_forgotten"
        elif p[i] >= RECORD_FORGOTTEN_P or (ref_p is not None and p[i] >= ref_p[i]):
            verdict = "forgotten"
        else:
            verdict = "inconclusive"
        out.append({
            "index": int(idx), "label": int(member_labels[i]), "class": class_names[int(member_labels[i])], "attack": attack,
            "score": float(m[i]), "p_value": float(p[i]), "exposure": float(-np.log2(p[i])),
            "retrained_p_value": None if ref_p is None else float(ref_p[i]),
            "original_p_value": None if orig is None else float(orig[i]),
            "verdict": verdict,
        })
    return out
