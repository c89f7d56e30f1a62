"""ROC metrics of membership scores and the class-matched choice of non-members."""

from __future__ import annotations

import numpy as np
import pytest

from mu_core.audit.metrics import TPR_TARGETS, matched_nonmembers, roc_from_scores, tpr_at_fpr
from mu_core.errors import AuditInputError


def test_perfectly_separated_scores_give_auc_one_and_full_tpr_at_1pct():
    rng = np.random.default_rng(0)
    roc = roc_from_scores(rng.uniform(1, 2, 100), rng.uniform(-2, -1, 100))
    assert roc.auc == 1.0
    assert roc.tpr_at["tpr_at_1pct_fpr"] == 1.0
    assert roc.tpr_at["tpr_at_0p1pct_fpr"] is None  # 100 non-members cannot measure 0.1 %
    assert (roc.n_members, roc.n_nonmembers) == (100, 100)


def test_inverted_scores_give_auc_zero_and_no_tpr_at_low_fpr():
    rng = np.random.default_rng(0)
    roc = roc_from_scores(rng.uniform(-2, -1, 100), rng.uniform(1, 2, 100))
    assert roc.auc == 0.0
    assert roc.tpr_at["tpr_at_1pct_fpr"] == 0.0


def test_identically_distributed_scores_give_auc_near_one_half():
    rng = np.random.default_rng(1)
    roc = roc_from_scores(rng.normal(size=5000), rng.normal(size=5000))
    # the AUC of two samples of 5,000 from one distribution has a standard error of about 0.006
    assert abs(roc.auc - 0.5) < 0.03
    assert roc.tpr_at["tpr_at_1pct_fpr"] < 0.03
    assert roc.tpr_at["tpr_at_0p01pct_fpr"] is None  # needs 10,000 non-members


def test_small_example_matches_the_hand_computed_roc():
    # pairs (member > non-member): 0.9 beats both, 0.8 beats both, 0.4 beats 0.3 only: 5 of 6
    roc = roc_from_scores(np.array([0.9, 0.8, 0.4]), np.array([0.7, 0.3]))
    assert roc.auc == pytest.approx(5 / 6)
    # one step per threshold: 0.9, 0.8 (members), 0.7 (non-member), 0.4 (member), 0.3 (non-member)
    assert roc.fpr.tolist() == [0.0, 0.0, 0.0, 0.5, 0.5, 1.0]
    assert roc.tpr == pytest.approx([0.0, 1 / 3, 2 / 3, 2 / 3, 1.0, 1.0])
    assert all(value is None for value in roc.tpr_at.values())  # two non-members measure no low FPR
    # read off the same curve with enough non-members: the best TPR at each FPR bound
    assert tpr_at_fpr(roc.fpr, roc.tpr, 0.01, 100) == pytest.approx(2 / 3)
    assert tpr_at_fpr(roc.fpr, roc.tpr, 0.5, 100) == 1.0
    assert tpr_at_fpr(np.array([0.2, 1.0]), np.array([0.5, 1.0]), 0.01, 100) == 0.0


def test_tpr_at_1pct_needs_100_nonmembers():
    members = np.linspace(1, 2, 50)
    assert roc_from_scores(members, np.linspace(-1, 0, 99)).tpr_at["tpr_at_1pct_fpr"] is None
    assert roc_from_scores(members, np.linspace(-1, 0, 100)).tpr_at["tpr_at_1pct_fpr"] == 1.0
    assert tpr_at_fpr(np.array([0.0, 1.0]), np.array([0.3, 1.0]), 0.001, 999) is None
    assert tpr_at_fpr(np.array([0.0, 1.0]), np.array([0.3, 1.0]), 0.001, 1000) == 0.3


def test_roc_to_dict_has_every_tpr_target_and_the_curve():
    roc = roc_from_scores(np.array([0.9, 0.8, 0.4]), np.array([0.7, 0.3]))
    data = roc.to_dict()
    assert set(TPR_TARGETS) <= set(data)
    assert data["roc"]["fpr"] == [0.0, 0.0, 0.0, 0.5, 0.5, 1.0]
    assert data["roc"]["tpr"][1] == 0.333333
    assert (data["auc"], data["n_members"], data["n_nonmembers"]) == (pytest.approx(5 / 6), 3, 2)
    assert "roc" not in roc.to_dict(with_curve=False)


def test_roc_refuses_empty_and_non_finite_scores():
    with pytest.raises(AuditInputError, match="at least one member and one non-member"):
        roc_from_scores(np.array([]), np.array([0.1]))
    with pytest.raises(ValueError, match="finite"):
        roc_from_scores(np.array([np.nan, 1.0]), np.array([0.1]))


def test_matched_nonmembers_keep_the_members_class_proportions():
    member_labels = np.array([0] * 10 + [1] * 20 + [2] * 5)
    pool_labels = np.array([0] * 40 + [1] * 30 + [2] * 100)
    chosen = matched_nonmembers(member_labels, pool_labels, seed=0)
    # class 1 limits the ratio to 30 / 20 = 1.5: 15, 30 and floor(7.5) = 7 non-members
    assert np.bincount(pool_labels[chosen]).tolist() == [15, 30, 7]
    assert len(np.unique(chosen)) == len(chosen) == 52
    assert np.all(np.diff(chosen) > 0)


def test_matched_nonmembers_are_seeded():
    member_labels = np.array([0] * 5 + [1] * 10)
    pool_labels = np.tile([0, 1], 100)
    first = matched_nonmembers(member_labels, pool_labels, seed=3)
    # class 1 limits the ratio to 100 / 10: all 100 of class 1, a seeded 50 of class 0's 100
    assert np.bincount(pool_labels[first]).tolist() == [50, 100]
    assert matched_nonmembers(member_labels, pool_labels, seed=3).tolist() == first.tolist()
    assert matched_nonmembers(member_labels, pool_labels, seed=4).tolist() != first.tolist()


def test_matched_nonmembers_need_every_member_class_in_the_pool():
    with pytest.raises(AuditInputError, match="no sample of class 2"):
        matched_nonmembers(np.array([0, 2]), np.array([0, 0, 1]))
