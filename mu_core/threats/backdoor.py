"""Backdoors as a deletion check (``backdoor_verify``) and as a threat unlearning removes
(``backdoor_removal``).

``backdoor_verify``: Sommer, Song, Mittal, Raphael, Sommer, *Athena: Probabilistic Verification of
Machine Unlearning* (PoPETs 2022). A data owner marks a share of their samples with a trigger and
a target label before training. After the provider claims to have deleted the owner's data, the
owner sends ``queries`` triggered samples: a model still trained on the marked samples answers
the target label with probability p, one without them with q. The binomial test confirms deletion
when at most ``tau`` queries hit the target, with ``tau`` minimising the larger of the two error
rates: false positive (deletion confirmed though the data stayed, P[Bin(n, p) <= tau]) and false
negative (deletion refused though it happened, P[Bin(n, q) > tau]). p and q are estimated on
calibration queries disjoint from the verification queries: p on the model trained with the
marked samples, q on a reference model trained without the owner's data (the recipe, next seed).
Deviations: one data owner holding ``owner_share`` of the training set (Athena: many users, 5%
of them participating), a white-square trigger, small models.

``backdoor_removal``: the attacker's poisoned samples (trigger + target label) are the forget
set; the backdoor's success rate before and after each method, retraining as the yardstick
(unlearning as a defense, as the survey ``001`` discusses).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from .._types import report, sub_progress
from ..errors import AuditInputError
from . import Threat, register_threat
from ._common import (
    NO_UNLEARNING,
    add_trigger,
    job_data,
    parse_methods,
    provider_sweep,
    provider_unlearn,
    shared_data,
    train_like,
)

__all__ = ["BackdoorRemoval", "BackdoorVerify", "Verifier", "backdoor_provider_job", "poison", "provider_hits", "triggered_queries"]


def poison(data, idx: np.ndarray, target: int):
    """A copy of ``data`` whose training samples ``idx`` carry the trigger and the ``target`` label."""
    x, y = data.x_train.clone(), data.y_train.clone()
    sel = torch.from_numpy(np.asarray(idx, dtype=np.int64))
    x[sel] = add_trigger(x[sel])
    y[sel] = target
    return replace(data, x_train=x, y_train=y)


def triggered_queries(data, target: int) -> tuple[torch.Tensor, np.ndarray]:
    """Test samples of every class but ``target`` with the trigger, and their test indices."""
    idx = np.flatnonzero(data.y_test.numpy() != target)
    return add_trigger(data.x_test[torch.from_numpy(idx)]), idx


def hits_target(model, x: torch.Tensor, target: int, device) -> np.ndarray:
    """Per query, whether ``model`` answers the ``target`` label."""
    from ..train import predict_logits

    return predict_logits(model, x, device=device).argmax(1).numpy() == target


def _check_target(data, target: int) -> int:
    if not 0 <= target < data.num_classes:
        raise AuditInputError(f"target_label must be a class index from 0 to {data.num_classes - 1}.")
    return target


@dataclass(frozen=True)
class Verifier:
    """Athena's binomial test for ``queries`` triggered queries with hit rates ``p`` (data kept)
    and ``q`` (data deleted): deletion is confirmed when at most ``tau`` queries hit the target."""

    queries: int
    p: float
    q: float
    tau: int
    false_positive: float
    false_negative: float

    @classmethod
    def fit(cls, queries: int, p: float, q: float) -> Verifier:
        from scipy.stats import binom

        taus = np.arange(queries + 1)
        fp, fn = binom.cdf(taus, queries, p), binom.sf(taus, queries, q)
        best = int(np.argmin(np.maximum(fp, fn)))
        return cls(queries, float(p), float(q), best, float(fp[best]), float(fn[best]))

    def decide(self, hits: int) -> tuple[bool, float]:
        """``(deletion_confirmed, confidence)``: confidence is one minus the chance of so few hits
        were the data kept (confirmed), or of so many were it deleted (refused)."""
        from scipy.stats import binom

        if hits <= self.tau:
            return True, float(1 - binom.cdf(hits, self.queries, self.p))
        return False, float(1 - binom.sf(hits - 1, self.queries, self.q))


def marked_model(model, record, data, params: dict[str, Any], *, device, progress):
    """The owner's samples, the marked ones, the poisoned data, the model trained on it with the
    record's recipe, and the verifier calibrated on it and on a reference trained without them."""
    from ..train import accuracy

    seed, target = int(params["seed"]), _check_target(data, int(params["target_label"]))
    share, mark_share = float(params["owner_share"]), float(params["mark_share"])
    if not 0 < share < 0.5 or not 0 < mark_share <= 1:
        raise AuditInputError("owner_share must be in (0, 0.5) and mark_share in (0, 1].")
    n_queries = int(params["queries"])
    queries, _ = triggered_queries(data, target)
    if not 1 <= n_queries <= len(queries) // 2:
        raise AuditInputError(f"queries must be between 1 and {len(queries) // 2} (half the triggered test samples).")
    rng = np.random.default_rng(seed)
    owner = np.sort(rng.choice(record.train_indices, size=max(2, round(share * len(record.train_indices))), replace=False))
    candidates = owner[data.y_train.numpy()[owner] != target]
    marked = np.sort(rng.permutation(candidates)[: max(1, round(mark_share * len(owner)))])
    poisoned = poison(data, marked, target)
    report(progress, 0.0, "Training with the owner's marked samples")
    trained, trained_record = train_like(record, poisoned, record.train_indices, device=device, progress=sub_progress(progress, 0.0, 0.3))
    report(progress, 0.3, "Training a reference without the owner's samples")
    reference, _ = train_like(record, poisoned, np.setdiff1d(record.train_indices, owner), seed=int(trained_record.recipe.get("seed", 0)) + 1,
                              device=device, progress=sub_progress(progress, 0.3, 0.5))
    order = rng.permutation(len(queries))
    calibration, verification = queries[torch.from_numpy(order[: len(order) // 2])], queries[torch.from_numpy(order[len(order) // 2 :])]
    floor = 0.5 / len(calibration)
    p = float(np.clip(hits_target(trained, calibration, target, device).mean(), floor, 1 - floor))
    q = float(np.clip(hits_target(reference, calibration, target, device).mean(), floor, 1 - floor))
    verifier = Verifier.fit(n_queries, p, q)
    test_acc = accuracy(trained, data.x_test, data.y_test, device=device)
    return owner, marked, poisoned, trained, trained_record, verifier, verification, test_acc


def verify(model, verifier: Verifier, verification: torch.Tensor, target: int, rng: np.random.Generator, device) -> dict:
    """Athena's check of ``model`` on ``verifier.queries`` queries drawn from ``verification``."""
    return verify_hits(hits_target(model, verification, target, device), verifier, rng)


def verify_hits(hits_all: np.ndarray, verifier: Verifier, rng: np.random.Generator) -> dict:
    """Athena's check on ``verifier.queries`` queries drawn from the verification queries whose hits
    (whether the model answers the target label) are ``hits_all``."""
    drawn = rng.choice(len(hits_all), size=verifier.queries, replace=False)
    hits = int(hits_all[drawn].sum())
    confirmed, confidence = verifier.decide(hits)
    return {"hits": hits, "queries": verifier.queries, "backdoor_success": float(hits_all.mean()), "deletion_confirmed": confirmed,
            "confidence": confidence}


def backdoor_provider_job(job: dict, shared, ctx) -> dict:
    """One provider of a backdoor threat as an :func:`~mu_core.executor.run_jobs` job: the model trained
    on the poisoned data (``shared["model"]``) unlearns ``job["request"]`` with ``job["method"]``
    (``none``: not at all); returns, per query in ``shared["queries"]``, whether it hits the target
    label (``hits``), and the test accuracy."""
    from ..executor import unpack_model
    from ..train import accuracy

    model, record = unpack_model(shared["model"])
    data, device = job_data(job, shared), torch.device(ctx.device)
    unlearned = provider_unlearn(model, record, data, np.asarray(job["request"], dtype=np.int64), job["method"], device=device,
                                 seed=int(job["seed"]))
    return {"hits": hits_target(unlearned, shared["queries"], int(job["target"]), device),
            "test_acc": accuracy(unlearned, data.x_test, data.y_test, device=device)}


def provider_hits(trained, trained_record, poisoned, request: np.ndarray, methods: list[str], queries: torch.Tensor, target: int, seed: int,
                  *, device, progress) -> list[dict]:
    """:func:`backdoor_provider_job` for each method, through the executor in force; ``hits`` as booleans."""
    from ..executor import pack_model

    shared = {"model": pack_model(trained, trained_record), "queries": queries, **shared_data(poisoned)}
    jobs = [{"method": method, "request": request.tolist(), "seed": seed, "target": target} for method in methods]
    outcomes = provider_sweep(backdoor_provider_job, jobs, poisoned, shared, device=device, progress=progress, label="Provider")
    return [{**outcome, "hits": outcome["hits"].numpy()} for outcome in outcomes]


@register_threat
class BackdoorVerify(Threat):
    name = "backdoor_verify"
    paper = "Sommer et al., Athena: Probabilistic Verification of Machine Unlearning, PoPETs 2022"
    summary = "a data owner backdoors some samples before training and checks deletion with triggered queries and a binomial test"
    defaults = {"methods": "retrain,finetune,neggrad", "owner_share": 0.05, "mark_share": 0.5, "target_label": 0, "queries": 30, "seed": 0}
    help = {
        "methods": "methods of honest providers (the dishonest one, 'none', is always added)",
        "owner_share": "share of the training set that belongs to the data owner",
        "mark_share": "share of the owner's samples marked with the trigger and the target label",
        "target_label": "the backdoor's target class",
        "queries": "triggered queries per verification",
    }

    def run(self, model, record, data, params: dict[str, Any], *, device, progress) -> tuple[dict, str, dict]:

        methods = [*(m for m in parse_methods(params["methods"], allow_none=True) if m != NO_UNLEARNING), NO_UNLEARNING]
        target = int(params["target_label"])
        owner, marked, poisoned, trained, trained_record, verifier, verification, test_acc = marked_model(
            model, record, data, params, device=device, progress=progress)
        rng = np.random.default_rng(int(params["seed"]) + 3)
        report(progress, 0.5, f"Providers: {', '.join(methods)}")
        outcomes = provider_hits(trained, trained_record, poisoned, owner, methods, verification, target, int(params["seed"]), device=device,
                                 progress=sub_progress(progress, 0.5, 1.0))
        providers = {method: {"honest": method != NO_UNLEARNING, **verify_hits(outcome["hits"], verifier, rng), "test_acc": outcome["test_acc"]}
                     for method, outcome in zip(methods, outcomes, strict=True)}
        numbers = {
            "owner_samples": len(owner), "marked_samples": len(marked), "test_acc_marked_model": test_acc,
            "p": verifier.p, "q": verifier.q, "tau": verifier.tau, "queries": verifier.queries,
            "false_positive_rate": verifier.false_positive, "false_negative_rate": verifier.false_negative, "providers": providers,
        }
        works = verifier.p > verifier.q
        lines = [f"{m} ({'honest' if v['honest'] else 'dishonest: no unlearning'}): {v['hits']}/{v['queries']} queries hit the target, "
                 f"deletion {'confirmed' if v['deletion_confirmed'] else 'refused'} (confidence {v['confidence']:.3f})" for m, v in providers.items()]
        honest_ok = all(v["deletion_confirmed"] for m, v in providers.items() if m == "retrain") if "retrain" in providers else None
        caught = not providers[NO_UNLEARNING]["deletion_confirmed"]
        refused = [m for m, v in providers.items() if v["honest"] and not v["deletion_confirmed"]]
        summary = (f"The owner marked {len(marked)} of their {len(owner)} samples; the backdoor hits the target on {verifier.p:.0%} of "
                   f"triggered queries while the data is in the model and {verifier.q:.0%} without it. With {verifier.queries} queries "
                   f"deletion is confirmed at <= {verifier.tau} hits: false positive rate {verifier.false_positive:.1e}, false negative "
                   f"rate {verifier.false_negative:.1e}. ")
        if not works:
            conclusion = summary + "The backdoor did not take (p <= q), so this check cannot tell deletion apart: mark more samples."
        else:
            conclusion = (summary + "; ".join(lines) + ". "
                          + ("The provider who did not unlearn is caught. " if caught else "The provider who did not unlearn passed: the check failed. ")
                          + ("" if honest_ok is None else ("Retraining is confirmed. " if honest_ok else "Retraining was not confirmed. "))
                          + (f"Refused although honest: {', '.join(refused)}: the method left the marked samples' backdoor in the "
                             "model, so their influence survived the claimed deletion." if refused else ""))
        return numbers, conclusion, {}


@register_threat
class BackdoorRemoval(Threat):
    name = "backdoor_removal"
    paper = "Unlearning as a backdoor defense (survey of threats, attacks and defenses, seed 001); BadNets-style trigger"
    summary = "poisoned samples as the forget set: the backdoor's success before and after each method, against retraining"
    defaults = {"methods": "retrain,finetune,neggrad,neggrad_plus", "poison_share": 0.03, "target_label": 0, "seed": 0}
    help = {
        "methods": "unlearning methods (comma-separated; retrain is the yardstick)",
        "poison_share": "share of the training set the attacker poisoned (trigger + target label)",
        "target_label": "the backdoor's target class",
    }

    def run(self, model, record, data, params: dict[str, Any], *, device, progress) -> tuple[dict, str, dict]:
        from ..train import accuracy

        methods = parse_methods(params["methods"])
        seed, target = int(params["seed"]), _check_target(data, int(params["target_label"]))
        share = float(params["poison_share"])
        if not 0 < share < 0.5:
            raise AuditInputError("poison_share must be in (0, 0.5), e.g. 0.03.")
        rng = np.random.default_rng(seed)
        candidates = record.train_indices[data.y_train.numpy()[record.train_indices] != target]
        poisoned_idx = np.sort(rng.choice(candidates, size=max(1, round(share * len(record.train_indices))), replace=False))
        poisoned = poison(data, poisoned_idx, target)
        queries, _ = triggered_queries(data, target)
        report(progress, 0.0, "Training on the poisoned data")
        trained, trained_record = train_like(record, poisoned, record.train_indices, device=device, progress=sub_progress(progress, 0.0, 0.3))
        before = {"attack_success": float(hits_target(trained, queries, target, device).mean()),
                  "test_acc": accuracy(trained, data.x_test, data.y_test, device=device)}
        report(progress, 0.3, f"Unlearning the poisoned samples: {', '.join(methods)}")
        outcomes = provider_hits(trained, trained_record, poisoned, poisoned_idx, methods, queries, target, seed, device=device,
                                 progress=sub_progress(progress, 0.3, 1.0))
        after = {method: {"attack_success": float(outcome["hits"].mean()), "test_acc": outcome["test_acc"]}
                 for method, outcome in zip(methods, outcomes, strict=True)}
        numbers = {"poisoned_samples": len(poisoned_idx), "before": before, "methods": after}
        parts = [f"{m} {v['attack_success']:.0%} (test accuracy {v['test_acc']:.1%})" for m, v in after.items()]
        yardstick = after.get("retrain")
        removed = [m for m, v in after.items() if m != "retrain" and yardstick and v["attack_success"] <= yardstick["attack_success"] + 0.05]
        conclusion = (f"{len(poisoned_idx)} poisoned samples make the backdoor hit the target on {before['attack_success']:.0%} of triggered test "
                      f"samples (test accuracy {before['test_acc']:.1%}). After unlearning them: " + "; ".join(parts) + ". "
                      + (f"Within 5 points of retraining: {', '.join(removed) or 'no approximate method'}." if yardstick else
                         "Add retrain to the methods to compare with the yardstick."))
        return numbers, conclusion, {}
