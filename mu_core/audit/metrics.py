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
