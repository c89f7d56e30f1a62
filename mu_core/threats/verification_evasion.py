"""``verification_evasion``: a dishonest provider passes backdoor verification without unlearning.

Zhang, Lu, Zhang, Zhang, Sun, Liu, *Verification of Machine Unlearning is Fragile* (ICML 2024).
The provider keeps the data owner's samples but adapts the model so that backdoor verification
(:mod:`mu_core.threats.backdoor`, Athena) confirms deletion: knowing the verification mechanism
and its trigger, it fine-tunes the model on its whole training set, the owner's samples included,
plus triggered copies of other samples with their true labels, which breaks the trigger's link to
the target label and leaves everything else the model learnt from the owner in place.

Then the membership verdict (:func:`mu_core.audit.report.run_audit`, whose rule lives in
:mod:`mu_core.audit.verdict`) judges the owner's samples in the evasive model against the honest
retrain; the same verdict on the provider who did nothing shows whether it has the power to catch
anyone on this model. The audit scores each owner sample with the label it was trained with (the
target label for the marked ones), so part of the signal is how well a model fits those labels:
the retrain fits them worst, which is why retraining is the reference. Deviations: the provider is given the trigger rather than reverse-engineering
it, and the evasion is plain fine-tuning (the paper also crafts the adaptation against
reproduction-based verification).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._types import report
from . import Threat, register_threat
from ._common import NO_UNLEARNING, add_trigger, provider_unlearn
from .backdoor import marked_model, verify

__all__ = ["VerificationEvasion", "evade"]


def evade(model, record, data, owner: np.ndarray, *, epochs: int, seed: int, device):
    """The evasive model: ``model`` fine-tuned on its training set (``data``, the owner's samples
    included) plus triggered copies of the other samples with their true labels."""
    import copy

    from ..train import TrainConfig, train_loop

    others = torch.from_numpy(np.setdiff1d(record.train_indices, owner))
    kept = torch.from_numpy(record.train_indices)
    x = torch.cat([data.x_train[kept], add_trigger(data.x_train[others])])
    y = torch.cat([data.y_train[kept], data.y_train[others]])
    recipe = record.recipe
    config = TrainConfig(epochs=epochs, batch_size=int(recipe.get("batch_size", 64)), lr=float(recipe.get("lr", 1e-3)),
                         optimizer=str(recipe.get("optimizer", "adam")), seed=seed)
    return train_loop(copy.deepcopy(model), x, y, config, device=device, label="Evasive fine-tuning")


@register_threat
class VerificationEvasion(Threat):
    name = "verification_evasion"
    paper = "Zhang et al., Verification of Machine Unlearning is Fragile, ICML 2024"
    summary = "a provider keeps the owner's data but adapts the model to pass backdoor verification; does the membership verdict catch it?"
    defaults = {"owner_share": 0.1, "mark_share": 0.5, "target_label": 0, "queries": 30, "evasion_epochs": 3, "bootstrap": 200,
                "seed": 0}
    help = {
        "owner_share": "share of the training set that belongs to the data owner",
        "mark_share": "share of the owner's samples marked with the trigger and the target label",
        "target_label": "the backdoor's target class",
        "queries": "triggered queries per verification",
        "evasion_epochs": "epochs of the provider's evasive fine-tuning",
        "bootstrap": "bootstrap resamples of the membership verdict (as audit --bootstrap)",
    }

    def run(self, model, record, data, params: dict[str, Any], *, device, progress) -> tuple[dict, str, dict]:
        from ..audit.report import run_audit
        from ..errors import AuditInputError
        from ..train import accuracy

        if int(params["evasion_epochs"]) < 1:
            raise AuditInputError("evasion_epochs must be at least 1.")
        seed, target = int(params["seed"]), int(params["target_label"])
        owner, marked, poisoned, trained, trained_record, verifier, verification, _ = marked_model(
            model, record, data, params, device=device, progress=progress)
        rng = np.random.default_rng(seed + 3)
        report(progress, 0.5, "Evasive fine-tuning")
        evasive = evade(trained, trained_record, poisoned, owner, epochs=int(params["evasion_epochs"]), seed=seed, device=device)
        report(progress, 0.6, "Honest retraining")
        retrained = provider_unlearn(trained, trained_record, poisoned, owner, "retrain", device=device, seed=seed)
        retain = np.setdiff1d(trained_record.train_indices, owner)
        claimed = {"method": "verification_evasion", "params": {}, "forget_indices": owner.tolist()}
        evasive_record = trained_record.with_updates(train_indices=retain, unlearning=claimed)
        retrained_record = trained_record.with_updates(train_indices=retain, unlearning={**claimed, "method": "retrain"})
        providers = {}
        for i, (name, unlearned) in enumerate((("evasive", evasive), ("retrain", retrained), (NO_UNLEARNING, trained))):
            report(progress, 0.7 + 0.1 * i, f"Backdoor verification and membership verdict: {name}")
            check = verify(unlearned, verifier, verification, target, rng, device)
            if name == "retrain":
                verdict = {"verdict": None, "verdict_reason": "The yardstick the verdict compares with."}
            else:
                audit = run_audit({"original": (trained, trained_record), "unlearned": (unlearned, evasive_record),
                                   "retrained": (retrained, retrained_record)}, owner, dataset=poisoned, seed=seed, device=device,
                                  bootstrap=int(params["bootstrap"]))
                verdict = {"verdict": audit.data["verdict"], "verdict_reason": audit.data["verdict_reason"]}
            providers[name] = {**check, **verdict, "test_acc": accuracy(unlearned, data.x_test, data.y_test, device=device)}
        ev, none = providers["evasive"], providers[NO_UNLEARNING]
        caught = ev["verdict"] == "not_forgotten"
        numbers = {"owner_samples": len(owner), "marked_samples": len(marked), "p": verifier.p, "q": verifier.q, "tau": verifier.tau,
                   "queries": verifier.queries, "false_positive_rate": verifier.false_positive,
                   "false_negative_rate": verifier.false_negative, "providers": providers,
                   "passes_backdoor_verification": ev["deletion_confirmed"], "caught_by_membership_verdict": caught}
        fooled = ("The evasive provider passes backdoor verification" if ev["deletion_confirmed"] else
                  "The evasive provider still fails backdoor verification")
        conclusion = (f"{fooled}: {ev['hits']}/{ev['queries']} triggered queries hit the target (deletion confirmed at <= {verifier.tau}), "
                      f"although it kept all {len(owner)} of the owner's samples. ")
        if caught:
            conclusion += f"The membership verdict catches it: not_forgotten. {ev['verdict_reason']}"
        else:
            conclusion += (f"The membership verdict does NOT catch it: {ev['verdict']}. ")
            conclusion += ("It does catch the provider who did nothing (not_forgotten), so the evasion also hid the membership signal."
                           if none["verdict"] == "not_forgotten" else
                           f"It does not catch the provider who did nothing either ({none['verdict']}): this model leaks too little "
                           "membership for the verdict to tell kept data from deleted data, so neither check can be relied on here.")
        return numbers, conclusion, {}
