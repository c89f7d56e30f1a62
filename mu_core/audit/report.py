"""Run membership-inference attacks on the original, unlearned and retrained models.

Members are the forget set; non-members are held-out test samples drawn with the forget set's
class proportions (:func:`~mu_core.audit.metrics.matched_nonmembers`).
"""

from __future__ import annotations

import csv
import io
import json
import platform
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._types import Progress, report, sub_progress
from ..attacks import DEFAULT_ATTACKS, get_attack
from ..data import Dataset, DatasetSpec, load_dataset
from ..device import pick_device
from ..errors import AuditInputError
from ..forget import validate_indices
from ..models import ModelRecord
from ..train import accuracy
from .metrics import matched_nonmembers, roc_from_scores

__all__ = ["MODEL_ROLES", "AuditReport", "audit_samples", "check_settings", "run_audit"]

#: The models an audit compares, in display order.
MODEL_ROLES = ("original", "unlearned", "retrained")
SCHEMA = "mu_audit.report/1"


def library_versions() -> dict[str, str]:
    import sklearn
    import torchvision

    from .. import __version__

    return {
        "mu_audit": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
    }


@dataclass(frozen=True, eq=False)
class AuditReport:
    """The audit's numbers (``data``, the content of ``report.json``) and the raw scores."""

    data: dict
    scores: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(repr=False)
    member_indices: np.ndarray = field(repr=False)
    nonmember_indices: np.ndarray = field(repr=False)

    def scores_csv(self) -> str:
        """Per-sample scores: attack, model, member (1/0), index (train or test split), score."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["attack", "model", "member", "split", "index", "score"])
        for attack, per_model in self.scores.items():
            for role, (members, nonmembers) in per_model.items():
                for idx, s in zip(self.member_indices, members, strict=True):
                    writer.writerow([attack, role, 1, "train", int(idx), f"{s:.6g}"])
                for idx, s in zip(self.nonmember_indices, nonmembers, strict=True):
                    writer.writerow([attack, role, 0, "test", int(idx), f"{s:.6g}"])
        return buf.getvalue()

    def roc_csv(self) -> str:
        """ROC points: attack, model, fpr, tpr."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["attack", "model", "fpr", "tpr"])
        for attack, per_model in self.data["attacks"].items():
            for role, res in per_model.items():
                if isinstance(res, dict) and "roc" in res:
                    for f, t in zip(res["roc"]["fpr"], res["roc"]["tpr"], strict=True):
                        writer.writerow([attack, role, f, t])
        return buf.getvalue()

    def records_csv(self) -> str:
        """Per forgotten record: index, class, score, p-value, exposure and verdict."""
        buf = io.StringIO()
        keys = ["index", "label", "class", "attack", "score", "p_value", "exposure", "retrained_p_value", "original_p_value", "verdict"]
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        for row in self.data.get("records", []):
            writer.writerow({k: row.get(k) for k in keys})
        return buf.getvalue()

    def write(self, out_dir: str | Path) -> Path:
        """Write ``report.json``, ``scores.csv``, ``roc.csv`` and ``records.csv`` into ``out_dir``; returns the report's path."""
        from ..case import atomic_write_text

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "scores.csv", self.scores_csv())
        atomic_write_text(out / "roc.csv", self.roc_csv())
        atomic_write_text(out / "records.csv", self.records_csv())
        return atomic_write_text(out / "report.json", json.dumps(self.data, indent=1, allow_nan=False))


def _check_compatible(models: dict[str, tuple[nn.Module, ModelRecord]]) -> ModelRecord:
    if "original" not in models:
        raise AuditInputError("An audit needs the original model.")
    original = models["original"][1]
    for role, (_, rec) in models.items():
        if role not in MODEL_ROLES:
            raise AuditInputError(f"Unknown model role '{role}'; use {', '.join(MODEL_ROLES)}.")
        if rec.dataset.get("name") != original.dataset.get("name") or rec.class_names != original.class_names:
            raise AuditInputError(f"The {role} model was trained on other data than the original; audit models of one dataset.")
        if rec.in_shape != original.in_shape:
            raise AuditInputError(f"The {role} model takes inputs of shape {rec.in_shape}, the original {original.in_shape}.")
    return original


def _reference_size(refs, n_train: int) -> dict:
    """How many samples each reference model trained on, against the original's training set, with a note when fewer."""
    each = round(float(refs.keep.sum(axis=1).mean()))
    out = {"samples_each": each, "original_samples": int(n_train)}
    if each < 0.95 * n_train:
        out["note"] = (f"The population (the training set and {int(refs.pop_test.size)} held-out samples) is too small for reference "
                       f"models to train on as many samples as the original ({n_train}): each trained on about {each}.")
    return out


def audit_samples(original: ModelRecord, data: Dataset, forget_idx: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The held-out pool (test-split indices) and, drawn from it, the non-members matched to the forget set's classes."""
    from ..attacks.reference import heldout_pool

    pool = heldout_pool(len(original.train_indices), data.n_test, seed=0)
    return pool, pool[matched_nonmembers(data.y_train.numpy()[forget_idx], data.y_test.numpy()[pool], seed=seed)]


def check_settings(*, margin: float, alpha: float, bootstrap: int, attacks=None) -> None:
    """Refuse verdict settings and attack names a user can get wrong, with one sentence."""
    if not 0 < margin < 0.5:
        raise AuditInputError("The equivalence margin must be between 0 and 0.5 (in AUC), e.g. 0.1.")
    if not 0 < alpha < 0.5:
        raise AuditInputError("alpha must be between 0 and 0.5, e.g. 0.05.")
    if bootstrap < 20:
        raise AuditInputError("Use at least 20 bootstrap resamples (200 is the default).")
    for name in attacks or ():
        get_attack(name)


def _finite(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


EPSILON_NOTE = (
    "epsilon_lower: an empirical epsilon lower bound (delta 0, 95% Clopper-Pearson bounds on TPR and FPR) at the attack's best "
    "threshold. The threshold is picked on the same scores it is evaluated on, so the bound is optimistic."
)

#: Attacks preferred for per-record verdicts, strongest first (per-example calibrated ones first).
RECORD_ATTACK_ORDER = ("ulira", "lira_online", "rmia_online", "lira_offline", "rmia_offline", "modified_entropy", "loss")


def run_audit(
    models: dict[str, tuple[nn.Module, ModelRecord]],
    forget_indices,
    *,
    attacks: list[str] | tuple[str, ...] | None = None,
    seed: int = 0,
    dataset: Dataset | None = None,
    model_files: dict[str, str | Path] | None = None,
    reference_models: int = 16,
    reference_dir: str | Path | None = None,
    batched: bool | None = None,
    method: str | None = None,
    method_params: dict | None = None,
    margin: float = 0.1,
    alpha: float = 0.05,
    bootstrap: int = 200,
    retrains: int = 0,
    more_retrained: list[tuple[nn.Module, ModelRecord]] | None = None,
    options: dict | None = None,
    progress: Progress | None = None,
    device: torch.device | str | None = None,
) -> AuditReport:
    """Score forget-set members against matched held-out non-members under every attack and model,
    with bootstrap intervals, per-class slices, per-record verdicts and the overall verdict
    (:mod:`mu_core.audit.verdict`).

    ``models`` maps roles (``original``, ``unlearned``, ``retrained``) to ``(model, record)``.
    Reference models (``reference_models`` of them) are trained only for attacks that need them,
    and kept in ``reference_dir`` when given. ``method`` names the unlearning method U-LiRA and
    the challenge score replicate (default: the unlearned model's record).

    The verdict's reference is the exact retrains: ``models["retrained"]`` and ``more_retrained``
    (already trained, e.g. several ``--retrained`` files), topped up to ``retrains`` by training the rest
    with consecutive seeds (:mod:`mu_core.audit.retrains`; kept in ``reference_dir`` and reused). The
    first retrain is the report's ``retrained`` model; every retrain is scored by every attack, and
    ``reference`` holds their count, seeds and AUC spread. ``power`` says per attack how well the
    original is told from the reference; ``forgotten`` requires it (:mod:`mu_core.audit.verdict`).
    """
    from ..attacks import AttackContext, AttackNotApplicable
    from .metrics import epsilon_lower_bound
    from .retrains import train_retrains
    from .verdict import (
        VERDICT_RULE,
        auc_fast,
        bootstrap_aucs,
        decide,
        per_class_aucs,
        record_counts,
        record_verdicts,
        resamples,
        roc_intervals,
    )

    original = _check_compatible(models)
    data = dataset or load_dataset(DatasetSpec.from_dict(original.dataset))
    forget_idx = validate_indices(forget_indices, original.train_indices, original.n_train_split)
    for role, (_, rec) in models.items():
        recorded = rec.forget_indices
        if role != "original" and recorded is not None and not np.array_equal(np.unique(recorded), forget_idx):
            raise AuditInputError(f"The {role} model was made for a different forget request than the one given.")
    check_settings(margin=margin, alpha=alpha, bootstrap=bootstrap, attacks=attacks)
    given = ([models["retrained"]] if "retrained" in models else []) + list(more_retrained or [])
    for pair in given:
        _check_compatible({"original": models["original"], "retrained": pair})
        rec = pair[1]
        if rec.forget_indices is not None and not np.array_equal(np.unique(rec.forget_indices), forget_idx):
            raise AuditInputError("A retrained model was made for a different forget request than the one given.")
    to_train = max(int(retrains) - len(given), 0)
    taken = [rec.recipe.get("seed") for _, rec in given]
    unlearned_record = models["unlearned"][1] if "unlearned" in models else None
    if unlearned_record is not None and (unlearned_record.unlearning or {}).get("method") == "retrain":
        taken.append(unlearned_record.recipe.get("seed"))  # an audited exact retrain is never its own reference
    attack_names = list(dict.fromkeys(attacks or DEFAULT_ATTACKS))
    infos = [get_attack(name) for name in attack_names]
    device = device if isinstance(device, torch.device) else pick_device(device)

    y_train, y_test = data.y_train.numpy(), data.y_test.numpy()
    pool, nonmember_idx = audit_samples(original, data, forget_idx, seed=seed)
    fx, fy = data.x_train[torch.from_numpy(forget_idx)], data.y_train[torch.from_numpy(forget_idx)]
    retain_idx = np.setdiff1d(original.train_indices, forget_idx)
    rx, ry = data.x_train[torch.from_numpy(retain_idx)], data.y_train[torch.from_numpy(retain_idx)]

    trained = train_retrains(models["original"][0], original, forget_idx, to_train, taken=taken,
                             dataset=data, folder=reference_dir, device=device, progress=sub_progress(progress, 0.0, 0.3) if to_train else None)
    all_retrains = given + trained
    if all_retrains and "retrained" not in models:
        models = {**models, "retrained": all_retrains[0]}
    extra_roles = {f"retrain_{j + 2}": pair for j, pair in enumerate(all_retrains[1:])}
    roles = [r for r in MODEL_ROLES if r in models]
    scored_roles = roles + list(extra_roles)
    everything = {**models, **extra_roles}
    for role in scored_roles:
        everything[role][0].to(device).eval()
    ctx = AttackContext(
        models={r: everything[r][0] for r in scored_roles}, records={r: everything[r][1] for r in scored_roles}, data=data,
        member_idx=forget_idx,
        nonmember_idx=nonmember_idx, pool_idx=pool, device=device, seed=seed, reference_count=reference_models,
        reference_dir=reference_dir, batched=batched, method=method, method_params=method_params, progress=None, options=dict(options or {}),
    )
    idx = resamples(forget_idx.size, nonmember_idx.size, bootstrap, seed + 1)
    total = len(infos) + 1
    attack_results: dict[str, dict] = {}
    scores: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    boot: dict[str, dict[str, np.ndarray]] = {}
    point: dict[str, dict[str, float]] = {}
    timings: dict[str, float] = {}
    retrain_scores: dict[str, list] = {}
    progress = sub_progress(progress, 0.3, 1.0) if to_train else progress
    for i, info in enumerate(infos):
        ctx.progress = None if progress is None else (lambda f, m, i=i: progress((i + f) / total, m))
        report(progress, i / total, f"Attack '{info.name}'")
        started = time.perf_counter()
        try:
            if info.kind == "summary":
                attack_results[info.name] = info.scorer(ctx)
            else:
                attack_results[info.name], scores[info.name] = {}, {}
                for role in scored_roles:
                    report(progress, i / total, f"Attack '{info.name}' on the {role.replace('_', ' ')} model")
                    out = info.scorer(ctx, role)
                    if out is None:
                        continue
                    member_scores, nonmember_scores, extra = out if len(out) == 3 else (*out, {})
                    if role in extra_roles:
                        retrain_scores.setdefault(info.name, []).append((member_scores, nonmember_scores))
                        if info.verdict and info.name in boot:
                            boot[info.name].setdefault("extra", []).append(bootstrap_aucs(member_scores, nonmember_scores, idx))
                            point[info.name].setdefault("extra", []).append(auc_fast(member_scores, nonmember_scores))
                        continue
                    scores[info.name][role] = (member_scores, nonmember_scores)
                    result = roc_from_scores(member_scores, nonmember_scores).to_dict()
                    eps = epsilon_lower_bound(member_scores, nonmember_scores)
                    result["epsilon_lower"] = eps.pop("epsilon_lower")
                    result["epsilon_lower_at"] = eps
                    intervals, aucs = roc_intervals(member_scores, nonmember_scores, idx)
                    result.update(intervals)
                    result["per_class"] = per_class_aucs(member_scores, nonmember_scores, y_train[forget_idx], y_test[nonmember_idx],
                                                         data.class_names)
                    result.update(extra)
                    attack_results[info.name][role] = result
                    if info.verdict:
                        boot.setdefault(info.name, {})[role] = aucs
                        point.setdefault(info.name, {})[role] = result["auc"]
        except AttackNotApplicable as exc:
            attack_results[info.name] = {"not_run": f"{info.name} did not run: {exc}."}
            for partial in (scores, boot, point, retrain_scores):
                partial.pop(info.name, None)
        timings[info.name] = round(time.perf_counter() - started, 3)

    report(progress, len(infos) / total, "Accuracy and verdict")
    utility: dict[str, dict] = {}
    for role in roles:
        model = models[role][0]
        utility[role] = {
            "forget_acc": accuracy(model, fx, fy, device=device),
            "retain_acc": accuracy(model, rx, ry, device=device),
            "test_acc": accuracy(model, data.x_test, data.y_test, device=device),
        }
    for role in scored_roles:
        everything[role][0].cpu()
    for attack in boot:
        if "retrained" in boot[attack]:
            boot[attack]["retrains"] = np.stack([boot[attack].pop("retrained"), *boot[attack].pop("extra", [])], axis=1)
            point[attack]["retrains"] = [point[attack].pop("retrained"), *point[attack].pop("extra", [])]
    decision = decide(boot, point, margin=margin, alpha=alpha, seed=seed)
    record_attack = next((a for a in RECORD_ATTACK_ORDER if a in boot), next(iter(boot), None))
    records = []
    if record_attack:
        per_model = dict(scores[record_attack])
        if "retrained" in per_model:
            per_model["retrains"] = [per_model["retrained"], *retrain_scores.get(record_attack, [])]
        records = record_verdicts(record_attack, per_model, forget_idx, y_train[forget_idx], data.class_names)
    report(progress, 1.0, "Audit done")

    files = {role: str(path) for role, path in (model_files or {}).items()}
    from ..models import sha256_file

    refs = ctx.cache.get("references")
    provenance = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "models": {
            role: {
                "file": files.get(role),
                "sha256": sha256_file(files[role]) if role in files else None,
                "arch": models[role][1].arch,
                "recipe": models[role][1].recipe,
                "unlearning": {k: v for k, v in (models[role][1].unlearning or {}).items() if k != "forget_indices"} or None,
            }
            for role in roles
        },
        "dataset": data.spec.to_dict(),
        "seeds": {"nonmember_sampling": int(seed), "bootstrap": int(seed) + 1,
                  **{f"{role}_training": models[role][1].recipe.get("seed") for role in roles}},
        "versions": library_versions(),
        "device": str(device),
        "members": int(forget_idx.size),
        "nonmembers": int(nonmember_idx.size),
        "heldout_pool": int(pool.size),
        "attack_seconds": timings,
        "reference_models": None if refs is None else {
            "count": refs.count, "population": int(refs.keep.shape[1]), "batched": refs.batched,
            "train_seconds": refs.seconds, "recipe": refs.recipe, "fingerprint": refs.fingerprint,
            **_reference_size(refs, len(original.train_indices)),
        },
    }
    counts = np.bincount(y_train[forget_idx], minlength=data.num_classes)
    report_data = {
        "schema": SCHEMA,
        "verdict": decision["verdict"],
        "verdict_reason": decision["verdict_reason"],
        "over_unlearning": decision["over_unlearning"],
        "verdict_rule": VERDICT_RULE,
        "verdict_settings": {"margin": margin, "alpha": alpha, "bootstrap": bootstrap, "attacks": list(boot),
                             "reference": "retrained" if all_retrains else "chance"},
        "verdict_detail": decision["verdict_detail"],
        "power": decision["power"],
        "has_power": decision["has_power"],
        "reference": {
            "retrains": len(all_retrains),
            "seeds": [rec.recipe.get("seed") for _, rec in all_retrains],
            "trained": len(trained),
            "auc_spread": decision["auc_spread"],
        },
        "records": records,
        "record_counts": record_counts(records),
        "epsilon_note": EPSILON_NOTE,
        "attacks": attack_results,
        "attack_info": {
            info.name: {"summary": info.summary, "higher_means": info.higher_means, "knowledge": info.knowledge, "kind": info.kind,
                        "reference_models": info.reference_models, "in_verdict": info.verdict}
            for info in infos
        },
        "utility": {role: {k: _finite(v) for k, v in u.items()} for role, u in utility.items()},
        "forget": {
            "count": int(forget_idx.size),
            "per_class": {data.class_names[c]: int(n) for c, n in enumerate(counts) if n},
        },
        "summary": "",
        "provenance": provenance,
    }
    report_data["summary"] = summarise(report_data)
    return AuditReport(report_data, scores, forget_idx, nonmember_idx)


def summarise(report_data: dict) -> str:
    """One paragraph in plain words: the verdict, each ROC attack's AUC per model, and forget accuracy."""
    parts = [f"Verdict: {report_data['verdict'].replace('_', ' ')}. {report_data['verdict_reason']}"]
    for attack, per_model in report_data["attacks"].items():
        if "not_run" in per_model:
            parts.append(per_model["not_run"])
        elif report_data["attack_info"][attack]["kind"] == "roc":
            aucs = ", ".join(f"{role} {res['auc']:.3f}" for role, res in per_model.items())
            parts.append(f"{attack} AUC (0.5 = indistinguishable from held-out data): {aucs}.")
        elif "forgetting_quality" in per_model:
            parts.append(f"{attack}: forgetting quality {per_model['forgetting_quality']:.3f} of 1, score {per_model['score']:.3f}.")
    acc = ", ".join(f"{role} {u['forget_acc']:.1%}" for role, u in report_data["utility"].items())
    parts.append(f"Accuracy on the forget set: {acc}.")
    return " ".join(parts)
