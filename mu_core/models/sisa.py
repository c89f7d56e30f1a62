"""SISA ensembles (Bourtoule et al., "Machine Unlearning", IEEE S&P 2021).

The training set is split into S shards, each shard into R slices. Each shard's model is trained
slice by slice on a growing prefix of its slices, with a checkpoint after every slice. Unlearning
retrains only the shards holding forgotten samples, from the last checkpoint before the first
slice that held one. Predictions aggregate the shard models: the mean of their probabilities
(``mean``, default) or a majority vote (``vote``).

A SISA model is one safetensors file: the shard models' weights under ``shards.<s>.``, the
checkpoints of slices 0..R-2 under ``sisa_checkpoints.<s>.<r>.`` (the last slice's is the shard
model itself), and the shard/slice assignment of every training index in the record's
``recipe["sisa"]``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .archs import build_model
from .io import decode_indices, encode_indices

__all__ = ["CKPT_PREFIX", "SisaEnsemble", "model_from_record", "sisa_assignment"]

CKPT_PREFIX = "sisa_checkpoints."


class SisaEnsemble(nn.Module):
    """S shard models of one architecture; ``forward`` returns log aggregated probabilities."""

    def __init__(self, arch: str, in_shape: tuple[int, int, int], num_classes: int, shards: int, aggregate: str = "mean") -> None:
        super().__init__()
        if aggregate not in ("mean", "vote"):
            raise ValueError(f"unknown SISA aggregate '{aggregate}'")
        self.shards = nn.ModuleList(build_model(arch, in_shape, num_classes) for _ in range(shards))
        self.arch_name = arch
        self.aggregate = aggregate
        #: ``"<shard>.<slice>.<param>" -> tensor`` for slices 0..R-2.
        self.checkpoints: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([shard(x) for shard in self.shards])
        if self.aggregate == "vote":
            votes = nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float().mean(0)
            # ties break towards the higher mean probability
            probs = votes + 1e-3 * torch.softmax(logits, -1).mean(0)
            return torch.log(probs / probs.sum(-1, keepdim=True))
        return torch.log(torch.softmax(logits, -1).mean(0).clamp_min(1e-12))

    def checkpoint(self, shard: int, slice_: int) -> dict[str, torch.Tensor]:
        prefix = f"{shard}.{slice_}."
        return {k[len(prefix) :]: v for k, v in self.checkpoints.items() if k.startswith(prefix)}

    def set_checkpoint(self, shard: int, slice_: int, state: dict[str, torch.Tensor]) -> None:
        prefix = f"{shard}.{slice_}."
        for key in [k for k in self.checkpoints if k.startswith(prefix)]:
            del self.checkpoints[key]
        self.checkpoints.update({prefix + k: v.detach().cpu().clone() for k, v in state.items()})

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """What :func:`~mu_core.models.save_model` stores beside the state dict."""
        return {CKPT_PREFIX + k: v for k, v in self.checkpoints.items()}


def sisa_assignment(train_indices: np.ndarray, shards: int, slices: int, seed: int) -> list[list[np.ndarray]]:
    """``assignment[s][r]``: the sorted training indices of slice r of shard s (seeded, balanced)."""
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(np.asarray(train_indices, dtype=np.int64))
    return [[np.sort(part) for part in np.array_split(shard, slices)] for shard in np.array_split(shuffled, shards)]


def encode_assignment(assignment: list[list[np.ndarray]], n: int) -> list[list[dict]]:
    return [[encode_indices(part, n) for part in shard] for shard in assignment]


def decode_assignment(data: list[list[dict]]) -> list[list[np.ndarray]]:
    return [[decode_indices(part) for part in shard] for shard in data]


def model_from_record(record) -> nn.Module:
    """A fresh model of the record's kind: a :class:`SisaEnsemble` for SISA records."""
    if record.arch == "ddpm":
        from .ddpm import ddpm_from_record

        return ddpm_from_record(record)
    sisa = record.recipe.get("sisa") if isinstance(record.recipe, dict) else None
    if sisa:
        return SisaEnsemble(record.arch, record.in_shape, record.num_classes, int(sisa["shards"]), sisa.get("aggregate", "mean"))
    return build_model(record.arch, record.in_shape, record.num_classes)
