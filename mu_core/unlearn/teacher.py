"""Approximate unlearning by teachers, importance and curvature: SCRUB, Bad Teacher, SSD, Fisher forgetting, influence (WoodFisher) and UNSIR."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from .._types import report
from ..errors import AuditInputError
from ..models import build_model
from ..train import predict_logits
from . import UnlearnContext, UnlearnMethod, register_method
from ._common import RetainGuard, forgotten_class, minibatches

#: Per-sample gradients are taken in chunks of about this many floats (chunk x parameters).
_PER_SAMPLE_FLOATS = 5_000_000


def _distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the temperature-softened outputs, times T^2 (Hinton et al.)."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    teacher = F.softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_student, teacher, reduction="batchmean") * temperature**2


def _frozen(model: nn.Module) -> nn.Module:
    frozen = copy.deepcopy(model).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen


def _seeded_subset(n: int, size: int, seed: int) -> torch.Tensor:
    """``size`` of ``range(n)`` drawn without replacement from ``seed`` (all of it if ``size >= n``)."""
    if size >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].sort().values


def _squared_grads(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, *, expected: bool = False
) -> dict[str, torch.Tensor]:
    """Diagonal Fisher information: the mean over samples of the squared per-sample gradient.

    With ``expected=False`` the gradient is of the cross-entropy at the true label (the empirical
    Fisher); with ``expected=True`` it is ``sum_k p_k (d log p_k)^2`` over the model's own
    predictive distribution (the true Fisher, as in Golatkar et al.'s code). The model is used in
    eval mode (batch-norm running statistics), its weights are not changed.
    """
    was_training = model.training
    model.eval()
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}
    n_params = sum(p.numel() for p in params.values())
    chunk = max(8, min(256, _PER_SAMPLE_FLOATS // max(1, n_params)))

    def nll(weights: dict[str, torch.Tensor], sample: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (weights, buffers), (sample.unsqueeze(0),))
        return F.cross_entropy(logits, label.unsqueeze(0))

    per_sample = vmap(grad(nll), in_dims=(None, 0, 0))
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    for start in range(0, len(x), chunk):
        xb = x[start : start + chunk].to(device)
        if expected:
            with torch.no_grad():
                probs = F.softmax(functional_call(model, (params, buffers), (xb,)), dim=1)
            for k in range(probs.shape[1]):
                grads = per_sample(params, xb, torch.full((len(xb),), k, dtype=torch.long, device=device))
                weight = probs[:, k]
                for name, g in grads.items():
                    total[name] += torch.einsum("b,b...->...", weight, g.pow(2))
        else:
            grads = per_sample(params, xb, y[start : start + chunk].to(device))
            for name, g in grads.items():
                total[name] += g.pow(2).sum(0)
    model.train(was_training)
    return {name: t / max(1, len(x)) for name, t in total.items()}


def _batch_squared_grads(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, *, batch_size: int, seed: int
) -> dict[str, torch.Tensor]:
    """The mean over shuffled mini-batches of the squared mini-batch gradient of the cross-entropy
    (SSD's importance, as its authors' code computes it; eval mode, the weights are not changed)."""
    was_training = model.training
    model.eval()
    total = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    batches = 0
    for batch in minibatches(len(x), batch_size, torch.Generator().manual_seed(seed), torch.device("cpu")):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[batch].to(device)), y[batch].to(device)).backward()
        for name, p in model.named_parameters():
            if p.grad is not None:
                total[name] += p.grad.pow(2)
        batches += 1
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {name: t / max(1, batches) for name, t in total.items()}


def _mean_grad(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """Gradient of the mean cross-entropy over ``(x, y)`` (eval mode; the model is not changed)."""
    was_training = model.training
    model.eval()
    total = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for start in range(0, len(x), batch_size):
        model.zero_grad(set_to_none=True)
        xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
        (F.cross_entropy(model(xb), yb, reduction="sum") / len(x)).backward()
        for name, p in model.named_parameters():
            if p.grad is not None:
                total[name] += p.grad
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return total


def _one_shot_with_backoff(
    model: nn.Module,
    ctx: UnlearnContext,
    *,
    strength: float,
    apply: Callable[[nn.Module, float], None],
    max_drop: float,
    retries: int,
    seed: int,
    what: str,
    milder: Callable[[float], float] = lambda s: s / 2,
) -> nn.Module:
    """Apply a one-shot edit ``apply(model, strength)``; while retain accuracy falls by more than
    ``max_drop``, undo it and retry up to ``retries`` times with ``milder(strength)``. Every
    back-off is recorded in ``ctx.notes["backed_off"]``; if none stays within the bound the
    original weights are kept and the notes say so."""
    guard = RetainGuard(model, ctx, max_drop=max_drop, seed=seed)
    tried: list[str] = []
    for attempt in range(retries + 1):
        apply(model, strength)
        if guard.ok(model):
            break
        tried.append(f"{strength:.4g}")
        if attempt == retries:
            ctx.notes["backed_off"] = (
                f"retain accuracy fell by more than {max_drop:.0%} with {what} {', '.join(tried)}; the original weights were kept"
            )
            ctx.notes.pop("stopped_early", None)
            return model.eval()
        strength = milder(strength)
    if tried:
        ctx.notes.pop("stopped_early", None)
        ctx.notes["backed_off"] = (
            f"retain accuracy fell by more than {max_drop:.0%} with {what} {', '.join(tried)}; {what} {strength:.4g} was used"
        )
    return model.eval()


@register_method
class Scrub(UnlearnMethod):
    """SCRUB (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023).

    The student (the model, a copy of the original) is trained against the frozen original
    (the teacher). Each epoch starts, in the first ``max_epochs`` epochs only, with a "max" pass
    over the forget set that maximises KL(teacher || student), then a "min" pass over the retain
    set that minimises ``gamma * CE + alpha * KL``. Temperature 4, ``gamma`` 0.99, ``alpha``
    0.001 and SGD with momentum 0.9 and weight decay 5e-4 are the authors' small-scale settings;
    the learning rate, epochs and forget batch size were tuned on the digits cnn.

    Deviations: no SCRUB+R rewinding and no learning-rate schedule (few epochs). Unbounded KL
    ascent grows exponentially and kills every unit within a few steps, so a
    :class:`~mu_core.unlearn._common.RetainGuard` checks retain accuracy after every max step
    and ends that epoch's max pass (keeping the last weights within ``max_retain_drop`` and
    clearing the momentum) once it falls further; after every min pass it stops the method if
    retain accuracy is still beyond the bound. On a model without dropout or batch norm the
    first max pass starts at KL = 0, where its gradient vanishes, so forgetting starts in the
    second epoch. Random requests: where the model generalises to the forget samples (digits),
    the min passes restore them and forget accuracy barely moves.
    """

    name = "scrub"
    summary = "teacher-student: push away from the original on the forget set, stay close on the retain set"
    defaults = {
        "epochs": 4,
        "max_epochs": 2,
        "lr": 0.003,
        "temperature": 4.0,
        "gamma": 0.99,
        "alpha": 0.001,
        "batch_size": 64,
        "forget_batch_size": 16,
        "weight_decay": 5e-4,
        "max_retain_drop": 0.15,
        "seed": 0,
    }
    large = {"epochs": 1, "max_epochs": 1}
    help = {
        "epochs": "epochs in all; each has a min pass over the retain set",
        "max_epochs": "the first this many epochs also start with a max pass over the forget set",
        "lr": "SGD learning rate (momentum 0.9)",
        "temperature": "softmax temperature of the KL terms",
        "gamma": "weight of the cross-entropy in the min steps",
        "alpha": "weight of KL(teacher || student) in the min steps",
        "batch_size": "retain batch size",
        "forget_batch_size": "forget batch size",
        "weight_decay": "SGD weight decay",
        "max_retain_drop": "stop once retain accuracy falls by more than this (absolute)",
        "seed": "seed of the batch order",
    }

    def run(self, model: nn.Module, ctx: UnlearnContext, **params) -> nn.Module:
        fx = ctx.forget_data()[0].to(ctx.device)
        rx, ry = (t.to(ctx.device) for t in ctx.retain_data())
        teacher = _frozen(model)
        guard = RetainGuard(model, ctx, max_drop=params["max_retain_drop"], seed=params["seed"])
        optimizer = torch.optim.SGD(model.parameters(), lr=params["lr"], momentum=0.9, weight_decay=params["weight_decay"])
        generator = torch.Generator().manual_seed(params["seed"])
        temperature = params["temperature"]
        epochs = params["epochs"]

        def step(loss: torch.Tensor) -> None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        cut = []
        for epoch in range(epochs):
            model.train()
            if epoch < params["max_epochs"]:
                for batch in minibatches(len(fx), params["forget_batch_size"], generator, ctx.device):
                    with torch.no_grad():
                        target = teacher(fx[batch])
                    step(-_distill_kl(model(fx[batch]), target, temperature))
                    if not guard.ok(model):
                        optimizer.state.clear()
                        ctx.notes.pop("stopped_early")
                        cut.append(epoch + 1)
                        ctx.notes["max_steps_cut"] = (
                            f"the max pass of epoch(s) {', '.join(map(str, cut))} stopped early: retain accuracy fell by more than "
                            f"{params['max_retain_drop']:.0%}; the last weights within the bound were kept"
                        )
                        break
                    model.train()
            for batch in minibatches(len(rx), params["batch_size"], generator, ctx.device):
                with torch.no_grad():
                    target = teacher(rx[batch])
                logits = model(rx[batch])
                step(
                    params["gamma"] * F.cross_entropy(logits, ry[batch])
                    + params["alpha"] * _distill_kl(logits, target, temperature)
                )
            if not guard.ok(model):
                break
            report(ctx.progress, (epoch + 1) / epochs, f"SCRUB: epoch {epoch + 1}/{epochs}")
        return model.eval()


@register_method
class BadTeacher(UnlearnMethod):
    """Bad Teacher (Chundawat et al., "Can Bad Teaching Induce Forgetting?", AAAI 2023).

    The student (a copy of the original) distils a share of the retain set from the original
    (the competent teacher) and the forget set from a randomly initialised model of the same
    architecture (the incompetent teacher, seeded), by KL(teacher || student) of
    temperature-softened outputs; Adam, as in the authors' code.

    Deviations: the KL is averaged per sample (the authors' ``F.kl_div`` default averages over
    classes too, which only rescales the learning rate) and a
    :class:`~mu_core.unlearn._common.RetainGuard`, checked after every epoch, keeps the last
    weights within ``max_retain_drop`` of the original's retain accuracy.
    """

    name = "bad_teacher"
    summary = "distil the retain set from the original and the forget set from a random model"
    defaults = {
        "epochs": 2,
        "lr": 1e-3,
        "temperature": 1.0,
        "retain_share": 0.3,
        "batch_size": 64,
        "max_retain_drop": 0.15,
        "seed": 0,
    }
    help = {
        "epochs": "passes over forget set plus retain share",
        "lr": "Adam learning rate",
        "temperature": "softmax temperature of the KL",
        "retain_share": "share of the retain set distilled from the original (seeded)",
        "batch_size": "batch size",
        "max_retain_drop": "stop once retain accuracy falls by more than this (absolute)",
        "seed": "seed of the random teacher, the retain share and the batch order",
    }

    def run(self, model: nn.Module, ctx: UnlearnContext, **params) -> nn.Module:
        record = ctx.record
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(params["seed"])
            random_teacher = _frozen(build_model(record.arch, record.in_shape, record.num_classes))
        fx, _ = ctx.forget_data()
        rx, _ = ctx.retain_data()
        share = max(1, round(params["retain_share"] * len(rx)))
        rx = rx[_seeded_subset(len(rx), share, params["seed"])]
        x = torch.cat([fx, rx]).to(ctx.device)
        target = torch.cat(
            [predict_logits(random_teacher.to(ctx.device), fx, device=ctx.device), predict_logits(model, rx, device=ctx.device)]
        ).to(ctx.device)

        guard = RetainGuard(model, ctx, max_drop=params["max_retain_drop"], seed=params["seed"])
        optimizer = torch.optim.Adam(model.parameters(), lr=params["lr"])
        generator = torch.Generator().manual_seed(params["seed"])
        epochs = params["epochs"]
        for epoch in range(epochs):
            model.train()
            for batch in minibatches(len(x), params["batch_size"], generator, ctx.device):
                optimizer.zero_grad(set_to_none=True)
                _distill_kl(model(x[batch]), target[batch], params["temperature"]).backward()
                optimizer.step()
            if not guard.ok(model):
                break
            report(ctx.progress, (epoch + 1) / epochs, f"Bad Teacher: epoch {epoch + 1}/{epochs}")
        return model.eval()


@register_method
class SelectiveSynapticDampening(UnlearnMethod):
    """SSD, Selective Synaptic Dampening (Foster et al., "Fast Machine Unlearning Without
    Retraining Through Selective Synaptic Dampening", AAAI 2024).

    Importance is the diagonal Fisher information (mean squared gradient of the cross-entropy)
    on the forget set, ``I_f``, and on the training data, ``I_D``. Every weight with
    ``I_f > alpha * I_D`` is multiplied by ``min(lambda * I_D / I_f, 1)``; the rest are untouched.
    No training. As in the authors' code, the squared gradients are of shuffled mini-batches
    (``batch_size``, the same for both sets), averaged over the batches: per-sample squares
    would make ``alpha`` >= 10 select nothing on a 10-class whole-class request, since ``I_D``
    then contains a tenth of ``I_f``.

    Deviations: ``alpha`` defaults to 5, not the paper's 10 for ResNet-18 (the authors use 5
    for ViT): on the digits cnn, 10 forgets a whole class but leaves a random request exactly
    as it was. ``I_D`` is taken on a seeded subsample of at most ``importance_samples`` training
    samples (all of them on small data). If retain accuracy falls by more than
    ``max_retain_drop``, the edit is undone and retried with ``alpha`` doubled (fewer weights
    selected), up to ``retries`` times, and the notes say so.
    """

    name = "ssd"
    summary = "dampen the weights far more important to the forget set than to the training data"
    defaults = {
        "alpha": 5.0,
        "lam": 1.0,
        "batch_size": 64,
        "importance_samples": 5000,
        "max_retain_drop": 0.15,
        "retries": 3,
        "seed": 0,
    }
    help = {
        "alpha": "selection: dampen weights whose forget importance exceeds alpha x their training importance",
        "lam": "dampening constant lambda: a selected weight is scaled by min(lambda x I_D / I_f, 1)",
        "batch_size": "mini-batch size of the squared gradients (forget set and training data alike)",
        "importance_samples": "training samples (seeded subsample) used for the training-data importance",
        "max_retain_drop": "if retain accuracy falls by more than this, retry with alpha doubled",
        "retries": "how many times to retry with a milder selection",
        "seed": "seed of the subsample and of the retain-accuracy check",
    }

    def run(self, model: nn.Module, ctx: UnlearnContext, **params) -> nn.Module:
        fx, fy = ctx.forget_data()
        train_idx = torch.from_numpy(np.asarray(ctx.record.train_indices, dtype=np.int64))
        train_idx = train_idx[_seeded_subset(len(train_idx), params["importance_samples"], params["seed"])]
        report(ctx.progress, 0.05, "SSD: importance on the forget set")
        batch_size, seed = params["batch_size"], params["seed"]
        forget_imp = _batch_squared_grads(model, fx, fy, ctx.device, batch_size=batch_size, seed=seed)
        report(ctx.progress, 0.3, "SSD: importance on the training data")
        data_x, data_y = ctx.dataset.x_train[train_idx], ctx.dataset.y_train[train_idx]
        data_imp = _batch_squared_grads(model, data_x, data_y, ctx.device, batch_size=batch_size, seed=seed)
        original = copy.deepcopy(model.state_dict())
        report(ctx.progress, 0.9, "SSD: dampening")

        def dampen(target: nn.Module, alpha: float) -> None:
            target.load_state_dict(original)
            selected = 0
            with torch.no_grad():
                for name, p in target.named_parameters():
                    chosen = forget_imp[name] > alpha * data_imp[name]
                    factor = (params["lam"] * data_imp[name] / forget_imp[name].clamp_min(1e-30)).clamp(max=1.0)
                    p[chosen] *= factor[chosen]
                    selected += int(chosen.sum())
            ctx.notes["dampened_weights"] = selected

        return _one_shot_with_backoff(
            model,
            ctx,
            strength=params["alpha"],
            apply=dampen,
            max_drop=params["max_retain_drop"],
            retries=params["retries"],
            seed=params["seed"],
            what="alpha",
            milder=lambda a: a * 2,
        )


@register_method
class FisherForgetting(UnlearnMethod):
    """Fisher forgetting (Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020).

    Adds Gaussian noise to every weight with covariance ``alpha * F_r^{-1}``, ``F_r`` the
    diagonal (true) Fisher information on the retain set: weights the retain set relies on move
    little, the rest are scrambled. We follow the public code's covariance ``alpha * F^{-1}``
    (not the paper's ``(lambda sigma_h^2)^{1/4} F^{-1/4}`` scaling of the standard deviation, and
    without the paper's Newton step): ``1 / F`` is clamped at 1e3 (1e2 for the output layer), the
    variance of a weight matrix is averaged over its inputs (one value per output unit), and the
    output layer and all one-dimensional parameters (biases, norms) get ten times the variance.

    ``F_r`` is exact: ``sum_k p_k (d log p_k)^2`` from per-sample gradients for every class,
    on a seeded subsample of at most ``fisher_samples`` retain samples (on a CPU, lower it for
    ResNets: it costs one backward pass per sample and class).

    Deviations: the public code also zeroes the forgotten class's output row on class requests;
    we do not, so only the noise forgets (and a whole class mostly survives it). ``alpha``
    2e-6 was tuned on the digits cnn (the public code uses about 1e-6 on ResNets). If retain
    accuracy falls by more than ``max_retain_drop`` the same noise is applied with ``alpha``
    halved, up to ``retries`` times, and the notes say so.
    """

    name = "fisher"
    summary = "add noise shaped by the inverse Fisher information of the retain set"
    defaults = {"alpha": 2e-6, "fisher_samples": 1000, "max_retain_drop": 0.15, "retries": 4, "seed": 0}
    help = {
        "alpha": "noise scale: the noise covariance is alpha x the inverse (clamped) retain Fisher",
        "fisher_samples": "retain samples (seeded subsample) used for the Fisher information",
        "max_retain_drop": "if retain accuracy falls by more than this, retry with alpha halved",
        "retries": "how many times to retry with less noise",
        "seed": "seed of the noise and the subsample",
    }

    def run(self, model: nn.Module, ctx: UnlearnContext, **params) -> nn.Module:
        rx, ry = ctx.retain_data()
        keep = _seeded_subset(len(rx), params["fisher_samples"], params["seed"])
        report(ctx.progress, 0.05, "Fisher forgetting: Fisher information of the retain set")
        fisher = _squared_grads(model, rx[keep], ry[keep], ctx.device, expected=True)
        original = copy.deepcopy(model.state_dict())
        num_classes = ctx.record.num_classes
        names = [name for name, _ in model.named_parameters()]
        output_layer = {name for name in names[-2:] if fisher[name].shape[0] == num_classes}
        inv_fisher = {}
        for name in names:
            inv = (1.0 / (fisher[name] + 1e-8)).clamp(max=1e2 if name in output_layer else 1e3)
            if inv.ndim > 1:
                inv = inv.mean(dim=tuple(range(1, inv.ndim)), keepdim=True).expand_as(inv)
            if name in output_layer or inv.ndim == 1:
                inv = inv * 10
            inv_fisher[name] = inv
        report(ctx.progress, 0.8, "Fisher forgetting: adding noise")

        def add_noise(target: nn.Module, alpha: float) -> None:
            target.load_state_dict(original)
            generator = torch.Generator().manual_seed(params["seed"])
            with torch.no_grad():
                for name, p in target.named_parameters():
                    noise = torch.randn(p.shape, generator=generator).to(device=p.device, dtype=p.dtype)
                    p += (alpha * inv_fisher[name]).sqrt() * noise

        return _one_shot_with_backoff(
            model,
            ctx,
            strength=params["alpha"],
            apply=add_noise,
            max_drop=params["max_retain_drop"],
            retries=params["retries"],
            seed=params["seed"],
            what="alpha",
        )


@register_method
class Influence(UnlearnMethod):
    """IU, influence unlearning (Koh & Liang 2017; Izzo et al. 2021), WoodFisher-style as the
    "IU" baseline of SalUn (Fan et al., ICLR 2024) and Jia et al. (NeurIPS 2023).

    One Newton-like step ``theta += scale * H^{-1} v`` with
    ``v = n_f / n * (mean forget gradient - mean retain gradient)`` (the weighting of SalUn's
    code, ``n = n_f + n_r``), i.e. up the forget loss and down the retain loss.

    Approximation: ``H`` is the diagonal empirical Fisher on the retain set (mean squared
    per-sample gradient, on a seeded subsample of at most ``fisher_samples``) plus ``damping``
    times its mean over all weights, instead of WoodFisher's rank-one (Sherman-Morrison)
    recursion over 1,000 retain samples. A diagonal inverse overshoots badly where the Fisher is
    small, so the exact Newton step (``scale`` 1) would destroy the model; ``scale`` 0.03 and
    ``damping`` 10 were tuned on the digits cnn and mlp (SalUn tunes its ``alpha`` likewise).
    If retain accuracy falls by more than ``max_retain_drop`` the step is undone and retried
    with ``scale`` halved, up to ``retries`` times, and the notes say so.
    """

    name = "influence"
    summary = "one inverse-Hessian (diagonal Fisher) step away from the forget set"
    defaults = {"scale": 0.03, "damping": 10.0, "fisher_samples": 1000, "max_retain_drop": 0.15, "retries": 4, "seed": 0}
    help = {
        "scale": "step size of the Newton-like step",
        "damping": "added to the diagonal Fisher, as a multiple of its mean",
        "fisher_samples": "retain samples (seeded subsample) used for the Fisher information",
        "max_retain_drop": "if retain accuracy falls by more than this, retry with the scale halved",
        "retries": "how many times to retry with a smaller step",
        "seed": "seed of the subsample and of the retain-accuracy check",
    }

    def run(self, model: nn.Module, ctx: UnlearnContext, **params) -> nn.Module:
        fx, fy = ctx.forget_data()
        rx, ry = ctx.retain_data()
        n_forget, n_retain = len(fx), len(rx)
        report(ctx.progress, 0.05, "Influence: gradients")
        forget_grad = _mean_grad(model, fx, fy, ctx.device)
        retain_grad = _mean_grad(model, rx, ry, ctx.device)
        keep = _seeded_subset(n_retain, params["fisher_samples"], params["seed"])
        report(ctx.progress, 0.3, "Influence: Fisher information of the retain set")
        fisher = _squared_grads(model, rx[keep], ry[keep], ctx.device)
        damping = params["damping"] * float(torch.cat([f.flatten() for f in fisher.values()]).mean())
        weight = n_forget / (n_forget + n_retain)
        step = {name: weight * (forget_grad[name] - retain_grad[name]) / (fisher[name] + damping) for name in fisher}
        original = copy.deepcopy(model.state_dict())
        report(ctx.progress, 0.9, "Influence: Newton step")

        def newton(target: nn.Module, scale: float) -> None:
            target.load_state_dict(original)
            with torch.no_grad():
                for name, p in target.named_parameters():
                    p += scale * step[name]

        return _one_shot_with_backoff(
            model,
            ctx,
            strength=params["scale"],
            apply=newton,
            max_drop=params["max_retain_drop"],
            retries=params["retries"],
            seed=params["seed"],
            what="scale",
        )


@register_method
class Unsir(UnlearnMethod):
    """UNSIR (Tarun et al., "Fast Yet Effective Machine Unlearning", IEEE TNNLS 2023).

    Whole-class requests only. (1) Error-maximising noise: ``noise_samples`` inputs, learnt with
    Adam to maximise the cross-entropy of the forgotten class while an L2 penalty
    (``noise_reg`` x mean squared norm, as in the authors' code) keeps them small. (2) Impair:
    train on a seeded subset of the retain set (``retain_per_class`` per class) plus the noise,
    repeated ``noise_copies`` times and labelled as the forgotten class, at a high learning rate.
    (3) Repair: train on the retain subset alone.

    Deviation: a :class:`~mu_core.unlearn._common.RetainGuard` checks retain accuracy after the
    repair; if it is still more than ``max_retain_drop`` below the original's, the original
    weights are kept and the result's notes say so.
    """

    name = "unsir"
    summary = "whole classes: impair with error-maximising noise, then repair on the retain set"
    defaults = {
        "noise_samples": 64,
        "noise_steps": 50,
        "noise_lr": 0.1,
        "noise_reg": 0.1,
        "noise_copies": 5,
        "retain_per_class": 100,
        "impair_epochs": 1,
        "impair_lr": 0.003,
        "repair_epochs": 3,
        "repair_lr": 0.001,
        "batch_size": 64,
        "max_retain_drop": 0.15,
        "seed": 0,
    }
    help = {
        "noise_samples": "error-maximising noise inputs learnt for the class",
        "noise_steps": "Adam steps learning the noise",
        "noise_lr": "Adam learning rate of the noise",
        "noise_reg": "weight of the noise's L2 penalty",
        "noise_copies": "times the noise is repeated in the impair set",
        "retain_per_class": "retain samples per remaining class used to impair and repair (seeded)",
        "impair_epochs": "epochs of the impair step",
        "impair_lr": "Adam learning rate of the impair step",
        "repair_epochs": "epochs of the repair step",
        "repair_lr": "Adam learning rate of the repair step",
        "batch_size": "batch size",
        "max_retain_drop": "keep the last weights within this retain-accuracy drop (absolute)",
        "seed": "seed of the noise, the retain subset and the batch order",
    }

    def run(self, model: nn.Module, ctx: UnlearnContext, **params) -> nn.Module:
        cls = forgotten_class(ctx)
        if cls is None:
            raise AuditInputError(
                "UNSIR forgets whole classes only: choose a request that removes every training sample of one class, or another method."
            )
        device = ctx.device
        seed = params["seed"]
        generator = torch.Generator().manual_seed(seed)
        guard = RetainGuard(model, ctx, max_drop=params["max_retain_drop"], seed=seed)

        rx, ry = ctx.retain_data()
        subset = []
        for label in torch.unique(ry):
            members = torch.nonzero(ry == label).flatten()
            subset.append(members[_seeded_subset(len(members), params["retain_per_class"], seed + int(label))])
        keep = torch.cat(subset)
        rx, ry = rx[keep].to(device), ry[keep].to(device)

        report(ctx.progress, 0.05, "UNSIR: learning error-maximising noise")
        model.eval()
        noise = torch.randn((params["noise_samples"], *ctx.record.in_shape), generator=generator).to(device).requires_grad_(True)
        noise_opt = torch.optim.Adam([noise], lr=params["noise_lr"])
        noise_labels = torch.full((params["noise_samples"],), cls, dtype=torch.long, device=device)
        for _ in range(params["noise_steps"]):
            noise_opt.zero_grad(set_to_none=True)
            loss = -F.cross_entropy(model(noise), noise_labels) + params["noise_reg"] * noise.pow(2).flatten(1).sum(1).mean()
            (noise_grad,) = torch.autograd.grad(loss, [noise])
            noise.grad = noise_grad
            noise_opt.step()
        noise = noise.detach()

        def train(x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float) -> None:
            optimizer = torch.optim.Adam(model.parameters(), lr=lr)
            for _ in range(epochs):
                model.train()
                for batch in minibatches(len(x), params["batch_size"], generator, device):
                    optimizer.zero_grad(set_to_none=True)
                    F.cross_entropy(model(x[batch]), y[batch]).backward()
                    optimizer.step()

        report(ctx.progress, 0.3, "UNSIR: impair")
        copies = params["noise_copies"]
        train(
            torch.cat([rx, noise.repeat(copies, *[1] * (noise.ndim - 1))]),
            torch.cat([ry, noise_labels.repeat(copies)]),
            params["impair_epochs"],
            params["impair_lr"],
        )
        report(ctx.progress, 0.6, "UNSIR: repair")
        train(rx, ry, params["repair_epochs"], params["repair_lr"])
        guard.ok(model)
        return model.eval()
