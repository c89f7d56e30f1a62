"""Efficacy metrics, the method comparison against retraining, and SISA."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mu_core.audit.efficacy import avg_gap, confidence_svc, efficacy_metrics, fit_confidence_svc, mia_efficacy, modified_entropy
from mu_core.cli import main
from mu_core.compare import compare_methods, param_grid
from mu_core.errors import AuditInputError
from mu_core.forget import class_request, random_request
from mu_core.models import load_model, save_model
from mu_core.models.sisa import SisaEnsemble, decode_assignment
from mu_core.train import TrainConfig, fit_sisa
from mu_core.unlearn import unlearn


def test_modified_entropy_follows_song_and_mittal_not_the_copied_typo():
    probs, labels = np.array([[0.7, 0.2, 0.1]]), np.array([0])
    expected = -(0.3 * np.log(0.7)) - (0.2 * np.log(0.8) + 0.1 * np.log(0.9))
    typo = -(0.3 * np.log(0.7)) - (0.2 * np.log(0.2) + 0.1 * np.log(0.1))
    assert modified_entropy(probs, labels)[0] == pytest.approx(expected)
    assert abs(modified_entropy(probs, labels)[0] - typo) > 0.3


def test_avg_gap_is_the_mean_absolute_difference_over_the_four_metrics():
    ref = {"ua": 0.1, "ra": 1.0, "ta": 0.9, "mia_efficacy": 0.2}
    other = {"ua": 0.0, "ra": 0.98, "ta": 0.95, "mia_efficacy": 0.2}
    assert avg_gap(other, ref) == pytest.approx((0.1 + 0.02 + 0.05 + 0.0) / 4)


def test_the_fast_svc_predicts_what_the_plain_svc_predicts_on_the_rounded_data():
    rng = np.random.default_rng(0)
    members = np.round(rng.beta(8, 1, 1500), 3)  # overlapping confidences, as in a model that barely overfits
    nonmembers = np.round(rng.beta(6, 1, 1500), 3)
    plain = confidence_svc().fit(np.r_[members, nonmembers][:, None], np.r_[np.ones(1500), np.zeros(1500)])
    fast = fit_confidence_svc(members, nonmembers)
    queries = np.linspace(0, 1, 2001)[:, None]
    agree = np.mean(plain.predict(queries) == fast.predict(queries))
    assert agree > 0.995
    assert 0.05 < fast.predict(queries).mean() < 0.95  # a real boundary, not one class everywhere


def test_mia_efficacy_is_averaged_over_seeded_draws(digits, digits_mlp):
    model, record = digits_mlp
    forget = random_request(record.train_indices, 60, seed=3).indices
    retain = np.setdiff1d(record.train_indices, forget)
    one = efficacy_metrics(model, digits, retain, forget, draws=1)
    many = efficacy_metrics(model, digits, retain, forget, draws=8)
    assert one["mia_efficacy_se"] == 0.0 and many["mia_efficacy_se"] > 0.0
    assert many == efficacy_metrics(model, digits, retain, forget, draws=8)  # seeded: the same every time
    assert many["mia_efficacy"] == pytest.approx(mia_efficacy(model, digits, retain, forget, draws=8))
    assert {k: one[k] for k in ("ua", "ra", "ta")} == {k: many[k] for k in ("ua", "ra", "ta")}


@pytest.fixture(scope="module")
def class3(digits, digits_cnn):
    _, record = digits_cnn
    request = class_request(record.train_indices, digits.y_train.numpy(), 3)
    return request.indices, np.setdiff1d(record.train_indices, request.indices)


def test_mia_efficacy_tells_the_original_from_the_retrained_on_a_forgotten_class(digits, digits_cnn, class3):
    model, record = digits_cnn
    forget_idx, retain_idx = class3
    retrained = unlearn(model, record, forget_idx, method="retrain", dataset=digits, device="cpu").model
    original_eff = mia_efficacy(model, digits, retain_idx, forget_idx)
    retrained_eff = mia_efficacy(retrained, digits, retain_idx, forget_idx)
    assert original_eff < 0.3 < 0.7 < retrained_eff
    metrics = efficacy_metrics(retrained, digits, retain_idx, forget_idx, forgotten_class=3)
    assert metrics["ua"] == pytest.approx(1.0)
    assert metrics["ta"] > 0.9  # test accuracy on the other nine classes


def test_compare_runs_retrain_first_and_scores_each_method_against_it(digits, digits_mlp, tmp_path):
    model, record = digits_mlp
    forget = random_request(record.train_indices, 50, seed=1).indices
    result = compare_methods(model, record, forget, ["finetune", "neggrad"], dataset=digits, device="cpu")
    assert list(result.rows) == ["retrain", "finetune", "neggrad"]
    retrain = result.rows["retrain"]
    untouched = efficacy_metrics(model, digits, np.setdiff1d(record.train_indices, forget), forget)
    assert result.original["ua"] == pytest.approx(untouched["ua"]) and result.original["avg_gap"] == pytest.approx(avg_gap(untouched, retrain))
    assert retrain["avg_gap"] == 0.0 and retrain["speedup"] == 1.0
    for name in ("finetune", "neggrad"):
        row = result.rows[name]
        assert all(0.0 <= row[k] <= 1.0 for k in ("ua", "ra", "ta", "mia_efficacy", "avg_gap"))
        assert row["speedup"] > 1.0
        assert row["avg_gap"] == pytest.approx(avg_gap(row, retrain))
    path = result.write(tmp_path)
    data = json.loads(path.read_text())
    assert set(data["methods"]["neggrad"]) >= {"ua", "ra", "ta", "mia_efficacy", "mia_efficacy_se", "avg_gap", "seconds", "speedup"}
    assert data["original"]["avg_gap"] == pytest.approx(result.original["avg_gap"])
    assert (tmp_path / "compare.csv").read_text().splitlines()[0].startswith("method,ua,ra,ta,mia_efficacy,avg_gap,seconds,speedup")


def test_repeats_average_each_method_over_consecutive_seeds(digits, digits_mlp):
    model, record = digits_mlp
    forget = random_request(record.train_indices, 40, seed=4).indices
    retain = np.setdiff1d(record.train_indices, forget)
    result = compare_methods(model, record, forget, ["neggrad"], repeats=2, dataset=digits, device="cpu")
    retrains = [
        unlearn(model, record.with_updates(recipe={**record.recipe, "seed": record.recipe["seed"] + k}), forget, method="retrain",
                dataset=digits, device="cpu").model
        for k in range(2)
    ]
    scores = [efficacy_metrics(m, digits, retain, forget) for m in retrains]
    row = result.rows["retrain"]
    assert row["repeats"] == 2 and row["ua"] == pytest.approx(np.mean([s["ua"] for s in scores]))
    assert row["mia_efficacy"] == pytest.approx(np.mean([s["mia_efficacy"] for s in scores]))
    neggrad = result.rows["neggrad"]
    assert neggrad["repeats"] == 2 and neggrad["avg_gap_sd"] >= 0.0 and neggrad["avg_gap"] == pytest.approx(avg_gap(neggrad, row))
    assert result.models["neggrad"].params["seed"] == 0  # the kept model is the first run's
    with pytest.raises(AuditInputError, match="at least 1"):
        compare_methods(model, record, forget, ["neggrad"], repeats=0, dataset=digits, device="cpu")


def test_grid_search_keeps_the_setting_closest_to_retraining(digits, digits_mlp):
    model, record = digits_mlp
    assert len(param_grid("neggrad")) == 6 and param_grid("retrain") == [{}]
    forget = random_request(record.train_indices, 30, seed=2).indices
    plain = compare_methods(model, record, forget, ["finetune"], dataset=digits, device="cpu")
    searched = compare_methods(model, record, forget, ["finetune"], grid=True, dataset=digits, device="cpu")
    assert searched.rows["finetune"]["avg_gap"] <= plain.rows["finetune"]["avg_gap"] + 1e-9
    assert searched.rows["finetune"]["params"] in [{**plain.rows["finetune"]["params"], **g} for g in param_grid("finetune")]


def test_compare_refuses_unknown_methods(digits, digits_mlp):
    model, record = digits_mlp
    with pytest.raises(AuditInputError, match="Unknown method"):
        compare_methods(model, record, [1, 2], ["no_such_method"], dataset=digits)


def test_cli_compare_writes_compare_json(tmp_path, capsys):
    model_path, forget_path, out = tmp_path / "m.safetensors", tmp_path / "f.txt", tmp_path / "cmp"
    assert main(["train", "--dataset", "digits", "--arch", "mlp", "--epochs", "3", "--out", str(model_path)]) == 0
    assert main(["forget", "--random", "20", "--model", str(model_path), "--out", str(forget_path)]) == 0
    assert main(["compare", "--model", str(model_path), "--forget", str(forget_path), "--methods", "finetune", "--floor", "--out", str(out)]) == 0
    data = json.loads((out / "compare.json").read_text())
    assert set(data["methods"]) == {"retrain", "finetune"}
    floor = data["noise_floor"]
    assert floor["seed"] == 1 and floor["avg_gap"] == pytest.approx(avg_gap(floor, data["methods"]["retrain"]))
    # another seed is another model: exact unlearning itself does not land on the first retrain
    assert any(floor[k] != data["methods"]["retrain"][k] for k in ("ua", "ra", "ta", "mia_efficacy"))
    printed = capsys.readouterr().out
    assert "finetune" in printed and "the noise floor" in printed


@pytest.fixture(scope="module")
def sisa_model(digits):
    return fit_sisa(digits, "mlp", TrainConfig(epochs=4, seed=0), shards=3, slices=2, device="cpu")


def test_sisa_unlearning_retrains_only_the_affected_shard(digits, sisa_model, tmp_path):
    ensemble, record = sisa_model
    assignment = decode_assignment(record.recipe["sisa"]["assignment"])
    forget = assignment[1][1][:3]  # three samples of shard 1, slice 1
    before = {k: v.clone() for k, v in ensemble.state_dict().items()}
    result = unlearn(ensemble, record, forget, method="sisa", dataset=digits, device="cpu")
    notes = result.record.unlearning["notes"]
    assert (notes["shards_retrained"], notes["shards_total"], notes["slices_retrained"]) == (1, 3, 1)
    after = result.model.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]) == (not key.startswith("shards.1.")), key
    assert torch.equal(result.model.checkpoint(1, 0)["fc1.weight"], ensemble.checkpoint(1, 0)["fc1.weight"])
    new_assignment = decode_assignment(result.record.recipe["sisa"]["assignment"])
    assert not np.isin(forget, np.concatenate([p for shard in new_assignment for p in shard])).any()
    path = save_model(result.model, result.record, tmp_path / "u.safetensors")
    loaded, loaded_record = load_model(path)
    assert isinstance(loaded, SisaEnsemble) and loaded.checkpoints.keys() == result.model.checkpoints.keys()
    assert loaded_record.unlearning["notes"]["shards_retrained"] == 1


def test_sisa_refuses_a_model_that_is_not_sisa(digits, digits_mlp):
    model, record = digits_mlp
    with pytest.raises(AuditInputError, match="only SISA models"):
        unlearn(model, record, [0, 1], method="sisa", dataset=digits)


def test_retraining_a_sisa_model_gives_a_sisa_model(digits, sisa_model):
    ensemble, record = sisa_model
    result = unlearn(ensemble, record, record.train_indices[:5], method="retrain", dataset=digits, device="cpu")
    assert isinstance(result.model, SisaEnsemble)
    assert result.record.metrics["test_acc"] > 0.8


def test_cli_train_sisa_rejects_a_malformed_layout(tmp_path, capsys):
    assert main(["train", "--dataset", "digits", "--arch", "mlp", "--sisa", "five", "--out", str(tmp_path / "s.safetensors")]) == 2
    assert capsys.readouterr().err.strip() == "error: --sisa takes SHARDSxSLICES, e.g. 5x4, not 'five'."



def test_a_method_that_refuses_the_request_is_skipped_and_the_rest_still_run(digits, digits_mlp):
    model, record = digits_mlp
    forget = random_request(record.train_indices, 20, seed=4).indices
    result = compare_methods(model, record, forget, ["unsir", "finetune"], dataset=digits, device="cpu")
    assert list(result.rows) == ["retrain", "finetune"]
    assert "whole classes only" in result.skipped["unsir"]
    assert result.to_dict()["skipped"] == result.skipped
