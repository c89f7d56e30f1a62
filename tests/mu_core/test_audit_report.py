"""The audit: LOSS attack AUCs on original, 'unlearned' and retrained models, and the report."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import numpy as np
import pytest

from mu_core.audit.report import SCHEMA, run_audit
from mu_core.errors import AuditInputError
from mu_core.forget import random_request
from mu_core.models import save_model
from mu_core.train import TrainConfig, fit_model
from mu_core.unlearn import unlearn

#: An mlp trained 100 epochs on 80 digits memorises them. (With 300 digits the mlp generalises
#: to ~94 % test accuracy and the LOSS attack only reaches an AUC of ~0.55, too close to chance.)
TRAIN_SIZE = 80
FORGET_SIZE = 40


@pytest.fixture(scope="module")
def overfit(digits):
    """Original (overfit mlp), its forget request, and the model retrained without that request."""
    original, record = fit_model(digits, "mlp", TrainConfig(epochs=100, seed=0), train_size=TRAIN_SIZE, device="cpu")
    forget = random_request(record.train_indices, FORGET_SIZE, seed=0).indices
    retrained = unlearn(original, record, forget, method="retrain", dataset=digits, device="cpu")
    return {"original": (original, record), "retrained": (retrained.model, retrained.record), "forget": forget}


@pytest.fixture(scope="module")
def audit(overfit, digits):
    models = {
        "original": overfit["original"],
        "unlearned": overfit["original"],  # a fake unlearning: the original itself
        "retrained": overfit["retrained"],
    }
    return run_audit(models, overfit["forget"], dataset=digits, device="cpu")


def test_overfit_original_and_its_fake_unlearning_are_both_exposed(audit):
    loss = audit.data["attacks"]["loss"]
    assert loss["original"]["auc"] > 0.6
    assert loss["unlearned"]["auc"] == loss["original"]["auc"]
    assert audit.data["utility"]["original"]["forget_acc"] == 1.0


def test_retrained_model_is_less_exposed_than_the_original(audit):
    loss = audit.data["attacks"]["loss"]
    assert loss["retrained"]["auc"] < loss["original"]["auc"] - 0.1
    assert abs(loss["retrained"]["auc"] - 0.5) < 0.1


def test_report_holds_every_attack_and_utility_number(audit):
    data = audit.data
    assert data["schema"] == SCHEMA
    for role in ("original", "unlearned", "retrained"):
        attack = data["attacks"]["loss"][role]
        assert 0.0 <= attack["auc"] <= 1.0
        assert 0.0 <= attack["tpr_at_1pct_fpr"] <= 1.0  # >= 100 non-members
        assert attack["tpr_at_0p1pct_fpr"] is None  # < 1,000 non-members
        assert attack["n_members"] == FORGET_SIZE and attack["n_nonmembers"] >= 100
        assert len(attack["roc"]["fpr"]) == len(attack["roc"]["tpr"])
        utility = data["utility"][role]
        assert set(utility) == {"forget_acc", "retain_acc", "test_acc"}
        assert all(0.0 <= value <= 1.0 for value in utility.values())
    assert data["forget"]["count"] == FORGET_SIZE
    assert sum(data["forget"]["per_class"].values()) == FORGET_SIZE
    assert data["provenance"]["members"] == FORGET_SIZE
    assert data["provenance"]["seeds"]["nonmember_sampling"] == 0
    assert data["provenance"]["models"]["retrained"]["unlearning"]["method"] == "retrain"
    assert data["provenance"]["models"]["original"]["sha256"] is None  # no files were given
    assert "loss AUC" in data["summary"] and data["summary"].startswith("Verdict: ")


def test_nonmembers_are_test_samples_matching_the_forget_classes(audit, digits):
    member_classes = np.bincount(digits.y_train.numpy()[audit.member_indices], minlength=10)
    nonmember_classes = np.bincount(digits.y_test.numpy()[audit.nonmember_indices], minlength=10)
    assert audit.member_indices.tolist() == sorted(audit.member_indices.tolist())
    assert np.array_equal(member_classes > 0, nonmember_classes > 0)


def test_provenance_records_the_sha256_of_given_model_files(overfit, digits, tmp_path):
    paths = {role: save_model(*overfit[role], tmp_path / f"{role}.safetensors") for role in ("original", "retrained")}
    models = {"original": overfit["original"], "unlearned": overfit["retrained"]}
    report = run_audit(
        models,
        overfit["forget"],
        dataset=digits,
        device="cpu",
        model_files={"original": paths["original"], "unlearned": paths["retrained"]},
    )
    provenance = report.data["provenance"]["models"]
    assert provenance["original"]["sha256"] == hashlib.sha256(paths["original"].read_bytes()).hexdigest()
    assert provenance["unlearned"]["sha256"] == hashlib.sha256(paths["retrained"].read_bytes()).hexdigest()
    assert provenance["unlearned"]["file"] == str(paths["retrained"])


def test_report_writes_json_and_per_sample_scores(audit, tmp_path):
    path = audit.write(tmp_path / "out")
    assert path == tmp_path / "out" / "report.json"
    assert json.loads(path.read_text())["attacks"]["loss"]["original"]["auc"] == audit.data["attacks"]["loss"]["original"]["auc"]
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "scores.csv").read_text())))
    assert len(rows) == len(audit.scores) * 3 * (len(audit.member_indices) + len(audit.nonmember_indices))
    assert {row["member"] for row in rows} == {"0", "1"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["records.csv", "report.json", "roc.csv", "scores.csv"]
    records = list(csv.DictReader(io.StringIO((tmp_path / "out" / "records.csv").read_text())))
    assert len(records) == len(audit.member_indices) and {r["verdict"] for r in records} <= {"forgotten", "not_forgotten", "inconclusive"}
    roc = list(csv.DictReader(io.StringIO((tmp_path / "out" / "roc.csv").read_text())))
    assert {(r["attack"], r["model"]) for r in roc} >= {("loss", "original"), ("loss", "retrained")}


def test_audit_refuses_a_forget_request_other_than_the_unlearned_models(overfit, digits):
    other = random_request(overfit["original"][1].train_indices, FORGET_SIZE, seed=1).indices
    models = {"original": overfit["original"], "unlearned": overfit["retrained"]}
    with pytest.raises(AuditInputError, match="The unlearned model was made for a different forget request"):
        run_audit(models, other, dataset=digits, device="cpu")


def test_audit_needs_an_original_of_the_same_data(overfit, digits):
    with pytest.raises(AuditInputError, match="needs the original model"):
        run_audit({"unlearned": overfit["retrained"]}, overfit["forget"], dataset=digits, device="cpu")
    model, record = overfit["original"]
    foreign = record.with_updates(dataset={"name": "mnist", "root": "/data"})
    with pytest.raises(AuditInputError, match="trained on other data than the original"):
        run_audit(
            {"original": overfit["original"], "unlearned": (model, foreign)}, overfit["forget"], dataset=digits, device="cpu"
        )
    with pytest.raises(AuditInputError, match="Unknown model role 'shadow'"):
        run_audit(
            {"original": overfit["original"], "shadow": overfit["original"]}, overfit["forget"], dataset=digits, device="cpu"
        )
