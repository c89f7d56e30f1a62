"""Seeded training: accuracy of the default recipe, reproducibility and training subsets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mu_core.errors import AuditInputError
from mu_core.train import TrainConfig, accuracy, default_config, fit_model, subset_indices


def test_default_cnn_on_digits_reaches_95_percent_test_accuracy(digits_cnn, digits):
    model, record = digits_cnn
    assert record.metrics["test_acc"] >= 0.95
    assert record.metrics["train_acc"] >= 0.98
    assert accuracy(model, digits.x_test, digits.y_test) == pytest.approx(record.metrics["test_acc"])
    assert record.recipe == default_config("cnn", 1437).to_dict()
    assert record.recipe["epochs"] == 30 and "train_size" not in record.recipe
    assert record.train_indices.tolist() == list(range(1437))
    assert record.unlearning is None


def test_same_seed_gives_bit_identical_weights(digits):
    config = TrainConfig(epochs=3, seed=7)
    first, _ = fit_model(digits, "mlp", config, device="cpu")
    second, _ = fit_model(digits, "mlp", config, device="cpu")
    for name, tensor in first.state_dict().items():
        assert torch.equal(second.state_dict()[name], tensor), name


def test_another_seed_gives_other_weights(digits):
    first, _ = fit_model(digits, "mlp", TrainConfig(epochs=3, seed=0), device="cpu")
    second, _ = fit_model(digits, "mlp", TrainConfig(epochs=3, seed=1), device="cpu")
    assert not torch.equal(first.state_dict()["fc1.weight"], second.state_dict()["fc1.weight"])


def test_train_size_trains_on_a_seeded_subset_of_that_size(digits):
    _, record = fit_model(digits, "mlp", TrainConfig(epochs=1, seed=3), train_size=200, device="cpu")
    idx = record.train_indices
    assert len(idx) == 200 and len(np.unique(idx)) == 200
    assert np.all(np.diff(idx) > 0) and idx[0] >= 0 and idx[-1] < 1437
    assert idx.tolist() == subset_indices(1437, 200, 3).tolist()
    assert record.recipe["train_size"] == 200 and record.recipe["seed"] == 3


def test_subset_depends_on_the_seed_only():
    assert subset_indices(1437, 200, 3).tolist() == subset_indices(1437, 200, 3).tolist()
    overlap = np.intersect1d(subset_indices(1437, 200, 3), subset_indices(1437, 200, 4)).size
    assert overlap < 100  # two independent draws of 200 from 1,437 share about 28


@pytest.mark.parametrize("size", [0, 1438])
def test_train_size_outside_the_split_is_refused(size):
    with pytest.raises(AuditInputError, match="--train-size must be between 1 and 1437"):
        subset_indices(1437, size, 0)


def test_explicit_train_indices_are_used_sorted(digits):
    _, record = fit_model(digits, "mlp", TrainConfig(epochs=1), train_indices=[9, 2, 500], device="cpu")
    assert record.train_indices.tolist() == [2, 9, 500]


@pytest.mark.parametrize(
    "config, message",
    [
        (TrainConfig(epochs=0), "must all be positive"),
        (TrainConfig(lr=0.0), "must all be positive"),
        (TrainConfig(optimizer="rmsprop"), "Unknown optimizer 'rmsprop'"),
    ],
)
def test_invalid_recipe_is_refused(config, message):
    with pytest.raises(AuditInputError, match=message):
        config.validate()


def test_default_recipes_depend_on_architecture_and_data_size():
    assert default_config("mlp", 1437).epochs == 30
    assert default_config("mlp", 60000).epochs == 5
    resnet = default_config("resnet18", 50000, seed=4)
    assert (resnet.optimizer, resnet.lr, resnet.seed, resnet.batch_size) == ("sgd", 0.05, 4, 128)
    assert default_config("cnn", 1437, epochs=3).epochs == 3


def test_recipe_round_trips_through_a_dict_ignoring_extra_keys():
    config = TrainConfig(epochs=4, lr=0.01, seed=9)
    assert TrainConfig.from_dict({**config.to_dict(), "train_size": 300}) == config


def test_accuracy_of_an_empty_set_is_nan(digits_mlp, digits):
    assert math.isnan(accuracy(digits_mlp[0], digits.x_test[:0], digits.y_test[:0]))
