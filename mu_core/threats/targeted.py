"""``targeted_request``: malicious unlearning requests that make a chosen sample misclassified.

Qian, Xu, Ma, Song, Wang, *Towards Understanding and Enhancing Robustness of Deep Learning Models
against Malicious Unlearning Attacks* (KDD 2023; the seed paper ``000``). An attacker who
contributed some training samples asks to unlearn the few of them whose removal most raises a
chosen target's loss, so that the target is misclassified afterwards.

Selection: gradient alignment with the target's loss, ``grad L(z)·grad L(target)`` over all
parameters (the first-order change of the target's loss when ``z`` is unlearned by gradient
ascent; influence functions with the identity for the Hessian). Deviations: the identity Hessian
instead of the paper's influence-function approximation, and fewer targets (20 by default) on
small models; targets are test samples the model classifies correctly, drawn at random.
Success is compared with random requests of the same size from the same attacker's samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._types import report, sub_progress
from . import Threat, register_threat
from ._common import directional_losses, job_data, loss_gradient, parse_methods, provider_sweep, provider_unlearn, shared_data

__all__ = ["TargetedRequest", "attacker_pool", "select_request", "targeted_run_job"]


def attacker_pool(train_indices: np.ndarray, share: float, seed: int) -> np.ndarray:
    """The training samples the attacker contributed: a seeded random ``share`` of them."""
    from ..errors import AuditInputError

    if not 0 < share < 1:
        raise AuditInputError("attacker_share must be between 0 and 1, e.g. 0.2.")
    rng = np.random.default_rng(seed)
    size = max(1, round(share * len(train_indices)))
    return np.sort(rng.choice(train_indices, size=size, replace=False))


def select_request(model, data, pool: np.ndarray, target_x: torch.Tensor, target_y: torch.Tensor, budget: int, device) -> np.ndarray:
    """The ``budget`` samples of ``pool`` whose loss gradient aligns best with the target's."""
    direction = loss_gradient(model, target_x[None], target_y.reshape(1), device)
    idx = torch.from_numpy(pool)
    alignment = directional_losses(model, data.x_train[idx], data.y_train[idx], direction, device)
    return np.sort(pool[np.argsort(-alignment, kind="stable")[:budget]])


def targeted_run_job(job: dict, shared, ctx) -> dict:
    """One provider run of :class:`TargetedRequest` as an :func:`~mu_core.executor.run_jobs` job: the
    model in ``shared["model"]`` unlearns ``job["request"]`` with ``job["method"]``; returns whether
    test sample ``job["target"]`` is then misclassified, and the test accuracy."""
    from ..executor import unpack_model
    from ..train import accuracy, predict_logits

    model, record = unpack_model(shared["model"])
    data, device, target = job_data(job, shared), torch.device(ctx.device), int(job["target"])
    unlearned = provider_unlearn(model, record, data, np.asarray(job["request"], dtype=np.int64), job["method"], device=device,
                                 seed=int(job["seed"]), max_retain_drop=float(job["max_retain_drop"]))
    prediction = int(predict_logits(unlearned, data.x_test[target][None], device=device).argmax(1))
    return {"misclassified": prediction != int(data.y_test[target]), "test_acc": accuracy(unlearned, data.x_test, data.y_test, device=device)}


@register_threat
class TargetedRequest(Threat):
    name = "targeted_request"
    paper = "Qian et al., Towards Understanding and Enhancing Robustness of Deep Learning Models against Malicious Unlearning Attacks, KDD 2023"
    summary = "the attacker asks to unlearn its own samples chosen so that a target sample is misclassified afterwards"
    defaults = {"methods": "neggrad,neggrad_plus", "targets": 20, "budget": 10, "attacker_share": 0.2, "max_retain_drop": 0.1, "seed": 0}
    help = {
        "methods": "unlearning methods the provider runs (comma-separated)",
        "targets": "target samples (correctly classified test samples, drawn at random)",
        "budget": "samples per unlearning request",
        "attacker_share": "share of the training set the attacker contributed",
        "max_retain_drop": "the providers' collapse guard, for methods that have one (1 disables it)",
    }

    def run(self, model, record, data, params: dict[str, Any], *, device, progress) -> tuple[dict, str, dict]:
        from ..errors import AuditInputError
        from ..executor import pack_model
        from ..train import accuracy, predict_logits

        methods = parse_methods(params["methods"])
        seed, budget = int(params["seed"]), int(params["budget"])
        pool = attacker_pool(record.train_indices, float(params["attacker_share"]), seed)
        if not 1 <= budget < len(pool):
            raise AuditInputError(f"budget must be between 1 and {len(pool) - 1}, the attacker's samples minus one.")
        rng = np.random.default_rng(seed + 1)
        correct = np.flatnonzero(predict_logits(model, data.x_test, device=device).argmax(1).numpy() == data.y_test.numpy())
        n_targets = min(int(params["targets"]), correct.size)
        if n_targets < 1:
            raise AuditInputError("targets must be at least 1 (and the model must classify some test samples correctly).")
        targets = np.sort(rng.choice(correct, size=n_targets, replace=False))
        requests = {"malicious": [], "random": []}
        for i, t in enumerate(targets):
            report(progress, 0.2 * i / n_targets, f"Target {i + 1}/{n_targets}: choosing the malicious request")
            requests["malicious"].append(select_request(model, data, pool, data.x_test[int(t)], data.y_test[int(t)], budget, device))
            requests["random"].append(np.sort(rng.choice(pool, size=budget, replace=False)))
        guard = float(params["max_retain_drop"])
        jobs = [{"target": int(t), "method": method, "kind": kind, "request": requests[kind][i].tolist(), "seed": seed, "max_retain_drop": guard}
                for i, t in enumerate(targets) for method in methods for kind in ("malicious", "random")]
        outcomes = iter(provider_sweep(targeted_run_job, jobs, data, {"model": pack_model(model, record), **shared_data(data)}, device=device,
                                       progress=sub_progress(progress, 0.2, 1.0), label="Unlearning request"))
        rows = []
        for t in targets:
            for method in methods:
                row = {"target": int(t), "label": int(data.y_test[int(t)]), "method": method}
                for kind in ("malicious", "random"):
                    outcome = next(outcomes)
                    row[f"{kind}_misclassified"] = outcome["misclassified"]
                    row[f"{kind}_test_acc"] = outcome["test_acc"]
                rows.append(row)
        per_method = {}
        for method in methods:
            mine = [r for r in rows if r["method"] == method]
            per_method[method] = {
                "success_rate": float(np.mean([r["malicious_misclassified"] for r in mine])),
                "random_success_rate": float(np.mean([r["random_misclassified"] for r in mine])),
                "test_acc_after": float(np.mean([r["malicious_test_acc"] for r in mine])),
                "random_test_acc_after": float(np.mean([r["random_test_acc"] for r in mine])),
            }
        numbers = {
            "test_acc_before": accuracy(model, data.x_test, data.y_test, device=device),
            "attacker_samples": len(pool),
            "methods": per_method,
            "targets": rows,
        }
        parts = [f"{m}: {v['success_rate']:.0%} of targets misclassified (random requests of the same size: {v['random_success_rate']:.0%}, "
                 f"test accuracy after {v['test_acc_after']:.1%})" for m, v in per_method.items()]
        best = max(per_method.items(), key=lambda kv: kv[1]["success_rate"] - kv[1]["random_success_rate"])
        verdict = ("The attack works" if best[1]["success_rate"] > best[1]["random_success_rate"] else "The attack does no better than chance")
        conclusion = (f"{verdict}: an attacker holding {len(pool)} training samples asked to unlearn {budget} of them per target. "
                      + "; ".join(parts) + ". Every request is a legitimate deletion of the attacker's own training samples; only "
                      "their choice, by gradient alignment with the target's loss, steers what the provider's unlearning breaks.")
        return numbers, conclusion, {"requests": {k: np.array(v) for k, v in requests.items()}, "targets": targets}
