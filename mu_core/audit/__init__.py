"""Audit metrics (ROC, TPR at low FPR), member/non-member sampling and the audit report."""

from __future__ import annotations

from .metrics import TPR_TARGETS, RocResult, matched_nonmembers, roc_from_scores, tpr_at_fpr

__all__ = ["TPR_TARGETS", "RocResult", "matched_nonmembers", "roc_from_scores", "tpr_at_fpr"]
