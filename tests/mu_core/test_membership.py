"""Membership attacks, intervals and the verdict: formulas on synthetic scores with known answers,
then known answers on an overfit digits model (the slow part, shared by a module fixture)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from mu_core.attacks.features import augmentations, lira_phi, true_log_prob
from mu_core.attacks.reference import heldout_pool, keep_mask, reference_pool
from mu_core.attacks.reference_attacks import _rmia_from
from mu_core.attacks.threshold import best_threshold
from mu_core.attacks.unlearning import epsilon_from_samples, forgetting_points, same_size_requests
from mu_core.audit.metrics import epsilon_lower_bound, roc_from_scores
from mu_core.audit.verdict import (
    auc_fast,
    benjamini_hochberg,
    bootstrap_aucs,
    bootstrap_tprs,
    decide,
    judge,
    record_counts,
    record_verdicts,
    resamples,
    roc_intervals,
)

# ---------------------------------------------------------------- formulas on synthetic scores


def test_auc_fast_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    members, nonmembers = rng.integers(0, 5, 300).astype(float), rng.integers(0, 4, 500).astype(float)
    labels = np.r_[np.ones(300), np.zeros(500)]
    assert auc_fast(members, nonmembers) == pytest.approx(roc_auc_score(labels, np.r_[members, nonmembers]))


def test_bootstrap_intervals_cover_the_known_auc_of_two_gaussians() -> None:
    # members ~ N(1, 1), non-members ~ N(0, 1): AUC = Phi(1 / sqrt(2)) = 0.7602. Over 60 seeded
    # repetitions a 95% interval should miss about 3 times; more than 9 misses would be a bug.
    truth = norm.cdf(1 / np.sqrt(2))
    misses = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        members, nonmembers = rng.normal(1, 1, 150), rng.normal(0, 1, 300)
        aucs = bootstrap_aucs(members, nonmembers, resamples(150, 300, 200, seed=1000 + seed))
        lo, hi = np.quantile(aucs, [0.025, 0.975])
        misses += not lo < truth < hi
    assert misses <= 9
    rng = np.random.default_rng(1)
    intervals, aucs = roc_intervals(rng.normal(1, 1, 1500), rng.normal(0, 1, 1500), resamples(1500, 1500, 100, seed=2))
    assert 0.01 < intervals["auc_ci"][1] - intervals["auc_ci"][0] < 0.06  # about 4 standard errors of 0.012
    assert intervals["tpr_at_1pct_fpr_ci"] is not None and intervals["tpr_at_0p01pct_fpr_ci"] is None  # 1500 < 10,000 non-members
    assert aucs.shape == (100,)


def _boot(members, nonmembers, seed=0, b=200):
    return bootstrap_aucs(members, nonmembers, resamples(len(members), len(nonmembers), b, seed))


def test_verdict_separable_scores_are_not_forgotten() -> None:
    rng = np.random.default_rng(3)
    m, n = rng.normal(1.5, 1, 100), rng.normal(0, 1, 300)
    out = decide({"loss": {"unlearned": _boot(m, n)}}, {"loss": {"unlearned": auc_fast(m, n)}})
    assert out["verdict"] == "not_forgotten"
    assert "loss" in out["verdict_reason"] and "chance" in out["verdict_reason"]
    assert not out["over_unlearning"]


def test_verdict_indistinguishable_scores_with_enough_records_are_forgotten_only_with_power() -> None:
    rng = np.random.default_rng(4)
    m, n = rng.normal(0, 1, 1000), rng.normal(0, 1, 3000)
    idx = resamples(1000, 3000, 200, seed=0)
    leaky = m + 1.0  # the original: its members stand out
    boot = {"loss": {"unlearned": bootstrap_aucs(m, n, idx), "original": bootstrap_aucs(leaky, n, idx)},
            "entropy": {"unlearned": bootstrap_aucs(-m, -n, idx), "original": bootstrap_aucs(-m + 0.05, -n, idx)}}
    point = {"loss": {"unlearned": auc_fast(m, n), "original": auc_fast(leaky, n)},
             "entropy": {"unlearned": auc_fast(-m, -n), "original": auc_fast(-m + 0.05, -n)}}
    out = decide(boot, point)
    assert out["verdict"] == "forgotten" and out["has_power"], out["verdict_reason"]
    assert out["power"]["loss"]["d_ci"][0] > 0.1 and "power" in out["verdict_reason"]
    # the same unlearned model, but the original is no leakier: no power, so no "forgotten"
    for attack in boot:
        boot[attack]["original"], point[attack]["original"] = boot[attack]["unlearned"], point[attack]["unlearned"]
    out = decide(boot, point)
    assert out["verdict"] == "inconclusive" and not out["has_power"]
    assert "cannot tell even the untouched original from retraining" in out["verdict_reason"]
    assert "more forgotten records" in out["verdict_reason"]
    # and without the original, power cannot be shown
    out = decide({"loss": {"unlearned": boot["loss"]["unlearned"]}}, {"loss": {"unlearned": point["loss"]["unlearned"]}})
    assert out["verdict"] == "inconclusive" and "Without the original" in out["verdict_reason"]


def test_verdict_too_few_records_for_the_margin_is_inconclusive() -> None:
    rng = np.random.default_rng(5)
    m, n = rng.normal(0, 1, 10), rng.normal(0, 1, 30)
    out = decide({"loss": {"unlearned": _boot(m, n)}}, {"loss": {"unlearned": auc_fast(m, n)}})
    assert out["verdict"] == "inconclusive"
    assert "margin" in out["verdict_reason"]


def test_verdict_against_the_retrained_reference_and_over_unlearning() -> None:
    rng = np.random.default_rng(6)
    base_m, base_n = rng.normal(0.3, 1, 200), rng.normal(0, 1, 400)  # the retrained model: some natural signal
    idx = resamples(200, 400, 200, seed=7)
    # an unlearned model that pushed the forget set far below held-out data
    low_m = base_m - 2.0
    boot = {"loss": {"unlearned": bootstrap_aucs(low_m, base_n, idx), "retrained": bootstrap_aucs(base_m, base_n, idx)}}
    point = {"loss": {"unlearned": auc_fast(low_m, base_n), "retrained": auc_fast(base_m, base_n)}}
    out = decide(boot, point)
    assert out["over_unlearning"] and out["verdict"] != "forgotten"
    assert out["verdict_detail"]["loss"]["reference"] == "retrained"
    # the same scores as the reference, and an original that leaks: forgotten (paired bootstrap, the difference is exactly 0)
    leaky = base_m + 1.5
    same = {"loss": {"unlearned": bootstrap_aucs(base_m, base_n, idx), "retrained": bootstrap_aucs(base_m, base_n, idx),
                     "original": bootstrap_aucs(leaky, base_n, idx)}}
    out = decide(same, {"loss": {"unlearned": auc_fast(base_m, base_n), "retrained": auc_fast(base_m, base_n),
                                 "original": auc_fast(leaky, base_n)}})
    assert out["verdict"] == "forgotten" and "retrained model" in out["verdict_reason"]
    assert "With one retrain, retraining's own randomness is not in the test" in out["verdict_reason"]


def test_benjamini_hochberg_known_example() -> None:
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    assert benjamini_hochberg(p, 0.05).tolist() == [True, True] + [False] * 8
    assert benjamini_hochberg(p, 0.09).tolist() == [True] * 5 + [False] * 5  # p5 = 0.042 <= 0.045 carries p3 and p4


def test_record_verdicts_are_three_way_and_forgotten_needs_positive_evidence() -> None:
    rng = np.random.default_rng(8)
    nonmembers = rng.normal(0, 1, 500)
    typical = rng.normal(-1, 0.3, 20)
    # records 0-19 still stand out; 20-39 were exposed by the original and no longer are; 40-59 were never exposed
    unlearned = np.r_[np.full(20, 10.0), typical, typical]
    original = np.r_[np.full(40, 10.0), typical]
    retrains = [(np.r_[typical, typical, typical] + 0.01 * k, nonmembers) for k in range(4)]
    scores = {"unlearned": (unlearned, nonmembers), "original": (original, nonmembers), "retrains": retrains}
    rows = record_verdicts("loss", scores, np.arange(60), np.zeros(60, dtype=int), ("zero",))
    assert [r["verdict"] for r in rows] == ["not_forgotten"] * 20 + ["forgotten"] * 20 + ["inconclusive"] * 20
    assert record_counts(rows) == {"forgotten": 20, "not_forgotten": 20, "inconclusive": 20}
    assert rows[0]["p_value"] == pytest.approx(1 / 501) and rows[0]["exposure"] == pytest.approx(np.log2(501))
    # the untouched original as the unlearned model: never "forgotten"
    fake = record_verdicts("loss", {**scores, "unlearned": scores["original"]}, np.arange(60), np.zeros(60, dtype=int), ("zero",))
    assert record_counts(fake)["forgotten"] == 0 and record_counts(fake)["not_forgotten"] == 40


def test_lira_phi_is_the_log_odds_and_stays_finite() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [1000.0, 0.0, 0.0]])
    y = torch.tensor([0, 0])
    phi = lira_phi(logits, y)
    p = torch.softmax(logits[0].double(), 0)[0].item()
    assert phi[0] == pytest.approx(np.log(p / (1 - p)))
    assert np.isfinite(phi[1]) and phi[1] == pytest.approx(1000 - np.log(2))
    assert true_log_prob(logits, y)[1] == pytest.approx(0.0)


def test_rmia_score_is_the_share_of_population_it_beats() -> None:
    # ratios x: 2, z: 1, 3, 4, 0.5 -> LR(x, z) >= 1 for z in {1, 0.5}
    s = _rmia_from(np.array([2.0]), np.array([1.0]), np.array([1.0, 3.0, 4.0, 0.5]), np.ones(4), gamma=1.0)
    assert s.tolist() == [0.5]


def test_vectorised_bootstrap_matches_one_resample_at_a_time() -> None:
    rng = np.random.default_rng(11)
    members, nonmembers = np.round(rng.normal(0.5, 1, 120), 1), np.round(rng.normal(0, 1, 1100), 1)  # rounded: many ties
    idx = resamples(120, 1100, 40, seed=3)
    loop = [auc_fast(members[m], nonmembers[n]) for m, n in zip(*idx, strict=True)]
    assert np.allclose(bootstrap_aucs(members, nonmembers, idx), loop)
    for key, target in (("tpr_at_1pct_fpr", 0.01), ("tpr_at_0p1pct_fpr", 0.001)):
        expected = [roc_from_scores(members[m], nonmembers[n]).tpr_at[key] for m, n in zip(*idx, strict=True)]
        assert np.allclose(bootstrap_tprs(members, nonmembers, idx, target), expected), key


def test_epsilon_lower_bound_by_clopper_pearson() -> None:
    # perfect separation of 100 vs 100: TPR >= 0.025^(1/100) and FPR <= 1 - that, each at 97.5%
    lo = 0.025 ** (1 / 100)
    out = epsilon_lower_bound(np.ones(100), np.zeros(100))
    assert out["epsilon_lower"] == pytest.approx(np.log(lo / (1 - lo))) and out["tpr"] == 1.0 and out["fpr"] == 0.0
    rng = np.random.default_rng(12)
    same = epsilon_lower_bound(rng.normal(0, 1, 500), rng.normal(0, 1, 500))
    assert same["epsilon_lower"] < 0.5  # indistinguishable: no real evidence against privacy
    more = epsilon_lower_bound(np.ones(1000), np.zeros(1000))
    assert more["epsilon_lower"] > out["epsilon_lower"]  # more samples, tighter bounds


def test_kaggle_epsilon_on_hand_made_losses() -> None:
    # all losses equal: no threshold separates them; epsilon 0 and one point (H = 2 / 2^1)
    equal = epsilon_from_samples(np.full(8, 0.7), np.full(8, 0.7))
    assert equal == 0.0 and forgetting_points(np.array([equal])).tolist() == [1.0]
    # unlearned losses all far above the retrained ones (over-unlearning): FPR = FNR = 1, infinity
    assert epsilon_from_samples(np.array([9.0, 9.5, 10.0]), np.array([0.1, 0.2, 0.3])) == np.inf
    # and far below (not unlearned): FPR = FNR = 0, infinity
    assert epsilon_from_samples(np.array([0.1, 0.2]), np.array([5.0, 6.0])) == np.inf
    # the challenge's bins: [0, 0.5) -> 1, [0.5, 1) -> 1/2, >= 6 or infinite -> 2 / 2^13
    assert forgetting_points(np.array([0.49, 0.5, 5.99, 6.0, np.inf])).tolist() == [1.0, 0.5, 2 / 2**12, 2 / 2**13, 2 / 2**13]


def test_retraining_spread_keeps_a_second_retrain_from_a_false_alarm() -> None:
    # Each "model" shifts its members by its own random amount (training randomness); records are fixed.
    rng = np.random.default_rng(13)
    base_m, base_n = rng.normal(0, 1, 100), rng.normal(0, 1, 300)

    def model(shift):
        return base_m + shift + rng.normal(0, 0.05, 100), base_n + rng.normal(0, 0.05, 300)

    leaky = model(1.0)
    false_alarms_one, false_alarms_four, sds = 0, 0, []
    for _ in range(20):
        shifts = rng.normal(0, 0.25, 5)  # the unlearned model is one more exact retrain
        unlearned, retrains = model(shifts[0]), [model(s) for s in shifts[1:]]
        one = judge({"loss": {"original": leaky, "unlearned": unlearned, "retrains": retrains[:1]}})
        four = judge({"loss": {"original": leaky, "unlearned": unlearned, "retrains": retrains}})
        false_alarms_one += one["verdict"] == "not_forgotten"
        false_alarms_four += four["verdict"] == "not_forgotten"
        sds.append(four["auc_spread"]["loss"]["sd"])
    assert np.mean(sds) > 0.03  # the retrains' own spread, measured
    # alpha 5% of 20 is 1 expected false alarm (here 2; at most 3 allows for the binomial spread); records-only: 8 of 20
    assert false_alarms_four <= 3 and false_alarms_one >= 6, (false_alarms_four, false_alarms_one)  # records-only intervals miss the spread between retrains


def test_same_size_requests_and_reference_pool() -> None:
    rng = np.random.default_rng(0)
    reqs = list(same_size_requests(np.arange(0, 100, 2), np.arange(200), 20, rng))
    assert [len(r) for r, _ in reqs] == [20, 20, 20]
    assert sorted(np.concatenate([own for _, own in reqs]).tolist()) == list(range(0, 100, 2))
    pool = reference_pool(300, np.arange(2000), np.arange(100, 400))
    assert pool.size == 300 and set(range(100, 400)) == set(pool.tolist())
    pool = reference_pool(300, np.arange(2000), np.arange(10))
    assert pool.size == 300 and set(range(10)) <= set(pool.tolist())
    assert reference_pool(5000, np.arange(2000), np.arange(10)).size == 2000  # too small: all of it


def test_kaggle_epsilon_of_identical_samples_is_small() -> None:
    assert epsilon_from_samples(np.arange(8.0), np.arange(8.0)) < 0.7


def test_best_threshold_balances_tpr_and_tnr() -> None:
    assert best_threshold(np.array([3.0, 4.0, 5.0]), np.array([0.0, 1.0, 3.5])) == 4.0


def test_keep_mask_gives_every_sample_half_the_models() -> None:
    keep = keep_mask(16, 500, seed=0)
    assert (keep.sum(0) == 8).all()
    assert 180 < keep.sum(1).min() and keep.sum(1).max() < 320


def test_augmentations_only_where_the_data_allows() -> None:
    assert len(augmentations("digits", (1, 8, 8))) == 1
    assert len(augmentations("mnist", (1, 28, 28))) == 3  # shifts, no mirror for digits
    augs = augmentations("fashion-mnist", (1, 28, 28))
    x = torch.arange(4.0).view(1, 1, 2, 2).expand(1, 1, 2, 2)
    assert len(augs) == 4 and torch.equal(augs[1](x), torch.flip(x, dims=[-1]))


def test_heldout_pool_is_all_test_data_when_small() -> None:
    assert heldout_pool(100, 360).tolist() == list(range(360))
    pool = heldout_pool(5000, 10000)
    assert pool.size == 5000 and np.unique(pool).size == 5000


# ---------------------------------------------------------------- known answers on digits


@pytest.fixture(scope="module")
def overfit(digits):
    """An overfit MLP (150 digits, 100 epochs), a 75-sample request, a model retrained without it and an
    independent retrain (seed 50, never among the reference's consecutive seeds)."""
    from mu_core.forget import random_request
    from mu_core.train import TrainConfig, default_config, fit_model
    from mu_core.unlearn import unlearn

    config = TrainConfig(**{**default_config("mlp", 150).to_dict(), "epochs": 100})
    model, record = fit_model(digits, "mlp", config, train_size=150, device="cpu")
    request = random_request(record.train_indices, 75, seed=0)
    retrained = unlearn(model, record, request.indices, method="retrain", dataset=digits, device="cpu")
    retain = np.setdiff1d(record.train_indices, request.indices)
    second = fit_model(digits, "mlp", TrainConfig(**{**config.to_dict(), "seed": 50}), train_indices=retain, device="cpu")
    return model, record, request, retrained, second


def _audit(overfit, unlearned, retrained=None, **kwargs):
    from mu_core.audit.report import run_audit

    model, record, request, *_ = overfit
    models = {"original": (model, record), "unlearned": unlearned}
    if retrained is not None:
        models["retrained"] = retrained
    return run_audit(models, request.indices, device="cpu", **kwargs).data


def test_an_unlearned_model_identical_to_the_original_is_not_forgotten(overfit) -> None:
    model, record, *_ = overfit
    report = _audit(overfit, (model, record), retrains=4)
    assert report["verdict"] == "not_forgotten", report["verdict_reason"]
    assert report["provenance"]["nonmembers"] >= 200  # a few hundred held-out samples
    assert report["has_power"] and set(report["power"]) == set(report["verdict_settings"]["attacks"])
    assert report["reference"]["retrains"] == 4 and report["reference"]["seeds"] == [0, 1, 2, 3]
    spread = report["reference"]["auc_spread"]["loss"]
    assert len(spread["aucs"]) == 4 and spread["sd"] > 0 and spread["min"] <= spread["max"]
    counts = report["record_counts"]
    assert counts["forgotten"] == 0 and counts["not_forgotten"] >= 1 and sum(counts.values()) == 75
    for attack in report["verdict_settings"]["attacks"]:
        assert report["attacks"][attack]["original"]["epsilon_lower"] > 0.3
    json.dumps(report, allow_nan=False)


def test_an_independent_retrain_is_never_not_forgotten(overfit) -> None:
    _, _, _, retrained, second = overfit
    # the case's own retrain, against four other retrains (it is never its own reference)
    report = _audit(overfit, (retrained.model, retrained.record), retrains=4)
    assert report["reference"]["seeds"] == [1, 2, 3, 4]
    assert report["verdict"] == "forgotten", report["verdict_reason"]
    # a retrain with another seed, against the retrained model and three more
    report = _audit(overfit, second, (retrained.model, retrained.record), retrains=4)
    assert report["verdict"] != "not_forgotten", report["verdict_reason"]
    assert report["verdict_settings"]["reference"] == "retrained" and report["reference"]["seeds"] == [0, 1, 2, 3]
    for attack in report["attacks"].values():
        assert attack["unlearned"]["auc_ci"][0] <= attack["unlearned"]["auc"] <= attack["unlearned"]["auc_ci"][1]


@pytest.mark.slow
def test_the_readme_cnn_example_has_no_power_and_is_inconclusive(digits, digits_cnn) -> None:
    """The README's CLI example (digits cnn, NegGrad at lr 0.002, 100 random samples): the original itself is hardly
    told from retraining, so the audit must not say forgotten."""
    from mu_core.audit.report import run_audit
    from mu_core.forget import random_request
    from mu_core.unlearn import unlearn

    model, record = digits_cnn
    request = random_request(record.train_indices, 100, seed=0)
    unlearned = unlearn(model, record, request.indices, method="neggrad", params={"lr": 0.002}, dataset=digits, device="cpu")
    report = run_audit({"original": (model, record), "unlearned": (unlearned.model, unlearned.record)}, request.indices,
                       dataset=digits, retrains=3, device="cpu").data
    assert report["verdict"] == "inconclusive" and not report["has_power"], report["verdict_reason"]
    assert "cannot tell even the untouched original from retraining" in report["verdict_reason"]
    assert report["record_counts"]["forgotten"] == 0


def test_calibration_small_seeded() -> None:
    """A small version of benchmarks/calibration.py: exact retrains never not_forgotten, the original always caught."""
    from mu_core.audit.calibration import calibrate

    result = calibrate(range(3), train_size=150, forget=75, retrains=4, weak=())
    assert result.counts("retrain")["not_forgotten"] == 0, result.verdicts
    assert result.counts("original")["not_forgotten"] == 3, result.verdicts
    assert "| retrain | 0/3 |" in result.table()


@pytest.mark.slow
def test_lira_beats_loss_at_low_fpr_and_reference_models_are_reused(overfit, tmp_path) -> None:
    retrained = overfit[3]
    attacks = ["loss", "lira_online", "lira_offline", "rmia_online", "rmia_offline", "shadow", "gradient_norm",
               "deletion_inference", "ulira", "kaggle_epsilon", "svc_efficacy", "correctness"]
    report = _audit(overfit, (retrained.model, retrained.record), attacks=attacks, reference_models=16, reference_dir=tmp_path)
    original = {a: report["attacks"][a]["original"] for a in ("loss", "lira_online")}
    assert original["loss"]["n_nonmembers"] >= 100  # so TPR at 1% FPR means something
    assert original["lira_online"]["tpr_at_1pct_fpr"] > original["loss"]["tpr_at_1pct_fpr"]
    assert report["attacks"]["lira_online"]["original"]["auc"] > 0.6
    assert "original" not in report["attacks"]["deletion_inference"]
    assert report["records"][0]["attack"] == "ulira"  # the strongest per-record attack that ran
    kaggle = report["attacks"]["kaggle_epsilon"]
    assert 0.0 <= kaggle["forgetting_quality"] <= 2.0 and kaggle["method"] == "retrain" and kaggle["models_per_side"] == 8
    assert report["provenance"]["reference_models"]["count"] == 16
    json.dumps(report, allow_nan=False)
    # the second audit reuses the saved reference models (and the unlearned ones)
    import mu_core.attacks.reference as reference

    calls = []
    original_train = reference.train_references
    reference.train_references = lambda *a, **k: calls.append(1) or original_train(*a, **k)
    try:
        again = _audit(overfit, (retrained.model, retrained.record), attacks=["lira_online", "ulira"], reference_models=16, reference_dir=tmp_path)
    finally:
        reference.train_references = original_train
    assert calls == []
    assert again["attacks"]["lira_online"]["original"]["auc"] == pytest.approx(report["attacks"]["lira_online"]["original"]["auc"])


def test_method_attacks_say_so_when_the_method_is_unknown(overfit) -> None:
    model, record, *_ = overfit
    report = _audit(overfit, (model, record), attacks=["loss", "ulira"], reference_models=2)
    assert "unlearning method is unknown" in report["attacks"]["ulira"]["not_run"]
    assert "ulira" not in report["verdict_settings"]["attacks"]


def test_batched_reference_training_matches_one_by_one_in_quality(digits) -> None:
    from mu_core.attacks.reference import train_batched, train_one_by_one
    from mu_core.models import ModelRecord
    from mu_core.train import accuracy, default_config

    x, y = digits.x_train[:400], digits.y_train[:400]
    keep = keep_mask(4, 400, seed=0)
    record = ModelRecord(arch="mlp", in_shape=digits.in_shape, class_names=digits.class_names, dataset=digits.spec.to_dict(),
                         train_indices=np.arange(400), n_train_split=digits.n_train, recipe=default_config("mlp", 200).to_dict())
    device = torch.device("cpu")
    mean_acc = {}
    for trainer in (train_batched, train_one_by_one):
        models = trainer("mlp", digits.in_shape, 10, x, y, keep, record, device=device)
        accs = [accuracy(m, digits.x_test, digits.y_test) for m in models]
        assert len(models) == 4 and min(accs) > 0.75, (trainer.__name__, accs)
        mean_acc[trainer.__name__] = np.mean(accs)
    assert abs(mean_acc["train_batched"] - mean_acc["train_one_by_one"]) < 0.06, mean_acc


def test_cli_audit_fails_on_not_forgotten_and_refuses_bad_settings(overfit, tmp_path, capsys) -> None:
    from mu_core.cli import EXIT_BAD_INPUT, EXIT_VERDICT, main
    from mu_core.forget import write_request
    from mu_core.models import save_model

    model, record, request, *_ = overfit
    original = save_model(model, record, tmp_path / "original.safetensors")
    forget = write_request(request, tmp_path / "forget.txt")
    base = ["audit", "--original", str(original), "--unlearned", str(original), "--forget", str(forget)]
    assert main([*base, "--out", str(tmp_path / "a"), "--fail-on", "not_forgotten"]) == EXIT_VERDICT
    out = capsys.readouterr().out
    assert "Verdict: not forgotten" in out
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["verdict"] == "not_forgotten" and report["verdict_settings"]["margin"] == 0.1
    assert all(len(report["attacks"][a]["unlearned"]["auc_ci"]) == 2 for a in ("loss", "confidence", "entropy", "modified_entropy"))
    assert main([*base, "--out", str(tmp_path / "b"), "--fail-on", "forgotten"]) == 0
    capsys.readouterr()
    for bad in (["--attacks", "nope"], ["--attacks", "lira_online", "--reference-models", "3"], ["--margin", "0.7"]):
        assert main([*base, "--out", str(tmp_path / "c"), *bad]) == EXIT_BAD_INPUT
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err


def test_cli_audit_takes_several_retrained_files_and_keeps_trained_retrains(overfit, tmp_path, capsys) -> None:
    from mu_core.cli import main
    from mu_core.forget import write_request
    from mu_core.models import save_model

    model, record, request, retrained, second = overfit
    original = save_model(model, record, tmp_path / "original.safetensors")
    first = save_model(retrained.model, retrained.record, tmp_path / "retrained.safetensors")
    other = save_model(*second, tmp_path / "second.safetensors")
    forget = write_request(request, tmp_path / "forget.txt")
    args = ["audit", "--original", str(original), "--unlearned", str(original), "--forget", str(forget), "--retrained", str(first),
            "--retrained", str(other), "--retrains", "3", "--case", str(tmp_path / "refs")]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert "retrains: 3 in the reference, 1 to train, estimated" in capsys.readouterr().err
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["reference"]["retrains"] == 3 and report["reference"]["trained"] == 1
    assert report["reference"]["seeds"] == [0, 50, 1]
    kept = list((tmp_path / "refs" / "retrains").iterdir())
    assert [p.name.split("_")[0] for p in kept] == ["seed1"]
    stamp = kept[0].stat().st_mtime_ns
    assert main([*args, "--out", str(tmp_path / "b")]) == 0  # reused, not trained again
    assert kept[0].stat().st_mtime_ns == stamp
    again = json.loads((tmp_path / "b" / "report.json").read_text())
    assert again["reference"]["auc_spread"] == report["reference"]["auc_spread"]
