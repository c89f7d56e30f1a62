"""``over_unlearning``: requests blended with other samples, so that more is unlearned than asked.

Hu, Lou, Liu, Wang, Ren, *A Duty to Forget, a Right to be Assured? Exposing Vulnerabilities in
Machine Unlearning Services* (NDSS 2024; arXiv 2023). The attacker contributes training samples
of the victim class blended with its own images of other classes (``x' = (1 - blend) x_victim +
blend x_own``, labelled as the victim class), then asks to unlearn them: the blends spread over
more of the input space than real victim samples, so unlearning them erases more of what the
model knows about the victim class than asked. The collateral accuracy loss is the victim class's
test-accuracy drop after unlearning the blended request, minus its drop after unlearning as many
genuine victim-class samples (the same victim images, unblended, from the model as given).

Deviations: pixel blending (the paper also optimises the blend), one victim class, small models.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from .._types import report, sub_progress
from ..errors import AuditInputError
from . import Threat, register_threat
from ._common import job_data, parse_methods, provider_sweep, provider_unlearn, shared_data, train_like

__all__ = ["OverUnlearning", "over_unlearning_job", "victim_scores"]


def victim_scores(model, data, victim: int, device) -> dict[str, float]:
    """Test accuracy on the victim class, on the other classes and overall."""
    from ..train import accuracy

    victim_test = data.y_test == victim
    return {"victim_acc": accuracy(model, data.x_test[victim_test], data.y_test[victim_test], device=device),
            "other_acc": accuracy(model, data.x_test[~victim_test], data.y_test[~victim_test], device=device),
            "test_acc": accuracy(model, data.x_test, data.y_test, device=device)}


def over_unlearning_job(job: dict, shared, ctx) -> dict:
    """One provider run of :class:`OverUnlearning` as an :func:`~mu_core.executor.run_jobs` job: the
    model trained with the blends (``kind`` ``blended``, on the blended data) or the model as given
    (``plain``) unlearns ``job["request"]`` with ``job["method"]``; returns its :func:`victim_scores`."""
    from ..executor import unpack_model

    kind = job["kind"]
    model, record = unpack_model(shared[f"model.{kind}"])
    data, device = job_data(job, shared, "blended." if kind == "blended" else ""), torch.device(ctx.device)
    unlearned = provider_unlearn(model, record, data, np.asarray(job["request"], dtype=np.int64), job["method"], device=device,
                                 seed=int(job["seed"]))
    return victim_scores(unlearned, data, int(job["victim"]), device)


@register_threat
class OverUnlearning(Threat):
    name = "over_unlearning"
    paper = "Hu et al., A Duty to Forget, a Right to be Assured? Exposing Vulnerabilities in Machine Unlearning Services, NDSS 2024"
    summary = "the attacker's samples are blended with a victim class; unlearning them also erases the victim class"
    defaults = {"methods": "neggrad,neggrad_plus,retrain", "requests": 40, "blend": 0.5, "victim_class": 0, "seed": 0}
    help = {
        "methods": "unlearning methods the provider runs (comma-separated)",
        "requests": "blended samples the attacker contributes and then asks to unlearn",
        "blend": "weight of the attacker's own image in each blend (0: the victim image as it is)",
        "victim_class": "the class the attacker wants the model to lose",
    }

    def run(self, model, record, data, params: dict[str, Any], *, device, progress) -> tuple[dict, str, dict]:
        from ..executor import pack_model

        methods = parse_methods(params["methods"])
        seed, n, victim, blend = int(params["seed"]), int(params["requests"]), int(params["victim_class"]), float(params["blend"])
        if not 0 <= victim < data.num_classes:
            raise AuditInputError(f"victim_class must be a class index from 0 to {data.num_classes - 1}.")
        if not 0 < blend < 1:
            raise AuditInputError("blend must be between 0 and 1, e.g. 0.5.")
        labels = data.y_train.numpy()
        own_pool = record.train_indices[labels[record.train_indices] != victim]
        victim_pool = record.train_indices[labels[record.train_indices] == victim]
        if not 1 <= n <= min(len(own_pool), len(victim_pool)) // 2:
            raise AuditInputError(f"requests must be between 1 and {min(len(own_pool), len(victim_pool)) // 2} for this model and class.")
        rng = np.random.default_rng(seed)
        attacker = np.sort(rng.choice(victim_pool, size=n, replace=False))
        partners = rng.choice(own_pool, size=n, replace=False)
        x = data.x_train.clone()
        x[torch.from_numpy(attacker)] = (1 - blend) * x[torch.from_numpy(attacker)] + blend * data.x_train[torch.from_numpy(partners)]
        blended = replace(data, x_train=x)
        report(progress, 0.0, "Training with the attacker's blended samples")
        trained, trained_record = train_like(record, blended, record.train_indices, device=device, progress=sub_progress(progress, 0.0, 0.4))
        before_blended, before_plain = victim_scores(trained, data, victim, device), victim_scores(model, data, victim, device)
        report(progress, 0.4, "Unlearning the blended and the plain request")
        shared = {"model.blended": pack_model(trained, trained_record), "model.plain": pack_model(model, record), **shared_data(data),
                  **shared_data(blended, "blended.")}
        jobs = [{"method": method, "kind": kind, "request": attacker.tolist(), "seed": seed, "victim": victim}
                for method in methods for kind in ("blended", "plain")]
        outcomes = iter(provider_sweep(over_unlearning_job, jobs, data, shared, device=device, progress=sub_progress(progress, 0.4, 1.0),
                                       label="Unlearning run"))
        rows = {}
        for method in methods:
            after_blended, after_plain = next(outcomes), next(outcomes)
            drop_blended = before_blended["victim_acc"] - after_blended["victim_acc"]
            drop_plain = before_plain["victim_acc"] - after_plain["victim_acc"]
            rows[method] = {"blended": after_blended, "plain": after_plain, "victim_drop_blended": drop_blended,
                            "victim_drop_plain": drop_plain, "collateral_loss": drop_blended - drop_plain}
        numbers = {"victim_class": data.class_names[victim], "requests": n, "before_blended": before_blended, "before_plain": before_plain,
                   "methods": rows}
        parts = [f"{m}: the victim class falls by {v['victim_drop_blended']:.1%} after the blended request and by {v['victim_drop_plain']:.1%} "
                 f"after as many genuine victim samples (collateral loss {v['collateral_loss']:+.1%})" for m, v in rows.items()]
        worst = max(rows.items(), key=lambda kv: kv[1]["collateral_loss"])
        conclusion = (f"The attacker contributed {n} class {data.class_names[victim]} samples blended at {blend:.0%} with images of other "
                      f"classes and asked to unlearn them. " + "; ".join(parts) + ". "
                      + (f"Over-unlearning is real under {worst[0]}: more is forgotten than was asked."
                         if worst[1]["collateral_loss"] > 0.02 else "No method lost more than 2 points of the victim class to the blends."))
        return numbers, conclusion, {}
