"""SISA unlearning: retrain only the shards that held forgotten samples."""

from __future__ import annotations

import numpy as np
from torch import nn

from ..errors import AuditInputError
from ..models.sisa import SisaEnsemble, decode_assignment, encode_assignment
from ..train import TrainConfig, _train_shard
from . import UnlearnContext, UnlearnMethod, register_method


def remove_from_assignment(assignment: list[list[np.ndarray]], forget_idx: np.ndarray) -> list[list[np.ndarray]]:
    return [[np.setdiff1d(part, forget_idx) for part in shard] for shard in assignment]


@register_method
class Sisa(UnlearnMethod):
    """SISA (Bourtoule et al., IEEE S&P 2021): exact unlearning for models trained with
    ``train --sisa SxR``. Each shard holding a forgotten sample is retrained from its last
    checkpoint before the first slice that held one, without the forgotten samples; the other
    shards are untouched. The result's notes count the retrained shards and slices."""

    name = "sisa"
    summary = "exact, for SISA models: retrain only the affected shards from their last clean checkpoint"
    exact = True
    defaults: dict = {}

    def run(self, model: nn.Module, ctx: UnlearnContext, **params) -> nn.Module:
        sisa = ctx.record.recipe.get("sisa")
        if not isinstance(model, SisaEnsemble) or not sisa:
            raise AuditInputError("Method 'sisa' unlearns only SISA models; train one with 'train --sisa SxR' (e.g. 5x4).")
        assignment = decode_assignment(sisa["assignment"])
        config = TrainConfig.from_dict(ctx.record.recipe)
        epochs_per_slice = int(sisa["epochs_per_slice"])
        affected = []
        for s, parts in enumerate(assignment):
            hit = [r for r, part in enumerate(parts) if np.isin(part, ctx.forget_idx).any()]
            if hit:
                affected.append((s, hit[0]))
        cleaned = remove_from_assignment(assignment, ctx.forget_idx)
        for i, (s, first) in enumerate(affected):
            sub = None if ctx.progress is None else (lambda f, m, i=i: ctx.progress((i + f) / len(affected), m))
            _train_shard(model, s, cleaned[s], first, ctx.dataset, config, epochs_per_slice, ctx.device, sub)
        slices = len(assignment[0])
        ctx.notes["shards_retrained"] = len(affected)
        ctx.notes["shards_total"] = len(assignment)
        ctx.notes["slices_retrained"] = int(sum(slices - first for _, first in affected))
        ctx.recipe_updates["sisa"] = {**sisa, "assignment": encode_assignment(cleaned, ctx.record.n_train_split)}
        return model.eval()
