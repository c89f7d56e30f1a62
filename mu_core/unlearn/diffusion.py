"""Unlearning for diffusion models (``family = "diffusion"``): retrain, finetune, neggrad, erasediff.

Same names and the same ``unlearn`` call as the classifier methods; the registry picks the
implementation by the model's family. Each works for random and whole-class requests.
"""

from __future__ import annotations

import copy

import torch

from .._types import report
from ..models.ddpm import CLASSIFIER_FRACTIONS, DDPM, denoising_losses
from ..train import TrainConfig
from ..train_diffusion import ddpm_default_config, fit_ddpm
from . import UnlearnContext, UnlearnMethod, register_method

#: The retain guard watches the denoising loss on this many fixed retain samples.
GUARD_SAMPLES = 256


class RetainLossGuard:
    """The diffusion counterpart of :class:`~mu_core.unlearn._common.RetainGuard`: the denoising
    loss on a fixed, seeded sample of retain data (fixed timesteps and noise) is checked when
    :meth:`ok` is called; once it exceeds ``(1 + max_increase)`` times the starting model's, the
    last weights within the bound are restored and the result's notes say so."""

    def __init__(self, model: DDPM, ctx: UnlearnContext, *, max_increase: float, seed: int = 0) -> None:
        rx, ry = ctx.retain_data()
        watch = torch.randperm(len(rx), generator=torch.Generator().manual_seed(seed))[:GUARD_SAMPLES]
        self.x, self.y, self.ctx = rx[watch], ry[watch], ctx
        self.ts = [int(f * model.timesteps) for f in CLASSIFIER_FRACTIONS]
        self.start = self._loss(model)
        self.ceiling = self.start * (1 + float(max_increase))
        self.checks = 0
        self._good = copy.deepcopy(model.state_dict())

    def _loss(self, model: DDPM) -> float:
        model.eval()
        return float(denoising_losses(model, self.x, self.y, timesteps=self.ts, seed=1, device=self.ctx.device).mean())

    def ok(self, model: DDPM) -> bool:
        self.checks += 1
        loss = self._loss(model)
        if loss <= self.ceiling:
            self._good = copy.deepcopy(model.state_dict())
            return True
        model.load_state_dict(self._good)
        self.ctx.notes["stopped_early"] = (
            f"retain denoising loss rose from {self.start:.4f} to {loss:.4f} (more than the allowed increase) at check "
            f"{self.checks}; the last weights within the bound were kept"
        )
        return False


def _batches(n: int, batch_size: int, steps: int, generator: torch.Generator):
    """``steps`` index batches, reshuffling ``range(n)`` at each pass."""
    order, pos = torch.randperm(n, generator=generator), 0
    for _ in range(steps):
        if pos >= n:
            order, pos = torch.randperm(n, generator=generator), 0
        yield order[pos : pos + batch_size]
        pos += batch_size


@register_method
class DiffusionRetrain(UnlearnMethod):
    """Exact unlearning of a DDPM: train from scratch on the retain set with the original's
    recorded recipe, seed and noise schedule (``recipe["diffusion"]``)."""

    name = "retrain"
    family = "diffusion"
    summary = "exact: retrain the DDPM from scratch without the forget set (original's recipe, schedule and seed)"
    exact = True
    defaults: dict = {}

    def run(self, model: DDPM, ctx: UnlearnContext, **params) -> DDPM:
        recipe = ctx.record.recipe
        if "epochs" in recipe and "lr" in recipe:
            config = TrainConfig.from_dict(recipe)
        else:
            config = ddpm_default_config(len(ctx.retain_idx))
            ctx.notes["recipe"] = f"original recipe unknown; the DDPM default used: {config.to_dict()}"
        retrained, _ = fit_ddpm(ctx.dataset, config, ctx.retain_idx, settings=recipe.get("diffusion"), progress=ctx.progress,
                                device=ctx.device)
        return retrained


@register_method
class DiffusionFinetune(UnlearnMethod):
    """FT for diffusion models (the baseline of EraseDiff and SalUn's diffusion experiments):
    keep minimising the denoising loss on the retain set only (Adam)."""

    name = "finetune"
    family = "diffusion"
    summary = "train the DDPM further on the retain set"
    defaults = {"steps": 1000, "lr": 5e-4, "batch_size": 64, "seed": 0}
    help = {"steps": "optimiser steps on retain batches", "lr": "Adam learning rate"}

    def run(self, model: DDPM, ctx: UnlearnContext, **params) -> DDPM:
        rx, ry = ctx.retain_data()
        rx, ry = rx.to(ctx.device), ry.to(ctx.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=params["lr"])
        gen = torch.Generator().manual_seed(params["seed"])
        steps = int(params["steps"])
        model.train()
        for i, batch in enumerate(_batches(len(rx), params["batch_size"], steps, gen)):
            optimizer.zero_grad(set_to_none=True)
            model.training_loss(rx[batch.to(ctx.device)], ry[batch.to(ctx.device)], gen).backward()
            optimizer.step()
            if (i + 1) % max(1, steps // 50) == 0:
                report(ctx.progress, (i + 1) / steps, f"Fine-tuning on retain set: step {i + 1}/{steps}")
        return model.eval()


@register_method
class DiffusionNegGrad(UnlearnMethod):
    """NegGrad for diffusion models: gradient *ascent* on the forget set's denoising loss
    (Adam on the negated loss), as in the diffusion-unlearning baselines of EraseDiff (Wu et al.
    2024) and SalUn (Fan et al. 2024). A :class:`RetainLossGuard` stops the ascent before the
    whole model collapses (the deviation matching the classifier ``neggrad``)."""

    name = "neggrad"
    family = "diffusion"
    summary = "gradient ascent on the forget set's denoising loss (stops before the model collapses)"
    defaults = {"steps": 200, "lr": 1e-4, "batch_size": 64, "max_retain_increase": 1.0, "check_every": 10, "seed": 0}
    help = {
        "steps": "ascent steps on forget batches",
        "lr": "Adam learning rate of the ascent",
        "max_retain_increase": "stop once the retain denoising loss grows by more than this share",
        "check_every": "steps between checks of the retain loss",
    }

    def run(self, model: DDPM, ctx: UnlearnContext, **params) -> DDPM:
        fx, fy = ctx.forget_data()
        fx, fy = fx.to(ctx.device), fy.to(ctx.device)
        guard = RetainLossGuard(model, ctx, max_increase=params["max_retain_increase"], seed=params["seed"])
        optimizer = torch.optim.Adam(model.parameters(), lr=params["lr"])
        gen = torch.Generator().manual_seed(params["seed"])
        steps = int(params["steps"])
        for i, batch in enumerate(_batches(len(fx), params["batch_size"], steps, gen)):
            model.train()
            optimizer.zero_grad(set_to_none=True)
            (-model.training_loss(fx[batch.to(ctx.device)], fy[batch.to(ctx.device)], gen)).backward()
            optimizer.step()
            if ((i + 1) % max(1, params["check_every"]) == 0 or i + 1 == steps) and not guard.ok(model):
                break
            report(ctx.progress, (i + 1) / steps, f"Gradient ascent: step {i + 1}/{steps}")
        return model.eval()


@register_method
class EraseDiff(UnlearnMethod):
    """EraseDiff (Wu et al., "EraseDiff: Erasing Data Influence in Diffusion Models", 2024):
    keep the denoising loss on the retain set low while teaching the model, on the forget set,
    to predict noise from another distribution (``eps_f ~ U(0, 1)`` per pixel, not the Gaussian
    noise that made ``x_t``), so its reverse chain no longer leads to the forgotten images.

    Deviation: the paper solves a bi-level problem (an inner loop of ``K`` steps approximating
    the forget-loss minimiser, then an outer step on ``L_r + lambda (L_f(theta) - L_f(phi*))``);
    here the single-level penalty ``L_r + lambda * L_f`` is minimised with Adam, one retain and
    one forget batch per step (the first-order form without the inner loop).
    """

    name = "erasediff"
    family = "diffusion"
    summary = "EraseDiff: denoise retain data, map forget data to uniform noise (single-level form)"
    defaults = {"steps": 500, "lr": 2e-4, "batch_size": 64, "forget_weight": 1.0, "seed": 0}
    help = {"steps": "optimiser steps (a retain and a forget batch each)", "lr": "Adam learning rate",
            "forget_weight": "lambda: weight of the forget objective"}

    def run(self, model: DDPM, ctx: UnlearnContext, **params) -> DDPM:
        fx, fy = (t.to(ctx.device) for t in ctx.forget_data())
        rx, ry = (t.to(ctx.device) for t in ctx.retain_data())
        optimizer = torch.optim.Adam(model.parameters(), lr=params["lr"])
        gen = torch.Generator().manual_seed(params["seed"])
        steps = int(params["steps"])
        retain_batches = _batches(len(rx), params["batch_size"], steps, gen)
        model.train()
        for i, fb in enumerate(_batches(len(fx), params["batch_size"], steps, gen)):
            rb = next(retain_batches).to(ctx.device)
            fb = fb.to(ctx.device)
            optimizer.zero_grad(set_to_none=True)
            x0 = fx[fb] * 2 - 1
            t = torch.randint(0, model.timesteps, (len(fb),), generator=gen).to(ctx.device)
            noise = torch.randn(x0.shape, generator=gen).to(ctx.device)
            target = torch.rand(x0.shape, generator=gen).to(ctx.device)
            forget_loss = (model.net(model.noisy(x0, t, noise), t, fy[fb]) - target).pow(2).mean()
            loss = model.training_loss(rx[rb], ry[rb], gen) + params["forget_weight"] * forget_loss
            loss.backward()
            optimizer.step()
            if (i + 1) % max(1, steps // 50) == 0:
                report(ctx.progress, (i + 1) / steps, f"EraseDiff: step {i + 1}/{steps}")
        return model.eval()
