"""Unlearning inversion (Hu et al. 2024): metrics, the sign of the target, the attack on digits, the CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mu_core.errors import AuditInputError
from mu_core.inversion import (
    InversionConfig,
    apply_defense,
    image_metrics,
    infer_labels,
    invert,
    output_layer_label_scores,
    rank_in_class,
    recover_features,
    ssim_window,
    target_direction,
)

#: The forgotten sample of the end-to-end tests (a training index of digits).
FORGET_INDEX = 7


def _flat_grad(model, x, y) -> torch.Tensor:
    loss = F.cross_entropy(model(x), y, reduction="sum")
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])


def _ascent_step(model, x, y, lr: float):
    """One gradient-ascent step on ``(x, y)``: ``theta_u = theta_o + lr * grad``."""
    unlearned = copy.deepcopy(model)
    grads = torch.autograd.grad(F.cross_entropy(unlearned(x), y, reduction="sum"), list(unlearned.parameters()))
    with torch.no_grad():
        for p, g in zip(unlearned.parameters(), grads, strict=True):
            p.add_(lr * g)
    return unlearned


# ------------------------------------------------------------------ metrics


def test_metrics_of_known_images() -> None:
    black = np.zeros((1, 8, 8))
    grey = np.full((1, 8, 8), 0.1)
    same = image_metrics(black, black)
    assert same["mse"] == 0 and same["psnr"] == float("inf") and same["ssim"] == pytest.approx(1.0)
    off = image_metrics(grey, black)
    assert off["mse"] == pytest.approx(0.01)
    assert off["psnr"] == pytest.approx(20.0)
    # constant images: SSIM = C1 / (mu_x^2 + mu_y^2 + C1) with C1 = (0.01 * data range 1.0)^2
    assert off["ssim"] == pytest.approx(1e-4 / (0.01 + 1e-4), rel=1e-6)
    rng = np.random.default_rng(0)
    img = rng.random((1, 8, 8))
    assert image_metrics(img, img)["ssim"] == pytest.approx(1.0)
    assert image_metrics(1 - img, img)["ssim"] < 0


def test_ssim_window_fits_the_image() -> None:
    small, large = ssim_window(8, 8), ssim_window(28, 28)
    assert (small["kernel_size"], small["gaussian_kernel"]) == (3, False)
    assert (large["kernel_size"], large["sigma"], large["gaussian_kernel"]) == (11, 1.5, True)


def test_rank_counts_closer_samples_of_the_class() -> None:
    x_train = torch.arange(5, dtype=torch.float32).reshape(5, 1, 1, 1).expand(5, 1, 2, 2).clone() / 4
    candidates = np.array([0, 1, 2, 3, 4])
    assert rank_in_class(x_train[2].numpy(), 2, candidates, x_train) == 1
    assert rank_in_class(x_train[4].numpy(), 2, candidates, x_train) == 3  # samples 4 and 3 are closer
    assert rank_in_class(x_train[2].numpy() + 0.1, 2, candidates, x_train) == 1


# ------------------------------------------------------------------ the sign


def test_one_ascent_step_points_along_the_samples_gradient(digits, digits_mlp) -> None:
    model = copy.deepcopy(digits_mlp[0]).eval()
    x, y = digits.x_train[FORGET_INDEX : FORGET_INDEX + 1], digits.y_train[FORGET_INDEX : FORGET_INDEX + 1]
    unlearned = _ascent_step(model, x, y, lr=0.1)
    grad = _flat_grad(model, x, y)
    assert F.cosine_similarity(target_direction(model, unlearned), grad, dim=0) > 0.999
    assert F.cosine_similarity(target_direction(unlearned, model), grad, dim=0) < -0.999


def test_exact_setting_weights_the_two_finetuning_updates(digits, digits_mlp) -> None:
    """Full-batch descent from a base on D_u and on D_u minus one sample: the weighted difference
    is lr times the forgotten sample's gradient at the base (same sign as gradient ascent)."""
    base = copy.deepcopy(digits_mlp[0]).eval()
    idx = torch.arange(40)
    lr = 0.05

    def descent(indices: torch.Tensor):
        model = copy.deepcopy(base)
        grads = torch.autograd.grad(F.cross_entropy(model(digits.x_train[indices]), digits.y_train[indices]), list(model.parameters()))
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads, strict=True):
                p.sub_(lr * g)
        return model

    original, unlearned = descent(idx), descent(idx[idx != FORGET_INDEX])
    target = target_direction(original, unlearned, base=base, n_train=40, n_forget=1)
    grad = _flat_grad(base, digits.x_train[FORGET_INDEX : FORGET_INDEX + 1], digits.y_train[FORGET_INDEX : FORGET_INDEX + 1])
    assert torch.allclose(target, lr * grad, atol=1e-5, rtol=1e-3)


def test_output_layer_read_names_the_ascended_label_on_the_digits_cnn(digits, digits_cnn) -> None:
    """iDLG-style white-box read: after one ascent step on a sample of each class, the output
    row that moved most negatively in theta_u - theta_o is that sample's class; the wrong sign
    (theta_o - theta_u) puts that class last."""
    model, record = copy.deepcopy(digits_cnn[0]).eval(), digits_cnn[1]
    y_train = digits.y_train.numpy()
    for label in range(10):
        index = int(next(i for i in record.train_indices if y_train[i] == label))
        x, y = digits.x_train[index : index + 1], digits.y_train[index : index + 1]
        unlearned = _ascent_step(model, x, y, lr=0.01)
        scores = output_layer_label_scores(model, target_direction(model, unlearned), 10)
        assert int(np.argmin(scores)) == label and scores[label] < 0
        assert int(np.argmax(output_layer_label_scores(model, target_direction(unlearned, model), 10))) == label


def test_invert_reports_both_label_reads(neggrad_one, digits) -> None:
    original, record, unlearned, unlearned_record = neggrad_one
    config = InversionConfig(steps=5, restarts=1, label_method="weights")
    result = invert(original, unlearned, [FORGET_INDEX], record=record, unlearned_record=unlearned_record, dataset=digits,
                    config=config, device="cpu")
    sample, data = result.samples[0], result.to_dict()
    assert sample["inferred_label"] == sample["weight_label"] == int(digits.y_train[FORGET_INDEX])
    assert data["label_method"] == "weights" and set(data["label_accuracy_by_method"]) == {"probe", "weights"}
    assert data["label_accuracy_by_method"]["weights"] == 1.0 and len(data["weight_label_scores"]) == 10
    with pytest.raises(AuditInputError):
        InversionConfig(label_method="guess").validate()


def test_reconstruction_from_the_right_sign_beats_the_wrong_one(digits, digits_mlp) -> None:
    model = copy.deepcopy(digits_mlp[0]).eval()
    x, y = digits.x_train[FORGET_INDEX : FORGET_INDEX + 1], digits.y_train[FORGET_INDEX : FORGET_INDEX + 1]
    unlearned = _ascent_step(model, x, y, lr=0.1)
    config = InversionConfig(steps=300, restarts=1)
    right = recover_features(model, target_direction(model, unlearned), [int(y)], (1, 8, 8), config)
    wrong = recover_features(model, target_direction(unlearned, model), [int(y)], (1, 8, 8), config)
    mse_right = image_metrics(right.images[0], x[0].numpy())["mse"]
    mse_wrong = image_metrics(wrong.images[0], x[0].numpy())["mse"]
    assert mse_right < 0.5 * mse_wrong
    assert right.final_losses[0] < 0.2 < wrong.final_losses[0]


def test_feature_recovery_reports_live_snapshots(digits, digits_mlp) -> None:
    model = copy.deepcopy(digits_mlp[0]).eval()
    x, y = digits.x_train[:1], digits.y_train[:1]
    snaps, messages = [], []
    recover_features(model, target_direction(model, _ascent_step(model, x, y, lr=0.1)), [int(y)], (1, 8, 8),
                     InversionConfig(steps=50, restarts=2, snapshot_every=25), snapshot=snaps.append,
                     progress=lambda f, m: messages.append((f, m)))
    assert [(s.restart, s.step) for s in snaps] == [(0, 25), (0, 50), (1, 25), (1, 50)]
    assert snaps[-1].images.shape == (1, 1, 8, 8) and 0 <= snaps[-1].images.min() and snaps[-1].images.max() <= 1
    assert len(snaps[-1].losses) == 50 and messages[-1][0] == pytest.approx(1.0) and "cosine loss" in messages[-1][1]


# ------------------------------------------------------------------ the attack on digits


@pytest.fixture(scope="module")
def neggrad_one(digits, digits_mlp):
    """The digits mlp and the same model after NegGrad on one sample."""
    from mu_core.unlearn import unlearn

    model, record = digits_mlp
    result = unlearn(model, record, [FORGET_INDEX], method="neggrad", dataset=digits, device="cpu")
    return model, record, result.model, result.record


def test_label_inference_names_the_forgotten_class(neggrad_one, digits) -> None:
    original, _, unlearned, _ = neggrad_one
    labels = infer_labels(copy.deepcopy(original), copy.deepcopy(unlearned), (1, 8, 8), 10, InversionConfig())
    assert int(labels.ranking[0]) == int(digits.y_train[FORGET_INDEX])
    assert labels.change[labels.ranking[0]] < 0
    assert (labels.probe_confidence > 0.8).all()


def test_inversion_singles_out_the_forgotten_digit(neggrad_one, digits) -> None:
    original, record, unlearned, unlearned_record = neggrad_one
    result = invert(original, unlearned, [FORGET_INDEX], record=record, unlearned_record=unlearned_record, dataset=digits,
                    config=InversionConfig(steps=300, restarts=2), device="cpu")
    sample = result.samples[0]
    assert result.setting == "approximate"
    assert sample["inferred_label"] == sample["true_label"] == int(digits.y_train[FORGET_INDEX])
    assert sample["rank"] == 1 and result.top1_share == 1.0 and result.label_accuracy == 1.0
    assert sample["mse"] < 0.05 and sample["ssim"] > 0.3
    assert len(result.loss_history) == 2 and len(result.loss_history[0]) == 301
    assert result.loss_history[result.best_restart][-1] < result.loss_history[result.best_restart][0]


def test_defenses_change_the_unlearned_model(neggrad_one, digits) -> None:
    _, record, unlearned, _ = neggrad_one
    flat = torch.cat([p.detach().reshape(-1) for p in unlearned.parameters()])
    noisy = torch.cat([p.reshape(-1) for p in apply_defense(unlearned, "noise", 0.01).parameters()])
    assert 0.005 < float((noisy - flat).detach().std()) < 0.02
    pruned = apply_defense(unlearned, "prune", 0.5)
    assert abs(float((pruned.fc1.weight == 0).float().mean()) - 0.5) < 0.01
    retain = np.setdiff1d(record.train_indices, [FORGET_INDEX])
    tuned = apply_defense(unlearned, "finetune", 3, dataset=digits, retain_idx=retain)
    assert not torch.equal(tuned.fc1.weight, unlearned.fc1.weight)
    assert torch.equal(apply_defense(unlearned, "none", 0).fc1.weight, unlearned.fc1.weight)


# ------------------------------------------------------------------ CLI and the case


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    from mu_core.cli import main

    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_invert_writes_pngs_and_the_json_contract(neggrad_one, tmp_path: Path, capsys) -> None:
    from mu_core.models import save_model

    original, record, unlearned, unlearned_record = neggrad_one
    save_model(original, record, tmp_path / "o.safetensors")
    save_model(unlearned, unlearned_record, tmp_path / "u.safetensors")
    (tmp_path / "forget.txt").write_text(f"{FORGET_INDEX}\n")
    out = tmp_path / "inv"
    code, stdout, err = _run(["invert", "--original", str(tmp_path / "o.safetensors"), "--unlearned", str(tmp_path / "u.safetensors"),
                              "--forget", str(tmp_path / "forget.txt"), "--steps", "150", "--restarts", "1", "--out", str(out)], capsys)
    assert code == 0, err
    data = json.loads((out / "inversion.json").read_text())
    assert set(data["samples"][0]) >= {"index", "true_label", "inferred_label", "mse", "psnr", "ssim", "rank"}
    assert data["samples"][0]["index"] == FORGET_INDEX
    assert {"label_accuracy", "top1_share"} <= set(data) and data["setting"] == "approximate"
    assert data["label_method"] == "probe" and set(data["label_accuracy_by_method"]) == {"probe", "weights"}
    assert (out / f"sample_{FORGET_INDEX}.png").stat().st_size > 100
    assert "rank 1:" in stdout

    (tmp_path / "bad.txt").write_text("99999\n")
    code, _, err = _run(["invert", "--original", str(tmp_path / "o.safetensors"), "--unlearned", str(tmp_path / "u.safetensors"),
                         "--forget", str(tmp_path / "bad.txt"), "--out", str(tmp_path / "bad")], capsys)
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_cli_invert_defense_sweep_scores_each_defense(neggrad_one, tmp_path: Path, capsys) -> None:
    from mu_core.models import save_model

    original, record, unlearned, unlearned_record = neggrad_one
    save_model(original, record, tmp_path / "o.safetensors")
    save_model(unlearned, unlearned_record, tmp_path / "u.safetensors")
    (tmp_path / "forget.txt").write_text(f"{FORGET_INDEX}\n")
    common = ["invert", "--original", str(tmp_path / "o.safetensors"), "--unlearned", str(tmp_path / "u.safetensors"),
              "--forget", str(tmp_path / "forget.txt"), "--steps", "30", "--restarts", "1"]
    code, stdout, err = _run([*common, "--defense-sweep", "noise:0.01,prune:0.5", "--out", str(tmp_path / "d")], capsys)
    assert code == 0, err
    rows = json.loads((tmp_path / "d" / "defenses.json").read_text())["rows"]
    assert [(r["defense"], r["strength"]) for r in rows] == [("none", 0.0), ("noise", 0.01), ("prune", 0.5)]
    assert all(0.0 <= r["test_acc"] <= 1.0 and 0.0 <= r["top1_share"] <= 1.0 for r in rows) and "prune" in stdout
    code, _, err = _run([*common, "--defense", "noise:0.01", "--defense-sweep", "prune:0.5", "--out", str(tmp_path / "e")], capsys)
    assert code == 2 and "not both" in err


def test_train_init_records_the_base_and_retrain_starts_from_it(digits, digits_mlp, tmp_path: Path, capsys) -> None:
    from mu_core.models import load_model, save_model
    from mu_core.train import TrainConfig, fit_model
    from mu_core.unlearn import unlearn

    base_path = save_model(*digits_mlp, tmp_path / "base.safetensors")
    code, _, err = _run(["train", "--dataset", "digits", "--arch", "mlp", "--init", str(base_path), "--train-size", "60",
                         "--epochs", "2", "--out", str(tmp_path / "ft.safetensors")], capsys)
    assert code == 0, err
    model, record = load_model(tmp_path / "ft.safetensors")
    assert record.recipe["init"]["path"] == str(base_path.resolve()) and len(record.recipe["init"]["sha256"]) == 64
    forget = record.train_indices[:1]
    retrained = unlearn(model, record, forget, method="retrain", dataset=digits, device="cpu").model
    expected, _ = fit_model(digits, "mlp", TrainConfig.from_dict(record.recipe), train_indices=np.setdiff1d(record.train_indices, forget),
                            init=base_path, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(retrained.state_dict().values(), expected.state_dict().values(), strict=True))
    scratch, _ = fit_model(digits, "mlp", TrainConfig.from_dict(record.recipe), train_indices=np.setdiff1d(record.train_indices, forget), device="cpu")
    assert not torch.equal(scratch.fc1.weight, retrained.fc1.weight)

    base_path.unlink()
    with pytest.raises(AuditInputError, match="no longer there"):
        unlearn(model, record, forget, method="retrain", dataset=digits, device="cpu")


def test_case_inversion_stays_in_the_case_and_goes_with_the_request(digits_mlp, tmp_path: Path) -> None:
    from mu_core.case import CaseStore
    from mu_core.forget import explicit_request
    from mu_core.models import save_model
    from mu_core.workflow import case_import_model, case_invert, case_set_forget, case_unlearn

    store = CaseStore()
    case = store.create("inversion")
    case_import_model(case, save_model(*digits_mlp, tmp_path / "m.safetensors").read_bytes(), "m.safetensors")
    record = digits_mlp[1]
    case_set_forget(case, explicit_request([FORGET_INDEX], record.train_indices, record.n_train_split))
    case_unlearn(case, "neggrad")
    data = case_invert(case, steps=60, restarts=1)
    folder = case.path("inversion")
    assert data["samples"][0]["index"] == FORGET_INDEX
    assert (folder / "inversion.json").is_file() and (folder / f"sample_{FORGET_INDEX}.png").is_file()
    assert not (folder / "live.npz").exists()
    assert case.entry("inversion")["setting"] == "approximate"
    case_set_forget(case, explicit_request([FORGET_INDEX + 1], record.train_indices, record.n_train_split))
    assert not folder.exists() and case.entry("inversion") is None
