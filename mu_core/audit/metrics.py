"""ROC metrics for membership inference (members are the positives)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import AuditInputError

#: Report keys for TPR at fixed FPR, and their targets.
TPR_TARGETS: dict[str, float] = {
    "tpr_at_1pct_fpr": 0.01,
    "tpr_at_0p1pct_fpr": 0.001,
    "tpr_at_0p01pct_fpr": 0.0001,
}


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float, n_nonmembers: int) -> float | None:
    """The largest TPR whose FPR is <= ``target``; ``None`` when fewer than ``1/target``
    non-members make that FPR meaningless (one false positive would already exceed it).

    >>> tpr_at_fpr(np.array([0.0, 0.5, 1.0]), np.array([0.4, 0.9, 1.0]), 0.01, 100)
    0.4
    >>> tpr_at_fpr(np.array([0.0, 1.0]), np.array([0.0, 1.0]), 0.001, 100) is None
    True
    """
    if n_nonmembers < round(1.0 / target):
        return None
    ok = np.asarray(fpr) <= target + 1e-12
    return float(np.max(np.asarray(tpr)[ok])) if ok.any() else 0.0


@dataclass(frozen=True, eq=False)
class RocResult:
    """An ROC curve with its AUC and TPR at the fixed FPRs of :data:`TPR_TARGETS`."""

    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)
    auc: float
    tpr_at: dict[str, float | None]
    n_members: int
    n_nonmembers: int

    def to_dict(self, *, with_curve: bool = True) -> dict:
        out: dict = {"auc": self.auc, **self.tpr_at, "n_members": self.n_members, "n_nonmembers": self.n_nonmembers}
        if with_curve:
            out["roc"] = {"fpr": np.round(self.fpr, 6).tolist(), "tpr": np.round(self.tpr, 6).tolist()}
        return out


def roc_from_scores(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> RocResult:
    """ROC of scores where higher = more member-like, via scikit-learn's ``roc_curve``."""
    from sklearn.metrics import roc_auc_score, roc_curve

    members = np.asarray(member_scores, dtype=np.float64)
    nonmembers = np.asarray(nonmember_scores, dtype=np.float64)
    if members.size == 0 or nonmembers.size == 0:
        raise AuditInputError("An ROC needs at least one member and one non-member.")
    if not (np.all(np.isfinite(members)) and np.all(np.isfinite(nonmembers))):
        raise ValueError("membership scores must be finite")
    labels = np.r_[np.ones(members.size), np.zeros(nonmembers.size)]
    scores = np.r_[members, nonmembers]
    fpr, tpr, _ = roc_curve(labels, scores)
    return RocResult(
        fpr=fpr,
        tpr=tpr,
        auc=float(roc_auc_score(labels, scores)),
        tpr_at={key: tpr_at_fpr(fpr, tpr, target, nonmembers.size) for key, target in TPR_TARGETS.items()},
        n_members=int(members.size),
        n_nonmembers=int(nonmembers.size),
    )


def matched_nonmembers(member_labels: np.ndarray, pool_labels: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Indices into the held-out pool with the members' class proportions, as many as possible.

    For each class c with m_c members, ``floor(r * m_c)`` pool samples of class c are drawn
    (seeded), where r is the largest ratio every class can supply. Class difficulty therefore
    cannot pass for membership.
    """
    member_labels = np.asarray(member_labels)
    pool_labels = np.asarray(pool_labels)
    classes, counts = np.unique(member_labels, return_counts=True)
    available = np.array([(pool_labels == c).sum() for c in classes])
    if np.any(available == 0):
        missing = classes[available == 0][0]
        raise AuditInputError(f"The held-out data has no sample of class {int(missing)}, so no matched non-members exist.")
    ratio = float(np.min(available / counts))
    rng = np.random.default_rng(seed)
    chosen = []
    for c, m in zip(classes, counts, strict=True):
        take = max(1, int(np.floor(ratio * m + 1e-9)))
        pool = np.flatnonzero(pool_labels == c)
        chosen.append(np.sort(rng.choice(pool, size=min(take, pool.size), replace=False)))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


#: Confidence of the empirical epsilon lower bound (two Clopper-Pearson bounds at (1 + level) / 2 each).
EPSILON_LEVEL = 0.95


def epsilon_lower_bound(member_scores: np.ndarray, nonmember_scores: np.ndarray, *, level: float = EPSILON_LEVEL) -> dict:
    """An empirical epsilon lower bound from the attack's ROC, as DP auditing does (Jagielski et al. 2020;
    Nasr et al. 2021; ML Privacy Meter's DP audit), with delta = 0.

    A mechanism that is epsilon-DP for one record bounds every threshold attack by TPR <= e^eps FPR and
    TNR <= e^eps FNR. At each threshold, Clopper-Pearson gives a lower bound on TPR and an upper bound
    on FPR (each at (1 + level) / 2, so both hold together at ``level``); eps_lb = max(log(TPR_lo / FPR_hi),
    log(TNR_lo / FNR_hi)), maximised over thresholds. Deliberate caveat, also in the report: the
    threshold is picked on the same scores it is evaluated on, so the maximum is optimistic (the
    confidence holds for one threshold fixed in advance, not for the best of many). Returns
    ``epsilon_lower`` (>= 0, natural log) and the threshold, TPR and FPR where it is reached.

    >>> round(epsilon_lower_bound(np.ones(100), np.zeros(100))["epsilon_lower"], 2)  # 100 vs 100 split perfectly: log(0.964 / 0.036)
    3.28
    """
    from scipy.stats import beta

    members = np.sort(np.asarray(member_scores, dtype=np.float64))
    nonmembers = np.sort(np.asarray(nonmember_scores, dtype=np.float64))
    n1, n0 = members.size, nonmembers.size
    if n1 == 0 or n0 == 0:
        raise AuditInputError("An epsilon bound needs at least one member and one non-member.")
    thresholds = np.unique(np.r_[members, nonmembers])
    tp = n1 - np.searchsorted(members, thresholds, "left")  # "member if score >= t"
    fp = n0 - np.searchsorted(nonmembers, thresholds, "left")
    a = (1 - level) / 2
    tpr_lo = np.where(tp > 0, beta.ppf(a, np.maximum(tp, 1), n1 - tp + 1), 0.0)
    fpr_hi = np.where(fp < n0, beta.ppf(1 - a, fp + 1, np.maximum(n0 - fp, 1)), 1.0)
    with np.errstate(divide="ignore"):
        eps = np.maximum(np.log(tpr_lo) - np.log(fpr_hi), np.log(1 - fpr_hi) - np.log(1 - tpr_lo))
    eps = np.where(np.isfinite(eps), eps, 0.0)
    best = int(np.argmax(eps))
    return {"epsilon_lower": float(max(eps[best], 0.0)), "threshold": float(thresholds[best]),
            "tpr": float(tp[best] / n1), "fpr": float(fp[best] / n0)}
