"""Unlearning methods: the registry, exact retraining, NegGrad and fine-tuning, and parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mu_core.errors import AuditInputError
from mu_core.forget import random_request
from mu_core.train import TrainConfig, accuracy, fit_model
from mu_core.unlearn import get_method, list_methods, parse_params, unlearn


@pytest.fixture(scope="module")
def forget_20(digits_mlp):
    """20 random samples of the shared mlp's training set (seed 0)."""
    return random_request(digits_mlp[1].train_indices, 20, seed=0).indices


def state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def test_registry_holds_retrain_finetune_and_neggrad():
    assert {"retrain", "finetune", "neggrad"} <= set(list_methods())
    assert get_method("retrain").exact is True
    assert get_method("neggrad").exact is False
    with pytest.raises(AuditInputError, match="Unknown unlearning method 'magic'"):
        get_method("magic")


def test_retrain_reproduces_fit_model_on_the_retain_set_bit_identically(digits, digits_mlp, forget_20):
    model, record = digits_mlp
    retain = np.setdiff1d(record.train_indices, forget_20)
    expected, _ = fit_model(digits, "mlp", TrainConfig.from_dict(record.recipe), train_indices=retain, device="cpu")
    result = unlearn(model, record, forget_20, method="retrain", dataset=digits, source_sha256="f00d", device="cpu")
    for name, tensor in expected.state_dict().items():
        assert torch.equal(result.model.state_dict()[name], tensor), name
    assert result.record.unlearning["method"] == "retrain"
    assert result.record.unlearning["forget_indices"] == forget_20.tolist()
    assert result.record.unlearning["source_sha256"] == "f00d"
    assert result.record.train_indices.tolist() == retain.tolist()
    assert len(result.record.train_indices) == 1437 - 20
    assert result.record.recipe == record.recipe


def test_retraining_without_a_whole_class_never_predicts_it(digits, digits_mlp):
    model, record = digits_mlp
    sevens = np.flatnonzero(digits.y_train.numpy() == 7)
    result = unlearn(model, record, sevens, method="retrain", dataset=digits, device="cpu")
    assert result.record.metrics["forget_acc"] == 0.0
    assert accuracy(model, digits.x_train[sevens], digits.y_train[sevens]) >= 0.95
    assert result.record.metrics["retain_acc"] >= 0.95


def test_neggrad_lowers_forget_accuracy_below_the_original(digits, digits_mlp, forget_20):
    model, record = digits_mlp
    original_acc = accuracy(model, digits.x_train[forget_20], digits.y_train[forget_20])
    result = unlearn(model, record, forget_20, method="neggrad", params={"lr": 0.01}, dataset=digits, device="cpu")
    assert original_acc == 1.0
    assert result.record.metrics["forget_acc"] <= original_acc - 0.1
    assert result.record.metrics["retain_acc"] >= 0.9
    assert result.params == {"epochs": 5, "lr": 0.01, "batch_size": 32, "max_retain_drop": 0.1, "seed": 0}
    assert result.record.unlearning["params"] == result.params


def test_neggrad_stops_before_a_whole_class_request_collapses_the_model(digits, digits_mlp):
    from mu_core.forget import class_request

    model, record = digits_mlp
    request = class_request(record.train_indices, digits.y_train.numpy(), 3)
    result = unlearn(model, record, request.indices, method="neggrad", params={"lr": 0.05}, dataset=digits, device="cpu")
    original_retain = accuracy(model, digits.x_train[result.record.train_indices], digits.y_train[result.record.train_indices])
    assert "stopped_early" in result.record.unlearning["notes"]
    assert result.record.metrics["retain_acc"] >= original_retain - 0.15  # the bound (0.1) is checked on 512 samples
    assert result.record.metrics["forget_acc"] < 0.9


def test_unlearning_leaves_the_input_model_untouched(digits, digits_mlp, forget_20):
    model, record = digits_mlp
    before = state_copy(model)
    for method in ("neggrad", "finetune"):
        result = unlearn(model, record, forget_20, method=method, params={"epochs": 1}, dataset=digits, device="cpu")
        assert result.model is not model
        assert not torch.equal(result.model.state_dict()["fc1.weight"], before["fc1.weight"])
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert record.unlearning is None and len(record.train_indices) == 1437


def test_same_method_and_seed_give_the_same_unlearned_model(digits, digits_mlp, forget_20):
    model, record = digits_mlp
    first = unlearn(model, record, forget_20, method="finetune", params={"epochs": 1}, dataset=digits, device="cpu")
    second = unlearn(model, record, forget_20, method="finetune", params={"epochs": 1}, dataset=digits, device="cpu")
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[name], tensor), name


def test_unlearning_samples_the_model_never_saw_is_refused(digits, digits_mlp):
    model, record = digits_mlp
    partial = record.with_updates(train_indices=np.arange(100))
    with pytest.raises(AuditInputError, match="never in the model's training set"):
        unlearn(model, partial, [5, 200], method="neggrad", dataset=digits, device="cpu")


def test_parse_params_types_values_like_the_defaults():
    assert parse_params("neggrad", ["epochs=3", " lr = 0.05 "]) == {
        "epochs": 3, "lr": 0.05, "batch_size": 32, "max_retain_drop": 0.1, "seed": 0,
    }
    assert parse_params("finetune", {"lr": "0.2"})["lr"] == 0.2
    assert parse_params("retrain", None) == {}


@pytest.mark.parametrize(
    "method, given, message",
    [
        ("neggrad", ["alpha=1"], "Method 'neggrad' has no parameter 'alpha' \\(its parameters: epochs, lr, batch_size, max_retain_drop, seed\\)"),
        ("retrain", {"epochs": 3}, "has no parameter 'epochs' \\(its parameters: none\\)"),
        ("neggrad", ["epochs=three"], "Parameter 'epochs' of 'neggrad' must be a int, not 'three'"),
        ("finetune", {"lr": "fast"}, "Parameter 'lr' of 'finetune' must be a float"),
        ("neggrad", ["epochs"], "'epochs' is not KEY=VALUE"),
        ("neggrad", ["=3"], "'=3' is not KEY=VALUE"),
    ],
    ids=["unknown-key", "retrain-has-none", "bad-int", "bad-float", "no-equals", "no-key"],
)
def test_parse_params_refuses_unknown_keys_and_bad_values(method, given, message):
    with pytest.raises(AuditInputError, match=message):
        parse_params(method, given)
