"""Approximate unlearning by gradient steps: NegGrad+, random labels, SalUn, l1-sparse, boundary shrink and expand.

All six share one loop (:func:`_run_steps`): SGD with momentum over shuffled mini-batches, a
:class:`~mu_core.unlearn._common.RetainGuard` against collapse checked at least every fifth step,
progress per check. Methods driven
by the forget set count an epoch as one pass over it, each forget batch paired with a retain batch
of the same size drawn from an endless shuffled cycle of the retain set, so their cost grows with
the request, not with the training set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .._types import report
from ..errors import AuditInputError
from . import UnlearnContext, UnlearnMethod, register_method
from ._common import RetainGuard, minibatches

__all__ = ["last_linear", "random_wrong_labels", "saliency_mask"]

#: ``loss(forget_batch, retain_batch, fraction_done)``: batches are index tensors (``None`` when unused).
StepLoss = Callable[[torch.Tensor, torch.Tensor | None, float], torch.Tensor]

_GUARD_HELP = "stop once retain accuracy (512 retain samples) falls by more than this; the last good weights are kept"


def random_wrong_labels(y: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """For each label in ``y``, one drawn uniformly from the other ``num_classes - 1`` classes.

    >>> y = torch.tensor([0, 1, 2, 2])
    >>> bool((random_wrong_labels(y, 3, torch.Generator().manual_seed(0)) != y).all())
    True
    """
    if num_classes < 2:
        raise AuditInputError("Random wrong labels need at least two classes.")
    offset = torch.randint(1, num_classes, tuple(y.shape), generator=generator)
    return ((y.cpu() + offset) % num_classes).to(y.device)


def last_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """``(parent, attribute, layer)`` of the last ``nn.Linear`` registered in ``model`` (its classifier)."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found = (name, module)
    if found is None:
        raise AuditInputError("This model has no linear output layer, so no shadow class can be added to it.")
    path, layer = found
    parent_path, _, attribute = path.rpartition(".")
    return model.get_submodule(parent_path), attribute, layer


def saliency_mask(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, ratio: float, *, device: torch.device, batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """SalUn's weight saliency: ``True`` for the top ``ratio`` share of all parameters (one global
    ranking) by ``|gradient of the forget loss|`` at the current weights, summed over ``(x, y)``."""
    if not 0 < ratio <= 1:
        raise AuditInputError("mask_ratio must be a fraction in (0, 1].")
    params = dict(model.named_parameters())
    grads = {name: torch.zeros_like(p) for name, p in params.items()}
    was_training = model.training
    model.eval()
    for start in range(0, len(x), batch_size):
        model.zero_grad(set_to_none=True)
        xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
        F.cross_entropy(model(xb), yb, reduction="sum").backward()
        for name, p in params.items():
            if p.grad is not None:
                grads[name] += p.grad
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    keep = max(1, round(ratio * flat.numel()))
    order = torch.argsort(flat, descending=True, stable=True)
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[order[:keep]] = True
    masks, start = {}, 0
    for name, g in grads.items():
        masks[name] = chosen[start : start + g.numel()].view_as(g)
        start += g.numel()
    return masks


def _endless(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> Iterator[torch.Tensor]:
    while True:
        yield from minibatches(n, batch_size, generator, device)


def _run_steps(
    model: nn.Module,
    ctx: UnlearnContext,
    params: dict,
    loss_of: StepLoss,
    *,
    label: str,
    epoch_over: str = "forget",
    paired: bool = True,
    weight_decay: float = 0.0,
    guard_model: nn.Module | None = None,
    after_step: Callable[[torch.optim.Optimizer], None] | None = None,
) -> nn.Module:
    """``params["epochs"]`` passes over the forget (or retain) set with SGD (momentum 0.9); each
    step's loss comes from ``loss_of``. The guard checks ``guard_model`` (default ``model``) every
    step on small sets, at least every fifth step and at each epoch's end on large ones; the loop
    stops at the first check out of bounds."""
    n_forget, n_retain = len(ctx.forget_idx), len(ctx.retain_idx)
    n_primary = n_forget if epoch_over == "forget" else n_retain
    batch_size, epochs = int(params["batch_size"]), int(params["epochs"])
    generator = torch.Generator().manual_seed(int(params["seed"]))
    partners = _endless(n_retain, batch_size, generator, ctx.device) if paired else None
    watched = guard_model if guard_model is not None else model
    guard = RetainGuard(watched, ctx, max_drop=params["max_retain_drop"], seed=int(params["seed"]))
    optimizer = torch.optim.SGD(model.parameters(), lr=params["lr"], momentum=0.9, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(n_primary / batch_size)
    total = max(1, epochs * steps_per_epoch)
    check_every = max(1, min(5, steps_per_epoch // 10))
    step = 0
    for epoch in range(epochs):
        for batch in minibatches(n_primary, batch_size, generator, ctx.device):
            model.train()
            optimizer.zero_grad(set_to_none=True)
            loss = loss_of(batch, next(partners) if partners is not None else None, step / total)
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step(optimizer)
            step += 1
            if step % check_every == 0 or step % steps_per_epoch == 0:
                if not guard.ok(watched):
                    return model.eval()
                report(ctx.progress, step / total, f"{label}: epoch {epoch + 1}/{epochs}, loss {float(loss.detach()):.3f}")
    return model.eval()


def _on_device(ctx: UnlearnContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    (fx, fy), (rx, ry) = ctx.forget_data(), ctx.retain_data()
    return fx.to(ctx.device), fy.to(ctx.device), rx.to(ctx.device), ry.to(ctx.device)


@register_method
class NegGradPlus(UnlearnMethod):
    """NegGrad+ (Kurmanji et al., NeurIPS 2023, "Towards Unbounded Machine Unlearning"): each step
    minimises ``alpha * CE(retain batch) - (1 - alpha) * CE(forget batch)`` on paired batches,
    SGD with momentum 0.9.

    Deviations: an epoch is one pass over the forget set (each forget batch paired with the next
    retain batch), not over the retain set, so the cost follows the request's size; the ascent
    term is unbounded, so a retain-accuracy guard stops it and keeps the last good weights.
    """

    name = "neggrad_plus"
    summary = "descent on the retain set, weighted ascent on the forget set (paired batches)"
    defaults = {"epochs": 15, "lr": 0.01, "batch_size": 32, "alpha": 0.99, "max_retain_drop": 0.1, "seed": 0}
    #: Full-size Fashion-MNIST, random 10%: Avg. Gap 0.16 points at 7% of retraining's time
    #: (15 epochs at lr 0.01 over-fit the retain set: 4.2 points at 94% of the time).
    large = {"epochs": 1, "lr": 0.003}
    help = {
        "epochs": "passes over the forget set (each forget batch paired with a retain batch)",
        "lr": "SGD learning rate (momentum 0.9)",
        "batch_size": "forget and retain samples per step (each)",
        "alpha": "weight of the retain loss; the forget loss is ascended with weight 1 - alpha",
        "max_retain_drop": _GUARD_HELP,
        "seed": "seed of the batch order",
    }

    def run(self, model: nn.Module, ctx: UnlearnContext, **params) -> nn.Module:
        fx, fy, rx, ry = _on_device(ctx)
        alpha = float(params["alpha"])
        if not 0 <= alpha <= 1:
            raise AuditInputError("alpha must be a fraction in [0, 1].")

        def loss_of(forget: torch.Tensor, retain: torch.Tensor | None, _done: float) -> torch.Tensor:
            assert retain is not None
            descent = F.cross_entropy(model(rx[retain]), ry[retain])
            ascent = F.cross_entropy(model(fx[forget]), fy[forget])
            return alpha * descent - (1 - alpha) * ascent

        return _run_steps(model, ctx, params, loss_of, label="NegGrad+")


def _random_label_run(
    model: nn.Module,
    ctx: UnlearnContext,
    params: dict,
    *,
    label: str,
    after_step: Callable[[torch.optim.Optimizer], None] | None = None,
) -> nn.Module:
    fx, fy, rx, ry = _on_device(ctx)
    wrong = random_wrong_labels(fy, ctx.dataset.num_classes, torch.Generator().manual_seed(int(params["seed"]) + 1))
    forget_weight = float(params["forget_weight"])

    def loss_of(forget: torch.Tensor, retain: torch.Tensor | None, _done: float) -> torch.Tensor:
        assert retain is not None
        relabelled = F.cross_entropy(model(fx[forget]), wrong[forget])
        return forget_weight * relabelled + F.cross_entropy(model(rx[retain]), ry[retain])

    return _run_steps(model, ctx, params, loss_of, label=label, weight_decay=params["weight_decay"], after_step=after_step)


_RL_HELP = {
    "epochs": "passes over the forget set (each forget batch paired with a retain batch)",
    "lr": "SGD learning rate (momentum 0.9)",
    "batch_size": "forget and retain samples per step (each)",
    "weight_decay": "SGD weight decay",
    "forget_weight": "weight of the forget batch's random-label loss against the retain batch's loss",
    "max_retain_drop": _GUARD_HELP,
    "seed": "seed of the batch order and the random labels",
}


@register_method
class RandomLabel(UnlearnMethod):
    """RL (Golatkar et al., CVPR 2020; the form benchmarked by SalUn, Fan et al., ICLR 2024):
    train on the forget samples relabelled at random together with the retain set, SGD with
    momentum 0.9 and weight decay.

    Deviations: the random labels (drawn once, seeded) come from the other K - 1 classes, never
    the true one (SalUn's code draws from all K). SalUn's code trains on forget + retain
    concatenated, so the forget set weighs in by its share of the data; here each step pairs one
    forget batch with one retain batch of the same size, an epoch is one pass over the forget set
    (the cost follows the request, not the training set) and the forget loss is weighted by
    ``forget_weight`` (0.1, about SalUn's share of 10%). At weight 1 the confident original's huge
    random-label loss wrecks the whole model within a few steps.
    """

    name = "random_label"
    summary = "train the forget set on random wrong labels alongside the retain set"
    defaults = {"epochs": 10, "lr": 0.01, "batch_size": 32, "weight_decay": 5e-4, "forget_weight": 0.1, "max_retain_drop": 0.1, "seed": 0}
    #: Full-size Fashion-MNIST: Avg. Gap 0.91 points (random 10%) and 0.67 (a whole class) at 7-9%
    #: of retraining's time; at lr 0.01 the guard stops a random request within 10 steps.
    large = {"epochs": 1, "lr": 0.003}
    help = _RL_HELP

    def run(self, model: nn.Module, ctx: UnlearnContext, **params) -> nn.Module:
        return _random_label_run(model, ctx, params, label="Random labels")


@register_method
class SalUn(UnlearnMethod):
    """SalUn (Fan et al., ICLR 2024, "SalUn: Empowering Machine Unlearning via Gradient-based
    Weight Saliency"): the saliency mask keeps the top ``mask_ratio`` of all weights (one global
    ranking) by ``|gradient of the forget loss|`` at the original weights; random-label training
    (as in ``random_label``) then updates only those weights.

    Masked-out weights do not move at all: after every step they are put back bit for bit and
    their momentum is cleared, so neither momentum nor weight decay can shift them (SalUn's
    published code masked the gradient only). BatchNorm running statistics are buffers, not
    weights, and do follow the training data. Labels never equal the true one (see
    ``random_label``).
    """

    name = "salun"
    summary = "random labels on the weights most salient for the forget set only"
    defaults = {
        "epochs": 10,
        "lr": 0.01,
        "batch_size": 32,
        "weight_decay": 5e-4,
        "forget_weight": 0.1,
        "mask_ratio": 0.5,
        "max_retain_drop": 0.1,
        "seed": 0,
    }
    large = {"epochs": 1, "lr": 0.003}
    help = {**_RL_HELP, "mask_ratio": "share of all weights (most salient first) that may change"}

    def run(self, model: nn.Module, ctx: UnlearnContext, **params) -> nn.Module:
        fx, fy = ctx.forget_data()
        masks = saliency_mask(model, fx, fy, params["mask_ratio"], device=ctx.device)
        named = dict(model.named_parameters())
        frozen = [(named[name], ~mask, named[name].detach().clone()) for name, mask in masks.items()]

        @torch.no_grad()
        def keep_masked_out(optimizer: torch.optim.Optimizer) -> None:
            for param, out, original in frozen:
                param.copy_(torch.where(out, original, param))
                buffer = optimizer.state.get(param, {}).get("momentum_buffer")
                if buffer is not None:
                    buffer.masked_fill_(out, 0.0)

        return _random_label_run(model, ctx, params, label="SalUn", after_step=keep_masked_out)


@register_method
class L1Sparse(UnlearnMethod):
    """l1-sparse (Jia et al., NeurIPS 2023, "Model Sparsity Can Simplify Machine Unlearning"):
    fine-tune on the retain set minimising ``CE + gamma_t * ||theta||_1`` with ``gamma_t``
    decaying linearly from ``gamma`` to 0 (the paper's best schedule), SGD with momentum 0.9.

    Deviations: ``gamma_t`` decays per step rather than per epoch, and ``gamma`` is the l1 weight
    per pass over the retain set: each batch's loss carries ``gamma_t / batches per epoch``. The
    paper adds the whole ``gamma_t`` to every batch, so the total shrinkage, and the right
    ``gamma``, grow with the size of the training set; spread this way one default suits 1,400
    digits and 60,000 Fashion-MNIST images alike.
    """

    name = "l1_sparse"
    summary = "fine-tune on the retain set with a decaying l1 penalty on the weights"
    defaults = {"epochs": 5, "lr": 0.01, "batch_size": 64, "gamma": 0.3, "max_retain_drop": 0.1, "seed": 0}
    large = {"epochs": 1}
    help = {
        "epochs": "passes over the retain set",
        "lr": "SGD learning rate (momentum 0.9)",
        "batch_size": "retain samples per step",
        "gamma": "weight of the l1 norm of all parameters per pass over the retain set, at the start; it falls linearly to 0",
        "max_retain_drop": _GUARD_HELP,
        "seed": "seed of the batch order",
    }

    def run(self, model: nn.Module, ctx: UnlearnContext, **params) -> nn.Module:
        _, _, rx, ry = _on_device(ctx)
        gamma = float(params["gamma"]) / math.ceil(len(rx) / int(params["batch_size"]))

        def loss_of(retain: torch.Tensor, _partner: torch.Tensor | None, done: float) -> torch.Tensor:
            l1 = sum(p.abs().sum() for p in model.parameters())
            return F.cross_entropy(model(rx[retain]), ry[retain]) + gamma * (1 - done) * l1

        return _run_steps(model, ctx, params, loss_of, label="l1-sparse fine-tuning", epoch_over="retain", paired=False)


def _boundary_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, bounds: tuple[float, float], batch_size: int = 256) -> torch.Tensor:
    """Label of each sample's nearest adversarial neighbour: the original's prediction on the FGSM
    image, or its second most likely class where that prediction is still the true label."""
    model.eval()
    labels = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].clone().requires_grad_(True)
        yb = y[start : start + batch_size]
        (grad,) = torch.autograd.grad(F.cross_entropy(model(xb), yb), xb)
        with torch.no_grad():
            logits = model((xb + epsilon * grad.sign()).clamp(*bounds))
            top2 = logits.topk(2, dim=1).indices
            labels.append(torch.where(top2[:, 0] == yb, top2[:, 1], top2[:, 0]))
    return torch.cat(labels)


@register_method
class BoundaryShrink(UnlearnMethod):
    """Boundary shrink (Chen et al., CVPR 2023, "Boundary Unlearning"): find each forget sample's
    nearest adversarial label with FGSM on the original model (its prediction on the perturbed
    image, or the second most likely class if that is still the true one), then fine-tune the
    forget samples toward those labels. FGSM images are clipped to the training data's range.

    The paper fine-tunes with SGD (momentum 0.9) at lr 1e-5 for 10 epochs; the default lr here is
    3e-5 (1e-5 barely moves the small digits models in 10 epochs). Deviation: the usual retain
    guard. The adversarial labels come from the frozen original, so they are computed once.
    """

    name = "boundary_shrink"
    summary = "fine-tune the forget set toward its nearest adversarial (FGSM) labels"
    defaults = {"epochs": 10, "lr": 3e-5, "batch_size": 32, "epsilon": 0.1, "max_retain_drop": 0.1, "seed": 0}
    large = {"epochs": 2}
    help = {
        "epochs": "passes over the forget set",
        "lr": "SGD learning rate (momentum 0.9)",
        "batch_size": "forget samples per step",
        "epsilon": "FGSM step size (in the data's units; digits lie in [0, 1])",
        "max_retain_drop": _GUARD_HELP,
        "seed": "seed of the batch order",
    }

    def run(self, model: nn.Module, ctx: UnlearnContext, **params) -> nn.Module:
        fx, fy, _, _ = _on_device(ctx)
        bounds = (float(ctx.dataset.x_train.min()), float(ctx.dataset.x_train.max()))
        targets = _boundary_labels(model, fx, fy, float(params["epsilon"]), bounds)

        def loss_of(forget: torch.Tensor, _retain: torch.Tensor | None, _done: float) -> torch.Tensor:
            return F.cross_entropy(model(fx[forget]), targets[forget])

        return _run_steps(model, ctx, params, loss_of, label="Boundary shrink", paired=False)


class _FirstLogits(nn.Module):
    """``model`` with only its first ``k`` outputs (the widened model as it will be returned)."""

    def __init__(self, model: nn.Module, k: int) -> None:
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, : self.k]


@register_method
class BoundaryExpand(UnlearnMethod):
    """Boundary expand (Chen et al., CVPR 2023, "Boundary Unlearning"): widen the classifier (the
    last ``nn.Linear``) by one shadow output, fine-tune the whole model to put the forget samples
    into the shadow class, then drop the shadow output so the model has its original shape.

    Deviations: the paper fine-tunes at lr 1e-5 for 10 epochs; the default lr here is 3e-4, the
    smallest that lowers a random request's accuracy on the digits cnn at all (the shadow output
    starts from a fresh, seeded initialisation). The retain guard watches the model as it will be
    returned (shadow output dropped).
    """

    name = "boundary_expand"
    summary = "train the forget set into an extra shadow class, then drop it"
    defaults = {"epochs": 10, "lr": 3e-4, "batch_size": 32, "max_retain_drop": 0.1, "seed": 0}
    large = {"epochs": 2}
    help = {
        "epochs": "passes over the forget set",
        "lr": "SGD learning rate (momentum 0.9)",
        "batch_size": "forget samples per step",
        "max_retain_drop": _GUARD_HELP,
        "seed": "seed of the batch order and the shadow output's initial weights",
    }

    def run(self, model: nn.Module, ctx: UnlearnContext, **params) -> nn.Module:
        fx, _, _, _ = _on_device(ctx)
        parent, attribute, layer = last_linear(model)
        k = layer.out_features
        if k != ctx.dataset.num_classes:
            raise AuditInputError(f"The model's last linear layer has {k} outputs, not one per class ({ctx.dataset.num_classes}).")
        has_bias = layer.bias is not None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(params["seed"]))
            wide = nn.Linear(layer.in_features, k + 1, bias=has_bias)
        wide = wide.to(device=layer.weight.device, dtype=layer.weight.dtype)
        with torch.no_grad():
            wide.weight[:k] = layer.weight
            if has_bias:
                wide.bias[:k] = layer.bias
        setattr(parent, attribute, wide)
        shadow = torch.full((len(fx),), k, dtype=torch.long, device=ctx.device)

        def loss_of(forget: torch.Tensor, _retain: torch.Tensor | None, _done: float) -> torch.Tensor:
            return F.cross_entropy(model(fx[forget]), shadow[forget])

        try:
            _run_steps(model, ctx, params, loss_of, label="Boundary expand", paired=False, guard_model=_FirstLogits(model, k))
        finally:
            narrow = nn.Linear(layer.in_features, k, bias=has_bias).to(device=wide.weight.device, dtype=wide.weight.dtype)
            with torch.no_grad():
                narrow.weight.copy_(wide.weight[:k])
                if has_bias:
                    narrow.bias.copy_(wide.bias[:k])
            setattr(parent, attribute, narrow)
        return model.eval()
