"""Pieces every unlearning method shares: mini-batches, the collapse guard, request kinds."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from ..train import accuracy
from . import UnlearnContext

__all__ = ["RetainGuard", "forgotten_class", "minibatches", "whole_class"]


def minibatches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> Iterator[torch.Tensor]:
    """Shuffled index batches covering ``range(n)`` once (an epoch), drawn from ``generator``."""
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size].to(device)


def whole_class(labels: np.ndarray, forget_idx: np.ndarray, retain_idx: np.ndarray) -> int | None:
    """The class a whole-class request removes (all forget samples share a label that no retain
    sample has), else ``None``."""
    forget_labels = np.unique(labels[forget_idx])
    if forget_labels.size != 1 or np.any(labels[retain_idx] == forget_labels[0]):
        return None
    return int(forget_labels[0])


def forgotten_class(ctx: UnlearnContext) -> int | None:
    """:func:`whole_class` of a method's context."""
    return whole_class(ctx.dataset.y_train.numpy(), ctx.forget_idx, ctx.retain_idx)


class RetainGuard:
    """Stops a method before it collapses the model.

    Accuracy on a fixed, seeded sample of up to ``sample`` retain examples is checked whenever
    :meth:`ok` is called; once it falls more than ``max_drop`` below the starting model's, the
    last weights that were within the bound are restored, :meth:`ok` returns ``False`` and the
    result's notes say so. ``max_drop >= 1`` disables the guard.

    >>> guard = RetainGuard(model, ctx, max_drop=0.1, seed=0)       # doctest: +SKIP
    >>> for step in ...:                                             # doctest: +SKIP
    ...     optimizer.step()
    ...     if not guard.ok(model):
    ...         break
    """

    def __init__(self, model: nn.Module, ctx: UnlearnContext, *, max_drop: float, seed: int = 0, sample: int = 512) -> None:
        rx, ry = ctx.retain_data()
        watch = torch.randperm(len(rx), generator=torch.Generator().manual_seed(seed))[:sample]
        self.x, self.y = rx[watch], ry[watch]
        self.ctx, self.max_drop = ctx, float(max_drop)
        self.start_acc = accuracy(model, self.x, self.y, device=ctx.device)
        self.floor = self.start_acc - self.max_drop
        self.checks = 0
        self.stopped = False
        self._good = copy.deepcopy(model.state_dict())

    def ok(self, model: nn.Module) -> bool:
        """``True`` if the model is within the bound (and remembered as good); else restore it."""
        self.checks += 1
        if self.max_drop >= 1:
            return True
        acc = accuracy(model, self.x, self.y, device=self.ctx.device)
        if acc >= self.floor:
            self._good = copy.deepcopy(model.state_dict())
            return True
        model.load_state_dict(self._good)
        self.stopped = True
        self.ctx.notes["stopped_early"] = (
            f"retain accuracy fell from {self.start_acc:.1%} to {acc:.1%} (more than {self.max_drop:.0%}) at check "
            f"{self.checks}; the last weights within the bound were kept"
        )
        return False
