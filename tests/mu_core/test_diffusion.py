"""Diffusion models: the DDPM, its training and file, unlearning, the attacks and ``generate``."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from mu_core.errors import AuditInputError
from mu_core.forget import random_request, write_request
from mu_core.models import load_model, save_model
from mu_core.models.ddpm import DDPM, denoising_losses, diffusion_settings, is_diffusion
from mu_core.train import TrainConfig, fit_model

#: A tiny DDPM that overfits 60 digits: T = 50, 600 full-batch Adam steps (a few seconds).
OVERFIT = TrainConfig(epochs=600, batch_size=64, lr=2e-3, seed=0)


@pytest.fixture(scope="module")
def overfit(digits):
    """``(model, record, request)``: the overfit DDPM and a request to forget 30 of its 60 samples."""
    model, record = fit_model(digits, "ddpm", OVERFIT, train_size=60, timesteps=50, device="cpu")
    return model, record, random_request(record.train_indices, 30, seed=0)


@pytest.fixture(scope="module")
def retrained(digits, overfit):
    from mu_core.unlearn import unlearn

    model, record, request = overfit
    return unlearn(model, record, request.indices, method="retrain", dataset=digits, device="cpu")


def test_ddpm_file_keeps_weights_schedule_and_training_indices(overfit, tmp_path):
    model, record, _ = overfit
    assert record.arch == "ddpm" and is_diffusion(record) and len(record.train_indices) == 60
    settings = record.recipe["diffusion"]
    assert settings == diffusion_settings((1, 8, 8), 50) and settings["net"] == "mlp"
    assert record.metrics["train_acc"] > record.metrics["test_acc"] - 0.05  # the diffusion classifier learnt the classes
    loaded, loaded_record = load_model(save_model(model, record, tmp_path / "ddpm.safetensors"))
    assert loaded.timesteps == 50 and np.array_equal(loaded_record.train_indices, record.train_indices)
    x = torch.rand(4, 1, 8, 8)
    assert torch.allclose(loaded(x), model(x))
    assert torch.allclose(loaded.alphas_cumprod, model.alphas_cumprod)


def test_overfit_ddpm_denoises_its_training_samples_better(digits, overfit):
    model, record, _ = overfit
    members = torch.from_numpy(record.train_indices)
    loss_in = denoising_losses(model, digits.x_train[members], digits.y_train[members], timesteps=[5, 10, 15], draws=2).mean()
    loss_out = denoising_losses(model, digits.x_test[:60], digits.y_test[:60], timesteps=[5, 10, 15], draws=2).mean()
    assert loss_in < 0.7 * loss_out


def test_unet_for_28_pixel_images_and_samplers_report_progress():
    model = DDPM((1, 28, 28), 3, diffusion_settings((1, 28, 28), 20))
    assert model.settings["net"] == "unet"
    seen: list[float] = []
    for sampler in ("ddim", "ddpm"):
        images = model.sample(torch.tensor([0, 2]), sampler=sampler, steps=5, seed=3, progress=lambda f, m: seen.append(f))
        assert images.shape == (2, 1, 28, 28) and 0 <= float(images.min()) and float(images.max()) <= 1
        assert seen == sorted(seen) and seen[-1] == 1.0
        seen.clear()
    again = model.sample(torch.tensor([0, 2]), steps=5, seed=3)
    assert torch.equal(again, model.sample(torch.tensor([0, 2]), steps=5, seed=3))
    with pytest.raises(AuditInputError, match="between 0 and 2"):
        model.sample(torch.tensor([5]))


def test_methods_say_which_model_families_they_support():
    from mu_core.unlearn import get_method, list_methods, method_families

    assert list_methods("diffusion") == ["retrain", "finetune", "neggrad", "erasediff"]
    assert set(method_families("neggrad")) == {"classifier", "diffusion"}
    assert method_families("erasediff") == ("diffusion",)
    with pytest.raises(AuditInputError, match="'scrub' unlearns classifiers only; for diffusion models choose one of: retrain"):
        get_method("scrub", "diffusion")
    with pytest.raises(AuditInputError, match="'erasediff' unlearns diffusion models only"):
        get_method("erasediff", "classifier")


@pytest.mark.parametrize("method", ["neggrad", "erasediff", "finetune"])
def test_diffusion_unlearning_raises_the_forget_loss_relative_to_retain(digits, overfit, method):
    from mu_core.unlearn import unlearn

    model, record, request = overfit
    params = {"steps": 60 if method != "neggrad" else 40, "seed": 0}
    result = unlearn(model, record, request.indices, method=method, params=params, dataset=digits, device="cpu")
    before = record.metrics  # losses measured on train/test; the unlearned record has forget/retain/test
    after = result.record.metrics
    assert result.record.unlearning["method"] == method and np.array_equal(result.record.train_indices,
                                                                           np.setdiff1d(record.train_indices, request.indices))
    assert {"forget_acc", "retain_acc", "test_acc", "forget_loss", "retain_loss"} <= set(after)
    if method in ("neggrad", "erasediff"):
        assert after["forget_loss"] > before["train_loss"] * 1.5
    if method == "neggrad":  # ascent on a random request hurts retain data as much: the guard stops it and says so
        assert "retain denoising loss rose" in result.record.unlearning["notes"]["stopped_early"]
    assert not any(torch.equal(a, b) for a, b in zip(result.model.parameters(), model.parameters(), strict=True))


def test_retrain_repeats_the_schedule_and_forgets(overfit, retrained):
    _, record, _request = overfit
    assert retrained.record.recipe["diffusion"] == record.recipe["diffusion"]
    metrics = retrained.record.metrics
    assert metrics["forget_loss"] > 1.5 * metrics["retain_loss"]  # the forget set is held-out data to the retrained model


def test_audit_of_a_copy_is_not_forgotten_and_attacks_see_the_overfit_original(digits, overfit, retrained):
    from mu_core.attacks.diffusion import DIFFUSION_ATTACKS
    from mu_core.audit.report import run_audit

    model, record, request = overfit
    copy_record = record.with_updates(unlearning={"method": "copy", "params": {}, "forget_indices": request.indices.tolist()})
    report = run_audit({"original": (model, record), "unlearned": (copy.deepcopy(model), copy_record),
                        "retrained": (retrained.model, retrained.record)}, request.indices, attacks=list(DIFFUSION_ATTACKS),
                       dataset=digits, device="cpu", bootstrap=50)
    data = report.data
    assert data["verdict"] == "not_forgotten"
    for attack in ("diffusion_loss", "pia", "score_norm", "secmi"):
        assert data["attacks"][attack]["original"]["auc"] > 0.8, attack
        assert abs(data["attacks"][attack]["retrained"]["auc"] - 0.5) < 0.25, attack
    assert data["attack_info"]["pia"]["higher_means"].startswith("score = minus")


def test_classifier_reference_attacks_and_diffusion_attacks_refuse_the_wrong_family(digits, overfit, digits_mlp):
    from mu_core.audit.report import run_audit

    model, record, request = overfit
    report = run_audit({"original": (model, record), "unlearned": (model, record)}, request.indices, attacks=["lira_offline", "loss"],
                       dataset=digits, device="cpu", bootstrap=20)
    assert "classifiers" in report.data["attacks"]["lira_offline"]["not_run"]
    assert 0 <= report.data["attacks"]["loss"]["original"]["auc"] <= 1  # the diffusion classifier's outputs
    mlp, mlp_record = digits_mlp
    req = random_request(mlp_record.train_indices, 20, seed=0)
    report = run_audit({"original": (mlp, mlp_record), "unlearned": (mlp, mlp_record)}, req.indices, attacks=["pia"], dataset=digits,
                       device="cpu", bootstrap=20)
    assert "classifier" in report.data["attacks"]["pia"]["not_run"]


def test_gsa1_averages_before_the_norm_and_gsa2_after(digits, overfit):
    from mu_core.attacks.diffusion import gsa_features

    model, _record, _ = overfit
    x, y = digits.x_test[:6], digits.y_test[:6]
    one1 = gsa_features(model, x, y, timesteps=[10], mode="gsa1", device=torch.device("cpu"))
    one2 = gsa_features(model, x, y, timesteps=[10], mode="gsa2", device=torch.device("cpu"))
    np.testing.assert_allclose(one1, one2, rtol=1e-4, atol=1e-5)  # one timestep: the same thing
    g1 = gsa_features(model, x, y, timesteps=[5, 25, 45], mode="gsa1", device=torch.device("cpu"))
    g2 = gsa_features(model, x, y, timesteps=[5, 25, 45], mode="gsa2", device=torch.device("cpu"))
    assert g1.shape == (6, len(list(model.parameters())))
    assert np.all(g1 <= g2 + 1e-6) and np.mean(g2 - g1) > 0.05  # ||mean of gradients|| <= mean of ||gradients||


def test_gsa_trains_reference_ddpms_once_and_reuses_them(digits, tmp_path):
    from mu_core.audit.report import run_audit

    model, record = fit_model(digits, "ddpm", TrainConfig(epochs=3, batch_size=64, seed=0), train_size=40, timesteps=20, device="cpu")
    request = random_request(record.train_indices, 20, seed=0)
    kwargs = dict(attacks=["gsa1", "gsa2"], dataset=digits, device="cpu", bootstrap=20, reference_dir=tmp_path,
                  options={"gsa_reference_models": 1, "diffusion_timesteps": [2, 10]})
    first = run_audit({"original": (model, record), "unlearned": (model, record)}, request.indices, **kwargs)
    stored = (tmp_path / "diffusion_references.safetensors").stat().st_mtime_ns
    second = run_audit({"original": (model, record), "unlearned": (model, record)}, request.indices, **kwargs)
    assert (tmp_path / "diffusion_references.safetensors").stat().st_mtime_ns == stored
    for attack in ("gsa1", "gsa2"):
        assert first.data["attacks"][attack]["original"]["auc"] == second.data["attacks"][attack]["original"]["auc"]


def test_cli_trains_generates_and_audits_a_ddpm(tmp_path, capsys):
    from PIL import Image

    from mu_core.cli import main

    original, forget = tmp_path / "ddpm.safetensors", tmp_path / "forget.txt"
    assert main(["train", "--dataset", "digits", "--arch", "ddpm", "--train-size", "50", "--epochs", "2", "--timesteps", "30",
                 "--out", str(original)]) == 0
    assert "ddpm on digits, 50 training samples" in capsys.readouterr().out
    assert main(["generate", "--model", str(original), "--per-class", "3", "--steps", "4", "--classes", "1,7",
                 "--out", str(tmp_path / "gen")]) == 0
    grid = Image.open(tmp_path / "gen" / "grid.png")
    assert grid.size == (3 * 33 + 1, 2 * 33 + 1)  # 3 columns, 2 class rows of 8x8 images scaled 4x plus 1-pixel gaps
    assert json.loads((tmp_path / "gen" / "samples.json").read_text())["classes"] == ["1", "7"]
    _, record = load_model(original)
    write_request(random_request(record.train_indices, 10, seed=0), forget)
    capsys.readouterr()
    assert main(["unlearn", "--model", str(original), "--forget", str(forget), "--method", "scrub", "--out", str(tmp_path / "u.safetensors")]) == 2
    assert "'scrub' unlearns classifiers only" in capsys.readouterr().err
    assert main(["unlearn", "--model", str(original), "--forget", str(forget), "--method", "neggrad", "--param", "steps=5",
                 "--out", str(tmp_path / "u.safetensors")]) == 0
    assert main(["audit", "--original", str(original), "--unlearned", str(tmp_path / "u.safetensors"), "--forget", str(forget),
                 "--timesteps", "3,9", "--noise-draws", "2", "--bootstrap", "20", "--out", str(tmp_path / "audit")]) == 0
    report = json.loads((tmp_path / "audit" / "report.json").read_text())
    assert set(report["attacks"]) == {"diffusion_loss", "secmi", "pia", "score_norm"}
    assert {"verdict", "verdict_reason", "records", "utility", "provenance"} <= set(report)
    assert main(["generate", "--model", str(original), "--per-class", "0", "--out", str(tmp_path / "g0")]) == 2
    capsys.readouterr()
    assert main(["invert", "--original", str(original), "--unlearned", str(tmp_path / "u.safetensors"), "--forget", str(forget),
                 "--out", str(tmp_path / "inv")]) == 2
    assert main(["compare", "--model", str(original), "--forget", str(forget), "--methods", "neggrad", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "'invert' covers classifiers only" in err and "compare scores classifiers" in err
