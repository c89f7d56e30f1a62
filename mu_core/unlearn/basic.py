"""Retraining (exact), fine-tuning on the retain set, and gradient ascent (NegGrad)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .._types import report
from ..train import TrainConfig, default_config, fit_model, train_loop
from . import UnlearnContext, UnlearnMethod, register_method
from ._common import RetainGuard, minibatches


@register_method
class Retrain(UnlearnMethod):
    """Exact unlearning: train from scratch on the retain set with the original's recorded recipe
    and seed (the yardstick every other method is compared with).

    A model imported as a plain state dict has no recorded recipe; the architecture's default
    recipe is then used, and the result's parameters say so.
    """

    name = "retrain"
    summary = "exact: retrain from scratch without the forget set (original's recipe and seed)"
    exact = True
    defaults: dict = {}

    def run(self, model: nn.Module, ctx: UnlearnContext, **params) -> nn.Module:
        recipe = ctx.record.recipe
        if recipe.get("sisa"):
            from ..models.sisa import decode_assignment
            from ..train import fit_sisa
            from .sisa import remove_from_assignment

            sisa = recipe["sisa"]
            assignment = remove_from_assignment(decode_assignment(sisa["assignment"]), ctx.forget_idx)
            ensemble, record = fit_sisa(
                ctx.dataset, ctx.record.arch, TrainConfig.from_dict(recipe), shards=int(sisa["shards"]), slices=int(sisa["slices"]),
                aggregate=sisa.get("aggregate", "mean"), train_indices=ctx.retain_idx, assignment=assignment,
                progress=ctx.progress, device=ctx.device,
            )
            ctx.recipe_updates["sisa"] = record.recipe["sisa"]
            return ensemble
        if "epochs" in recipe and "lr" in recipe:
            config = TrainConfig.from_dict(recipe)
        else:
            config = default_config(ctx.record.arch, len(ctx.retain_idx))
            ctx.notes["recipe"] = f"original recipe unknown; architecture default used: {config.to_dict()}"
        retrained, _ = fit_model(ctx.dataset, ctx.record.arch, config, train_indices=ctx.retain_idx, init=_recorded_base(recipe),
                                 progress=ctx.progress, device=ctx.device)
        return retrained


def _recorded_base(recipe: dict) -> str | None:
    """The base model file a fine-tuned original started from (``recipe["init"]``), checked
    against its recorded sha256; ``None`` for a model trained from scratch."""
    from ..errors import AuditInputError
    from ..models import sha256_file

    init = recipe.get("init")
    if not init:
        return None
    path = Path(init["path"])
    if not path.is_file():
        raise AuditInputError(f"Retraining repeats the fine-tuning from the base model '{path}', which is no longer there; put it back first.")
    if init.get("sha256") and sha256_file(path) != init["sha256"]:
        raise AuditInputError(f"The base model '{path}' changed since the original was fine-tuned from it; retraining needs the same base.")
    return str(path)


@register_method
class Finetune(UnlearnMethod):
    """FT (Warnecke et al. 2023; SalUn's baseline): keep training the original on the retain set
    only, relying on catastrophic forgetting. SGD with momentum 0.9, as in SalUn's code."""

    name = "finetune"
    summary = "train the original further on the retain set"
    defaults = {"epochs": 5, "lr": 0.01, "batch_size": 64, "seed": 0}
    #: One pass over a large retain set already costs a fifth of a 5-epoch retrain.
    large = {"epochs": 1}
    help = {"epochs": "passes over the retain set", "lr": "SGD learning rate"}

    def run(self, model: nn.Module, ctx: UnlearnContext, **params) -> nn.Module:
        rx, ry = ctx.retain_data()
        config = TrainConfig(epochs=params["epochs"], batch_size=params["batch_size"], lr=params["lr"], optimizer="sgd", seed=params["seed"])
        return train_loop(model, rx, ry, config, device=ctx.device, progress=ctx.progress, label="Fine-tuning on retain set")


@register_method
class NegGrad(UnlearnMethod):
    """GA / NegGrad (Golatkar et al. 2020; Thudi et al. 2022): gradient *ascent* on the forget
    set's cross-entropy with plain SGD, a few epochs at a small learning rate.

    Deviation: unbounded ascent collapses the whole model within a few steps (on a whole-class
    request, always), so a :class:`~mu_core.unlearn._common.RetainGuard` checks retain accuracy
    after every step and stops ascent, keeping the last weights within ``max_retain_drop``.
    """

    name = "neggrad"
    summary = "gradient ascent on the forget set (stops before the model collapses)"
    defaults = {"epochs": 5, "lr": 0.01, "batch_size": 32, "max_retain_drop": 0.1, "seed": 0}
    help = {
        "epochs": "passes over the forget set",
        "lr": "SGD learning rate of the ascent",
        "max_retain_drop": "stop once retain accuracy falls by more than this (absolute)",
    }

    def run(self, model: nn.Module, ctx: UnlearnContext, **params) -> nn.Module:
        fx, fy = ctx.forget_data()
        fx, fy = fx.to(ctx.device), fy.to(ctx.device)
        guard = RetainGuard(model, ctx, max_drop=params["max_retain_drop"], seed=params["seed"])
        optimizer = torch.optim.SGD(model.parameters(), lr=params["lr"])
        generator = torch.Generator().manual_seed(params["seed"])
        loss_fn = nn.CrossEntropyLoss()
        for epoch in range(params["epochs"]):
            for batch in minibatches(len(fx), params["batch_size"], generator, ctx.device):
                model.train()
                optimizer.zero_grad(set_to_none=True)
                (-loss_fn(model(fx[batch]), fy[batch])).backward()
                optimizer.step()
                if not guard.ok(model):
                    return model.eval()
            report(ctx.progress, (epoch + 1) / params["epochs"], f"Gradient ascent: epoch {epoch + 1}/{params['epochs']}")
        return model.eval()
