"""``accuracy_burn``: unlearning requests for samples never trained on, crafted to destroy accuracy.

Huang, Pang, Mao et al., *Unlearn and Burn: Adversarial Machine Unlearning Requests Destroy Model
Accuracy* (2024). The attacker submits perturbed copies of training samples (within an L-inf
ball of ``epsilon``) as if they were training samples; a provider that does not check the
content runs its approximate unlearning on them. The perturbation maximises the alignment of the
copies' loss gradient with the gradient of the loss on clean data the attacker holds, so that
gradient-ascent-type unlearning on the copies raises the loss everywhere (projected signed
gradient steps through a second-order gradient, all parameters).

Deviations: a first-order surrogate of one unlearning step (the paper also unrolls the
unlearning steps), smaller models and fewer requests. The providers' methods keep their collapse
guards (``max_retain_drop``), which bound the damage; the numbers say how far it still goes.
Screening (:func:`mu_core.threats.screen.screen_request`) compares each submitted sample with
the training sample at its index and rejects the copies.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .._types import report, sub_progress
from . import Threat, register_threat
from ._common import job_data, loss_gradient, parse_methods, provider_sweep, provider_unlearn, shared_data, with_samples

__all__ = ["AccuracyBurn", "burn_run_job", "craft_burn"]


def craft_burn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, ref_x: torch.Tensor, ref_y: torch.Tensor, *, epsilon: float,
               steps: int) -> torch.Tensor:
    """Perturbed copies of ``(x, y)`` (L-inf ``epsilon``, pixels kept in [0, 1]) whose summed loss
    gradient aligns with the gradient of the loss on ``(ref_x, ref_y)``; computed on the model's
    device."""
    device = next(model.parameters()).device
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    target = loss_gradient(model, ref_x, ref_y, device)
    target_list = [target[n] for n in names]
    x, y = x.to(device), y.to(device)
    delta = torch.zeros_like(x)
    step = 2.5 * epsilon / max(steps, 1)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = nn.functional.cross_entropy(model((x + delta).clamp(0, 1)), y, reduction="sum")
        grads = torch.autograd.grad(loss, params, create_graph=True)
        alignment = sum((g * t).sum() for g, t in zip(grads, target_list, strict=True))
        (direction,) = torch.autograd.grad(alignment, delta)
        delta = (delta.detach() + step * direction.sign()).clamp(-epsilon, epsilon)
    return (x + delta).clamp(0, 1).detach().cpu()


def burn_run_job(job: dict, shared, ctx) -> dict:
    """One provider run of :class:`AccuracyBurn` as an :func:`~mu_core.executor.run_jobs` job, for trial
    ``t = job["trial"]`` and ``job["method"]``: ``kind`` ``burnt`` unlearns the crafted copies
    (``shared["crafted.<t>"]``, labels ``shared["labels.<t>"]``) accepted as training samples, ``plain`` the
    untouched samples ``job["request"]`` (both return ``test_acc``), ``screen`` screens the crafted request
    (returns its ``decision``)."""
    from ..executor import unpack_model
    from ..train import accuracy
    from .screen import screen_request

    model, record = unpack_model(shared["model"])
    data, device, kind = job_data(job, shared), torch.device(ctx.device), job["kind"]
    request_idx = np.asarray(job["request"], dtype=np.int64)
    crafted, labels = shared[f"crafted.{job['trial']}"], shared[f"labels.{job['trial']}"]
    seed, guard = int(job["seed"]), float(job["max_retain_drop"])
    if kind == "screen":
        screened = screen_request(model, record, request_idx, samples=(crafted, labels), method=job["method"], dataset=data, seed=seed,
                                  device=device)
        return {"decision": screened.decision}
    if kind == "burnt":
        data, record, request_idx = with_samples(data, record, crafted, labels)
    unlearned = provider_unlearn(model, record, data, request_idx, job["method"], device=device, seed=seed, max_retain_drop=guard)
    return {"test_acc": accuracy(unlearned, data.x_test, data.y_test, device=device)}


@register_threat
class AccuracyBurn(Threat):
    name = "accuracy_burn"
    paper = "Huang et al., Unlearn and Burn: Adversarial Machine Unlearning Requests Destroy Model Accuracy, 2024"
    summary = "requests for perturbed copies of training samples, crafted to destroy test accuracy under approximate unlearning"
    defaults = {"methods": "neggrad,neggrad_plus", "requests": 30, "trials": 2, "epsilon": 0.1, "steps": 20, "max_retain_drop": 0.1, "seed": 0}
    help = {
        "methods": "unlearning methods the provider runs (comma-separated)",
        "requests": "samples per request",
        "trials": "independently crafted requests (different attacker samples)",
        "epsilon": "largest change of a pixel (L-inf, pixels in [0, 1])",
        "steps": "projected gradient steps crafting the copies",
        "max_retain_drop": "the providers' collapse guard, for methods that have one (1 disables it: a naive provider)",
    }

    def run(self, model, record, data, params: dict[str, Any], *, device, progress) -> tuple[dict, str, dict]:
        from ..errors import AuditInputError
        from ..executor import pack_model
        from ..train import accuracy
        from .screen import influence_score

        methods = parse_methods(params["methods"])
        seed, n, trials = int(params["seed"]), int(params["requests"]), int(params["trials"])
        if not 1 <= n <= len(record.train_indices) // 4 or trials < 1:
            raise AuditInputError(f"requests must be between 1 and {len(record.train_indices) // 4}, and trials at least 1.")
        if not 0 < float(params["epsilon"]) <= 1 or int(params["steps"]) < 1:
            raise AuditInputError("epsilon must be in (0, 1] and steps at least 1.")
        guard = float(params["max_retain_drop"])
        before = accuracy(model, data.x_test, data.y_test, device=device)
        last_request, null = None, None
        shared = {"model": pack_model(model, record), **shared_data(data)}
        requests, scores = [], []
        for trial in range(trials):
            rng = np.random.default_rng(seed + 101 * trial)
            chosen = rng.choice(record.train_indices, size=n + min(500, len(record.train_indices) - n), replace=False)
            request_idx, ref_idx = np.sort(chosen[:n]), chosen[n:]
            rx, ry = data.x_train[torch.from_numpy(request_idx)], data.y_train[torch.from_numpy(request_idx)]
            report(progress, 0.3 * trial / trials, f"Trial {trial + 1}/{trials}: crafting {n} perturbed copies")
            crafted = craft_burn(model, rx, ry, data.x_train[torch.from_numpy(ref_idx)], data.y_train[torch.from_numpy(ref_idx)],
                                 epsilon=float(params["epsilon"]), steps=int(params["steps"]))
            last_request = {"index": request_idx, "x": crafted.numpy(), "y": ry.numpy()}
            score, _, null = influence_score(model, record, data, crafted, ry, seed=seed, device=device, null=null if trial else None)
            shared.update({f"crafted.{trial}": crafted, f"labels.{trial}": ry})
            requests.append(request_idx)
            scores.append(score)
        jobs = [{"trial": trial, "method": method, "kind": kind, "request": requests[trial].tolist(), "seed": seed, "max_retain_drop": guard}
                for trial in range(trials) for method in methods for kind in ("burnt", "plain", "screen")]
        outcomes = iter(provider_sweep(burn_run_job, jobs, data, shared, device=device, progress=sub_progress(progress, 0.3, 1.0),
                                       label="Provider run"))
        rows = []
        for trial in range(trials):
            for method in methods:
                after, plain, screened = (next(outcomes) for _ in range(3))
                rows.append({
                    "trial": trial, "method": method, "test_acc_after": after["test_acc"],
                    "benign_test_acc_after": plain["test_acc"],
                    "screen_decision": screened["decision"],
                    "test_acc_with_screening": after["test_acc"] if screened["decision"] == "accept" else before,
                    "influence_score": scores[trial],
                })
        per_method = {}
        for method in methods:
            mine = [r for r in rows if r["method"] == method]
            per_method[method] = {
                "test_acc_after": float(np.mean([r["test_acc_after"] for r in mine])),
                "benign_test_acc_after": float(np.mean([r["benign_test_acc_after"] for r in mine])),
                "test_acc_with_screening": float(np.mean([r["test_acc_with_screening"] for r in mine])),
                "rejected": sum(r["screen_decision"] == "reject" for r in mine),
                "screened": len(mine),
            }
        rejected = sum(v["rejected"] for v in per_method.values())
        numbers = {"test_acc_before": before, "methods": per_method, "rows": rows, "rejected": rejected, "screened": len(rows)}
        worst = min(per_method.items(), key=lambda kv: kv[1]["test_acc_after"])
        parts = [f"{m}: {v['test_acc_after']:.1%} after the crafted request (the same samples untouched: {v['benign_test_acc_after']:.1%})"
                 for m, v in per_method.items()]
        conclusion = (f"Test accuracy {before:.1%} before. Without screening, " + "; ".join(parts) + ". "
                      f"The worst, {worst[0]}, loses {before - worst[1]['test_acc_after']:.1%} to requests for samples that were never "
                      f"trained on. Screening rejected {rejected} of {len(rows)} crafted requests"
                      + (", every one, because their content differs from the training samples they claim to be, so with "
                         "screening the accuracy stays at its value before." if rejected == len(rows) else
                         ": some crafted requests got through, and the accuracy with screening shows what they cost."))
        return numbers, conclusion, {"request": last_request}
