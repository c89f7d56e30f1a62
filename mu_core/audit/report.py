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

from .._types import Progress, report
from ..attacks import DEFAULT_ATTACKS, get_attack
from ..data import Dataset, DatasetSpec, load_dataset
from ..device import pick_device
from ..errors import AuditInputError
from ..forget import validate_indices
from ..models import ModelRecord
from ..train import accuracy
from .metrics import matched_nonmembers, roc_from_scores

__all__ = ["MODEL_ROLES", "AuditReport", "run_audit"]

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

    def write(self, out_dir: str | Path) -> Path:
        """Write ``report.json`` and ``scores.csv`` into ``out_dir``; returns the report's path."""
        from ..case import atomic_write_text

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "scores.csv", self.scores_csv())
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


def _finite(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def run_audit(
    models: dict[str, tuple[nn.Module, ModelRecord]],
    forget_indices,
    *,
    attacks: list[str] | tuple[str, ...] | None = None,
    seed: int = 0,
    dataset: Dataset | None = None,
    model_files: dict[str, str | Path] | None = None,
    progress: Progress | None = None,
    device: torch.device | str | None = None,
) -> AuditReport:
    """Score forget-set members against matched held-out non-members under every attack and model.

    ``models`` maps roles (``original``, ``unlearned``, ``retrained``) to ``(model, record)``.
    """
    original = _check_compatible(models)
    data = dataset or load_dataset(DatasetSpec.from_dict(original.dataset))
    forget_idx = validate_indices(forget_indices, original.train_indices, original.n_train_split)
    for role, (_, rec) in models.items():
        recorded = rec.forget_indices
        if role != "original" and recorded is not None and not np.array_equal(np.unique(recorded), forget_idx):
            raise AuditInputError(f"The {role} model was made for a different forget request than the one given.")
    attack_names = list(attacks or DEFAULT_ATTACKS)
    infos = [get_attack(name) for name in attack_names]
    device = device if isinstance(device, torch.device) else pick_device(device)

    y_train, y_test = data.y_train.numpy(), data.y_test.numpy()
    nonmember_idx = matched_nonmembers(y_train[forget_idx], y_test, seed=seed)
    fx, fy = data.x_train[torch.from_numpy(forget_idx)], data.y_train[torch.from_numpy(forget_idx)]
    nx, ny = data.x_test[torch.from_numpy(nonmember_idx)], data.y_test[torch.from_numpy(nonmember_idx)]
    retain_idx = np.setdiff1d(original.train_indices, forget_idx)
    rx, ry = data.x_train[torch.from_numpy(retain_idx)], data.y_train[torch.from_numpy(retain_idx)]

    roles = [r for r in MODEL_ROLES if r in models]
    total = len(roles) * (len(infos) + 1)
    done = 0
    attack_results: dict[str, dict] = {}
    scores: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    timings: dict[str, float] = {}
    for info in infos:
        attack_results[info.name], scores[info.name] = {}, {}
        started = time.perf_counter()
        for role in roles:
            report(progress, done / total, f"Attack '{info.name}' on the {role} model")
            model = models[role][0].to(device).eval()
            member_scores = info.scorer(model, fx, fy, device=device)
            nonmember_scores = info.scorer(model, nx, ny, device=device)
            scores[info.name][role] = (member_scores, nonmember_scores)
            attack_results[info.name][role] = roc_from_scores(member_scores, nonmember_scores).to_dict()
            done += 1
        timings[info.name] = round(time.perf_counter() - started, 3)

    utility: dict[str, dict] = {}
    for role in roles:
        report(progress, done / total, f"Accuracy of the {role} model")
        model = models[role][0].to(device).eval()
        utility[role] = {
            "forget_acc": accuracy(model, fx, fy, device=device),
            "retain_acc": accuracy(model, rx, ry, device=device),
            "test_acc": accuracy(model, data.x_test, data.y_test, device=device),
        }
        models[role][0].cpu()
        done += 1
    report(progress, 1.0, "Audit done")

    files = {role: str(path) for role, path in (model_files or {}).items()}
    from ..models import sha256_file

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
        "seeds": {"nonmember_sampling": int(seed), **{f"{role}_training": models[role][1].recipe.get("seed") for role in roles}},
        "versions": library_versions(),
        "device": str(device),
        "members": int(forget_idx.size),
        "nonmembers": int(nonmember_idx.size),
        "attack_seconds": timings,
    }
    counts = np.bincount(y_train[forget_idx], minlength=data.num_classes)
    report_data = {
        "schema": SCHEMA,
        "attacks": attack_results,
        "attack_info": {
            info.name: {"summary": info.summary, "higher_means": info.higher_means, "knowledge": info.knowledge}
            for info in infos
        },
        "utility": {role: {k: _finite(v) for k, v in u.items()} for role, u in utility.items()},
        "forget": {
            "count": int(forget_idx.size),
            "per_class": {data.class_names[c]: int(n) for c, n in enumerate(counts) if n},
        },
        "summary": summarise(attack_results, utility),
        "provenance": provenance,
    }
    return AuditReport(report_data, scores, forget_idx, nonmember_idx)


def summarise(attack_results: dict[str, dict], utility: dict[str, dict]) -> str:
    """One paragraph in plain words: each attack's AUC per model, and forget accuracy."""
    parts = []
    for attack, per_model in attack_results.items():
        aucs = ", ".join(f"{role} {res['auc']:.3f}" for role, res in per_model.items())
        parts.append(f"{attack} attack AUC (forget set vs matched held-out data; 0.5 = indistinguishable): {aucs}.")
    acc = ", ".join(f"{role} {u['forget_acc']:.1%}" for role, u in utility.items())
    parts.append(f"Accuracy on the forget set: {acc}.")
    return " ".join(parts)
