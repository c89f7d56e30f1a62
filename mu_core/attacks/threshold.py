"""Attacks on one model's outputs: the threshold family, SalUn's SVC, and deletion inference.

Per-class thresholds (``modified_entropy``) and the SVC are fitted on *calibration* data the
auditor knows the status of: retain samples (members) and held-out samples that are not among
the audit's non-members (so nothing the ROC is computed on is used for fitting).
"""

from __future__ import annotations

import numpy as np
import torch

from . import AttackContext, AttackNotApplicable, register_attack
from .features import fit_confidence_svc, lira_phi, modified_entropy, probabilities, true_log_prob

#: The most calibration samples per side.
CALIBRATION_PER_SIDE = 2000
#: The fewest calibration samples per side the SVC is trained on.
MIN_SVC = 20
#: Classes with fewer calibration samples than this on a side fall back to the global threshold.
MIN_PER_CLASS = 5


def calibration_data(ctx: AttackContext) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(members, non-members) for fitting: retain samples, and held-out pool samples that are not audit non-members."""
    if "calibration" not in ctx.cache:
        rng = np.random.default_rng(ctx.seed + 17)
        record = ctx.original_record
        retain = np.setdiff1d(record.train_indices, ctx.member_idx)
        spare = np.setdiff1d(ctx.pool_idx, ctx.nonmember_idx)
        retain = np.sort(rng.choice(retain, size=min(len(retain), CALIBRATION_PER_SIDE), replace=False))
        spare = np.sort(rng.choice(spare, size=min(len(spare), CALIBRATION_PER_SIDE), replace=False))
        r, s = torch.from_numpy(retain), torch.from_numpy(spare)
        ctx.cache["calibration"] = ((ctx.data.x_train[r], ctx.data.y_train[r]), (ctx.data.x_test[s], ctx.data.y_test[s]))
    return ctx.cache["calibration"]


def calibration_logits(ctx: AttackContext, role: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's logits on the calibration members and non-members (computed once per role)."""
    key = ("calibration_logits", role)
    if key not in ctx.cache:
        from .features import logits_under

        (cx, _), (hx, _) = calibration_data(ctx)
        identity = [lambda x: x]
        model = ctx.models[role]
        ctx.cache[key] = (logits_under(model, cx, identity, device=ctx.device)[0], logits_under(model, hx, identity, device=ctx.device)[0])
    return ctx.cache[key]


def _per_sample(ctx: AttackContext, role: str, fn) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for which in ("members", "nonmembers"):
        logits = ctx.logits(role, which)[0]
        out.append(np.asarray(fn(logits, ctx.labels(which)), dtype=np.float64))
    return out[0], out[1]


@register_attack(
    "loss",
    summary="LOSS attack (Yeom et al. 2018): members have lower loss; one global threshold",
    higher_means="score = log p_y = -cross-entropy; higher (lower loss) = more member-like",
    knowledge="black-box: the model's output probabilities and the true label",
)
def loss_attack(ctx: AttackContext, role: str):
    return _per_sample(ctx, role, true_log_prob)


@register_attack(
    "confidence",
    summary="Confidence attack: the probability of the true class",
    higher_means="score = p_y; higher = more member-like",
    knowledge="black-box: the model's output probabilities and the true label",
)
def confidence_attack(ctx: AttackContext, role: str):
    return _per_sample(ctx, role, lambda logits, y: np.exp(true_log_prob(logits, y)))


@register_attack(
    "entropy",
    summary="Entropy attack: members get more confident (lower-entropy) predictions; labels not needed",
    higher_means="score = sum_i p_i log p_i = -entropy; higher = more member-like",
    knowledge="black-box: the model's output probabilities only",
)
def entropy_attack(ctx: AttackContext, role: str):
    def neg_entropy(logits, _y):
        logp = torch.log_softmax(logits.double(), dim=-1)
        return (logp.exp() * logp).sum(-1).numpy()

    return _per_sample(ctx, role, neg_entropy)


def mentr_scores(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return -modified_entropy(probabilities(logits), y.numpy())


def best_threshold(members: np.ndarray, nonmembers: np.ndarray) -> float:
    """The threshold t maximising (TPR + TNR) / 2 of "member if score >= t"."""
    values = np.unique(np.r_[members, nonmembers])
    m, n = np.sort(members), np.sort(nonmembers)
    tpr = 1.0 - np.searchsorted(m, values, side="left") / m.size
    tnr = np.searchsorted(n, values, side="left") / n.size
    return float(values[int(np.argmax(tpr + tnr))])


@register_attack(
    "modified_entropy",
    summary="Modified entropy (Song & Mittal 2021) with per-class thresholds fitted on calibration data",
    higher_means="score = -Mentr - t_class (t fitted per class to maximise (TPR + TNR) / 2); higher = more member-like",
    knowledge="black-box: probabilities and the true label; some samples of known status (retain and held-out) to fit thresholds",
)
def modified_entropy_attack(ctx: AttackContext, role: str):
    """Song & Mittal use shadow models to set the per-class thresholds; here they are fitted on
    the audited model itself with calibration data of known status (no shadow training), which
    is the stronger, auditor-side variant. Classes short of calibration samples use the global one."""
    (_, cy), (_, hy) = calibration_data(ctx)
    logits_in, logits_out = calibration_logits(ctx, role)
    cal_in, cal_out = mentr_scores(logits_in, cy), mentr_scores(logits_out, hy)
    global_t = best_threshold(cal_in, cal_out) if cal_out.size else 0.0
    thresholds = np.full(ctx.data.num_classes, global_t)
    for c in range(ctx.data.num_classes):
        a, b = cal_in[cy.numpy() == c], cal_out[hy.numpy() == c]
        if a.size >= MIN_PER_CLASS and b.size >= MIN_PER_CLASS:
            thresholds[c] = best_threshold(a, b)
    return _per_sample(ctx, role, lambda logits, y: mentr_scores(logits, y) - thresholds[y.numpy()])


@register_attack(
    "correctness",
    summary="Correctness attack: members are classified correctly",
    higher_means="score = 1 if the prediction is right, else 0",
    knowledge="black-box: the predicted label and the true label",
)
def correctness_attack(ctx: AttackContext, role: str):
    return _per_sample(ctx, role, lambda logits, y: (logits.argmax(-1) == y).double().numpy())


@register_attack(
    "svc_efficacy",
    summary="SalUn's MIA-efficacy SVC (RBF on true-class confidence) trained on retain vs held-out samples",
    higher_means="score = the SVC's decision value (member side positive); 'efficacy' = share of the forget set it calls non-members",
    knowledge="black-box: probabilities and the true label; samples of known status to train the SVC",
)
def svc_attack(ctx: AttackContext, role: str):
    (_, cy), (_, hy) = calibration_data(ctx)
    logits_in, logits_out = calibration_logits(ctx, role)
    n = min(len(cy), len(hy))
    if n < MIN_SVC:
        raise AttackNotApplicable(f"only {n} held-out samples are left besides the audit's non-members; the SVC needs {MIN_SVC}")
    rng = np.random.default_rng(ctx.seed)
    a, b = rng.choice(len(cy), n, replace=False), rng.choice(len(hy), n, replace=False)
    features_in = np.exp(true_log_prob(logits_in, cy))[a]
    features_out = np.exp(true_log_prob(logits_out, hy))[b]
    svc = fit_confidence_svc(features_in, features_out)
    members, nonmembers = _per_sample(ctx, role, lambda logits, y: svc.decision_function(np.exp(true_log_prob(logits, y))[:, None]))
    return members, nonmembers, {"efficacy": float(np.mean(members < 0)), "svc_samples_per_side": int(n)}


@register_attack(
    "deletion_inference",
    summary="Deletion inference (Chen et al. 2021, simplified): which samples lost the most confidence between the original and this model",
    higher_means="score = phi_original - phi_model (LiRA's logit of p_y); higher = more likely deleted",
    knowledge="black-box: both models' outputs (before and after unlearning) and the true label",
    verdict=False,
)
def deletion_inference_attack(ctx: AttackContext, role: str):
    """Not part of the verdict: it measures whether the *deletion* is visible, which it is even
    for perfect retraining (the forget set loses the confidence the original had). Compare the
    unlearned model's AUC with the retrained one's. Not defined for the original itself."""
    if role == "original":
        return None
    before = _per_sample(ctx, "original", lira_phi)
    after = _per_sample(ctx, role, lira_phi)
    return before[0] - after[0], before[1] - after[1]
