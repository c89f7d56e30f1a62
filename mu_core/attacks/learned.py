"""Attacks with a learned classifier, trained on reference models' members and non-members.

- ``shadow`` (Shokri et al. 2017): the classifier sees a model's output for a sample.
- ``gradient_norm`` (white-box; GSA's features, Pang et al., carried to classifiers): the
  classifier sees the norm of the sample's loss gradient for each parameter tensor.

The classifier is scikit-learn's ``HistGradientBoostingClassifier`` (one for all classes, the
class given as a feature, rather than Shokri's one model per class). Training rows come from
every reference model: up to :data:`ROWS_PER_MODEL` of its IN and as many OUT population
samples, never an audit target.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import AttackContext, register_attack
from .features import augmentations, lira_phi

ROWS_PER_MODEL = 200


def _training_rows(ctx: AttackContext) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per reference model: (IN positions, OUT positions), equal numbers, no audit targets."""
    if "learned_rows" not in ctx.cache:
        refs = ctx.references()
        targets = np.r_[refs.positions(train_idx=ctx.member_idx), refs.positions(test_idx=ctx.nonmember_idx)]
        usable = np.ones(refs.keep.shape[1], dtype=bool)
        usable[targets] = False
        rng = np.random.default_rng(ctx.seed + 101)
        rows = []
        for k in range(refs.count):
            ins, outs = np.flatnonzero(refs.keep[k] & usable), np.flatnonzero(~refs.keep[k] & usable)
            n = min(ROWS_PER_MODEL, ins.size, outs.size)
            rows.append((rng.choice(ins, n, replace=False), rng.choice(outs, n, replace=False)))
        ctx.cache["learned_rows"] = rows
    return ctx.cache["learned_rows"]


def output_features(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> np.ndarray:
    """Sorted top-3 probabilities, log p_y, LiRA's phi, -entropy, correctness, and the class (one-hot)."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    p = logp.exp()
    top = torch.sort(p, dim=-1, descending=True).values[:, : min(3, p.shape[-1])]
    log_py = logp.gather(-1, y.view(-1, 1)).squeeze(-1)
    feats = [top.numpy(), log_py.numpy()[:, None], lira_phi(logits, y)[:, None], (p * logp).sum(-1).numpy()[:, None],
             (logits.argmax(-1) == y).double().numpy()[:, None], np.eye(num_classes)[y.numpy()]]
    return np.concatenate(feats, axis=1)


def _fit(features_in: list[np.ndarray], features_out: list[np.ndarray], seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = np.concatenate(features_in + features_out)
    labels = np.r_[np.ones(sum(len(f) for f in features_in)), np.zeros(sum(len(f) for f in features_out))]
    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed).fit(x, labels)


@register_attack(
    "shadow",
    summary="Shadow-model attack (Shokri et al. 2017): a classifier trained on reference models' outputs for their members and non-members",
    higher_means="score = the classifier's probability of 'member'",
    knowledge="black-box outputs; data from the same distribution and the training recipe (reference models)",
    reference_models=True,
)
def shadow_attack(ctx: AttackContext, role: str):
    if "shadow_clf" not in ctx.cache:
        refs = ctx.references()
        _, pop_y = refs.population(ctx.data)
        f_in, f_out = [], []
        for k, (ins, outs) in enumerate(_training_rows(ctx)):
            f_in.append(output_features(refs.logits[k, 0, ins], pop_y[ins], ctx.data.num_classes))
            f_out.append(output_features(refs.logits[k, 0, outs], pop_y[outs], ctx.data.num_classes))
        ctx.cache["shadow_clf"] = _fit(f_in, f_out, ctx.seed)
    clf = ctx.cache["shadow_clf"]
    out = []
    for which in ("members", "nonmembers"):
        out.append(clf.predict_proba(output_features(ctx.logits(role, which)[0], ctx.labels(which), ctx.data.num_classes))[:, 1])
    return out[0], out[1]


def gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, device: torch.device, augs=None, chunk: int = 256) -> np.ndarray:
    """Per sample, log of the L2 norm of the loss gradient for each parameter tensor, the norms
    averaged over ``augs`` (query augmentations) first. Returns (N, number of parameter tensors)."""
    from torch.func import functional_call, grad, vmap

    model = model.to(device).eval()
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b for name, b in model.named_buffers()}

    def loss(p, xi, yi):
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return nn.functional.cross_entropy(out, yi.unsqueeze(0))

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    augs = augs or [lambda v: v]
    total = np.zeros((len(x), len(params)))
    for aug in augs:
        xa = aug(x)
        for start in range(0, len(x), chunk):
            xb, yb = xa[start : start + chunk].to(device), y[start : start + chunk].to(device)
            grads = per_sample(params, xb, yb)
            norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads.values()], dim=1)
            total[start : start + chunk] += norms.double().cpu().numpy()
    model.cpu()
    return np.log(total / len(augs) + 1e-12)


@register_attack(
    "gradient_norm",
    summary="White-box gradient attack (after GSA, Pang et al.): per-layer gradient norms, classifier trained on reference models",
    higher_means="score = the classifier's probability of 'member' from the log gradient norm of each parameter tensor",
    knowledge="white-box: the model's weights; data and recipe for reference models",
    reference_models=True,
)
def gradient_norm_attack(ctx: AttackContext, role: str):
    augs = augmentations(ctx.data.spec.name, ctx.data.in_shape)
    if "gradient_clf" not in ctx.cache:
        refs = ctx.references()
        pop_x, pop_y = refs.population(ctx.data)
        f_in, f_out = [], []
        for k, (ins, outs) in enumerate(_training_rows(ctx)):
            model = refs.model(k)
            both = torch.from_numpy(np.r_[ins, outs])
            feats = gradient_norms(model, pop_x[both], pop_y[both], device=ctx.device, augs=augs)
            f_in.append(feats[: len(ins)])
            f_out.append(feats[len(ins) :])
        ctx.cache["gradient_clf"] = _fit(f_in, f_out, ctx.seed)
    clf = ctx.cache["gradient_clf"]
    out = []
    for which in ("members", "nonmembers"):
        x, y = ctx.member_data() if which == "members" else ctx.nonmember_data()
        out.append(clf.predict_proba(gradient_norms(ctx.models[role], x, y, device=ctx.device, augs=augs))[:, 1])
    return out[0], out[1]
