"""The Threats lab on small seeded digits settings: every threat, request screening, the CLI and the case steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mu_core.cli import main
from mu_core.errors import AuditInputError
from mu_core.threats import THREAT_FILE, list_threats, run_threat, threat_params
from mu_core.threats.screen import screen_request


def _run(digits_mlp, name: str, **params):
    """Run a threat and draw its chart (every threat has one)."""
    from mu_core.threats.figures import threat_figure

    model, record = digits_mlp
    result = run_threat(name, model, record, params=params, device="cpu")
    assert len(threat_figure(json.loads(json.dumps(result.to_dict()))).data) >= 1
    return result


def test_the_registry_lists_the_six_threats_in_order() -> None:
    assert list_threats() == ["targeted_request", "accuracy_burn", "over_unlearning", "backdoor_verify", "backdoor_removal",
                              "verification_evasion"]


def test_threat_parameters_are_typed_and_unknown_ones_refused() -> None:
    assert threat_params("targeted_request", ["budget=5"])["budget"] == 5
    with pytest.raises(AuditInputError, match="Threat 'targeted_request' has no parameter 'nope'"):
        threat_params("targeted_request", {"nope": 1})
    with pytest.raises(AuditInputError, match="Unknown threat"):
        threat_params("no_such_threat")


def test_targeted_requests_misclassify_more_targets_than_random_requests(digits_mlp) -> None:
    result = _run(digits_mlp, "targeted_request", targets=8, budget=10, methods="neggrad")
    row = result.numbers["methods"]["neggrad"]
    # Measured: 62% of targets against 12% for random requests of the same size.
    assert row["success_rate"] >= row["random_success_rate"] + 0.25
    assert len(result.numbers["targets"]) == 8
    assert "random requests of the same size" in result.conclusion


def test_accuracy_burn_hurts_an_unscreened_provider_and_screening_rejects_every_crafted_request(digits_mlp) -> None:
    result = _run(digits_mlp, "accuracy_burn", requests=20, trials=1, methods="neggrad", max_retain_drop=1.0)
    n = result.numbers
    row = n["methods"]["neggrad"]
    assert n["rejected"] == n["screened"] == 1
    assert row["test_acc_with_screening"] == n["test_acc_before"]
    # Measured: 96.4% before, 89.7% after the crafted copies, 95.0% after the same samples untouched.
    assert row["test_acc_after"] < row["benign_test_acc_after"] - 0.02
    request = result.extra["request"]
    assert request["x"].shape == (20, 1, 8, 8) and np.abs(request["x"] - _train_x(request["index"])).max() <= 0.1 + 1e-6


def _train_x(index: np.ndarray) -> np.ndarray:
    from mu_core.data import load_dataset

    return load_dataset("digits").x_train[torch.from_numpy(index)].numpy()


def test_blended_requests_erase_more_of_the_victim_class_than_genuine_ones(digits_mlp) -> None:
    result = _run(digits_mlp, "over_unlearning", requests=20, methods="neggrad")
    row = result.numbers["methods"]["neggrad"]
    # Measured: the victim class loses 19 points to the blends and none to as many genuine samples.
    assert row["collateral_loss"] > 0.1 and row["victim_drop_plain"] < 0.05


def test_backdoor_verification_confirms_retraining_and_refuses_no_unlearning_with_30_queries(digits_mlp) -> None:
    result = _run(digits_mlp, "backdoor_verify", methods="retrain")
    n = result.numbers
    assert n["queries"] == 30 and n["false_positive_rate"] < 1e-3 and n["false_negative_rate"] < 1e-3
    assert n["providers"]["retrain"]["deletion_confirmed"] is True
    assert n["providers"]["none"]["deletion_confirmed"] is False and n["providers"]["none"]["honest"] is False
    assert "The provider who did not unlearn is caught" in result.conclusion


def test_retraining_removes_the_backdoor_that_finetuning_keeps(digits_mlp) -> None:
    result = _run(digits_mlp, "backdoor_removal", methods="retrain,finetune")
    n = result.numbers
    # Measured: 83% attack success before, 0% after retraining, 57% after fine-tuning.
    assert n["before"]["attack_success"] > 0.5
    assert n["methods"]["retrain"]["attack_success"] < 0.05
    assert n["methods"]["finetune"]["attack_success"] > 0.3


def test_verification_evasion_passes_the_backdoor_check_and_says_whether_the_verdict_catches_it(digits_mlp) -> None:
    result = _run(digits_mlp, "verification_evasion", owner_share=0.08, evasion_epochs=2, bootstrap=40)
    n = result.numbers
    assert n["passes_backdoor_verification"] is True
    assert n["providers"]["none"]["deletion_confirmed"] is False
    caught = n["providers"]["evasive"]["verdict"] == "not_forgotten"
    assert n["caught_by_membership_verdict"] is caught
    assert ("The membership verdict catches it" if caught else "The membership verdict does NOT catch it") in result.conclusion


def test_screening_accepts_a_random_request_and_rejects_untrained_or_perturbed_samples(digits_mlp, digits) -> None:
    from mu_core.threats.figures import screen_figure

    model, record = digits_mlp
    rng = np.random.default_rng(0)
    request = np.sort(rng.choice(record.train_indices, size=15, replace=False))
    benign = screen_request(model, record, request, dataset=digits, device="cpu")
    assert benign.decision == "accept" and [c.name for c in benign.checks] == ["training_samples", "gradient_influence", "dry_run"]

    trained_on = record.with_updates(train_indices=np.setdiff1d(record.train_indices, request[:3]))
    untrained = screen_request(model, trained_on, request, dataset=digits, device="cpu")
    assert untrained.decision == "reject" and "3 of 15 requested indices were never trained on" in untrained.checks[0].detail

    x, y = digits.x_train[torch.from_numpy(request)], digits.y_train[torch.from_numpy(request)]
    assert len(screen_figure(benign.to_dict()).data) == 1
    exact = screen_request(model, record, request, samples=(x.clone(), y.clone()), dataset=digits, device="cpu")
    assert exact.check("training_samples").passed
    perturbed = screen_request(model, record, request, samples=((x + 0.05).clamp(0, 1), y), dataset=digits, device="cpu")
    assert perturbed.decision == "reject" and not perturbed.check("training_samples").passed


def test_screening_flags_a_targeted_request_for_review(digits_mlp, digits) -> None:
    from mu_core.threats.targeted import attacker_pool, select_request

    model, record = digits_mlp
    pool = attacker_pool(record.train_indices, 0.2, 0)
    flagged = 0
    for target in (5, 40, 77):
        request = select_request(model, digits, pool, digits.x_test[target], digits.y_test[target], 10, "cpu")
        result = screen_request(model, record, request, dataset=digits, device="cpu", tolerance=0.5)
        flagged += not result.check("gradient_influence").passed
        assert result.decision in ("accept", "review")
    assert flagged >= 2


def test_threat_and_screen_commands_write_their_documented_keys(digits_mlp, tmp_path: Path, capsys) -> None:
    from mu_core.models import save_model

    model_path = save_model(*digits_mlp, tmp_path / "m.safetensors")
    out = tmp_path / "burn"
    assert main(["threat", "accuracy_burn", "--model", str(model_path), "--param", "requests=10", "--param", "trials=1",
                 "--param", "methods=neggrad", "--seed", "1", "--out", str(out), "--device", "cpu"]) == 0
    data = json.loads((out / THREAT_FILE).read_text())
    assert {"threat", "paper", "settings", "numbers", "conclusion", "seconds"} <= set(data)
    assert data["settings"]["seed"] == 1 and data["settings"]["requests"] == 10

    assert main(["screen", "--model", str(model_path), "--samples", str(out / "request.npz"), "--out", str(tmp_path / "s"),
                 "--null-requests", "5", "--device", "cpu"]) == 0
    screen = json.loads((tmp_path / "s" / "screen.json").read_text())
    assert screen["decision"] == "reject"
    assert [set(c) >= {"name", "passed", "detail"} for c in screen["checks"]] == [True] * 3
    assert "decision: reject" in capsys.readouterr().out

    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    assert main(["screen", "--model", str(model_path), "--samples", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "x")]) == 2
    assert "is not an .npz file with arrays 'index', 'x' and 'y'" in capsys.readouterr().err
    assert main(["threat", "nope", "--model", str(model_path), "--out", str(tmp_path / "x")]) == 2
    assert main(["screen", "--model", str(model_path), "--out", str(tmp_path / "x")]) == 2
    assert "one of them" in capsys.readouterr().err


def test_case_steps_keep_threat_and_screen_results_for_the_current_model(audit_home: Path) -> None:
    from mu_core.case import CaseStore
    from mu_core.forget import random_request
    from mu_core.models.io import read_record
    from mu_core.threats.workflow import case_screen, case_screen_result, case_threat, case_threat_results
    from mu_core.workflow import case_set_forget, case_train

    case = CaseStore().create("threats")
    case_train(case, "digits", "mlp", epochs=10)
    record = read_record(case.file("original"))
    case_set_forget(case, random_request(record.train_indices, 12, seed=0))
    case_threat(case, "targeted_request", {"targets": 2, "budget": 5, "methods": "neggrad"})
    assert set(case_threat_results(case)) == {"targeted_request"}
    assert case_screen(case, "neggrad", null_requests=5)["decision"] in ("accept", "review")
    assert case_screen_result(case)["decision"] in ("accept", "review")
    case_set_forget(case, random_request(record.train_indices, 13, seed=1))
    assert case_screen_result(case) is None
    case_train(case, "digits", "mlp", epochs=10, seed=1)
    assert case_threat_results(case) == {}
