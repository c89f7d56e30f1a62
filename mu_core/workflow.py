"""Case-level steps of an audit: what the pages call, on top of the same engine the CLI uses.

Each step reads its inputs from the case, writes its outputs into it atomically, and records
them in ``case.json``. Steps take a ``progress`` callback that may raise ``RunCancelled``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._types import Progress
from .case import Case, CaseStore, atomic_write_bytes, atomic_write_text
from .errors import AuditInputError
from .forget import ForgetRequest, read_request, validate_indices, write_request

if TYPE_CHECKING:
    from .neurons.labels import Labeller

__all__ = [
    "DEMO_FORGET_SIZE",
    "case_audit",
    "case_compare",
    "case_explain",
    "case_forget_request",
    "case_import_model",
    "case_inversion_live",
    "case_inversion_setting",
    "case_invert",
    "case_retrain",
    "case_set_forget",
    "case_train",
    "case_unlearn",
    "case_use_method",
    "case_utility",
    "load_case_model",
    "make_demo_case",
]

DEMO_FORGET_SIZE = 100
MODEL_FILES = {"original": "original.safetensors", "unlearned": "unlearned.safetensors", "retrained": "retrained.safetensors"}


def _model_entry(case: Case, role: str, path: Path, record) -> dict:
    from .models import sha256_file

    return {"file": path.name, "sha256": sha256_file(path), "summary": record.summary()}


def _save_role(case: Case, role: str, model, record) -> dict:
    from .models import save_model

    path = save_model(model, record, case.path(MODEL_FILES[role]))
    entry = _model_entry(case, role, path, record)
    if role == "original":
        case.set_entry("original", entry)
        case.update(dataset=record.dataset)
    else:
        case.set_entry(role, entry)
    return entry


def load_case_model(case: Case, role: str):
    """``(model, record)`` of a case's model, or an error saying which step is missing."""
    from .models import load_model

    path = case.file(role)
    if path is None:
        step = {"original": "train or upload a model", "unlearned": "run an unlearning method", "retrained": "compute the retrained reference"}[role]
        raise AuditInputError(f"This case has no {role} model yet: {step} first.")
    return load_model(path)


def case_forget_request(case: Case) -> ForgetRequest:
    path = case.file("forget")
    if path is None:
        raise AuditInputError("This case has no forget request yet: choose samples to forget first.")
    return read_request(path)


def case_train(
    case: Case,
    dataset: str,
    arch: str,
    *,
    data_root: str | None = None,
    epochs: int | None = None,
    seed: int = 0,
    train_size: int | None = None,
    lr: float | None = None,
    sisa: tuple[int, int] | None = None,
    progress: Progress | None = None,
) -> dict:
    """Train the case's original model (replacing any earlier one and what depended on it);
    ``sisa=(shards, slices)`` trains a SISA ensemble instead."""
    from .data import DatasetSpec, load_dataset
    from .train import TrainConfig, default_config, fit_model, fit_sisa, subset_indices

    data = load_dataset(DatasetSpec(dataset, data_root))
    config = default_config(arch, train_size or data.n_train, seed=seed, epochs=epochs)
    if lr:
        config = TrainConfig(**{**config.to_dict(), "lr": lr})
    if sisa:
        indices = subset_indices(data.n_train, train_size, seed) if train_size else None
        model, record = fit_sisa(data, arch, config, shards=sisa[0], slices=sisa[1], train_indices=indices, progress=progress)
    else:
        model, record = fit_model(data, arch, config, train_size=train_size, progress=progress)
    entry = _save_role(case, "original", model, record)
    case.log("train", role="original", sha256=entry["sha256"], arch=arch, dataset=dataset, seed=seed, sisa=list(sisa) if sisa else None)
    return entry


def case_import_model(
    case: Case,
    content: bytes,
    filename: str,
    *,
    arch: str | None = None,
    dataset: str | None = None,
    data_root: str | None = None,
) -> dict:
    """Import an uploaded model file (validated before it replaces anything in the case)."""
    import secrets
    import shutil

    from .case import clean_name
    from .models import load_model

    name = clean_name(Path(str(filename).replace("\\", "/")).name).replace("/", "_") or "model"
    suffix = Path(name).suffix.lower()
    if suffix not in (".safetensors", ".pt", ".pth", ".bin"):
        raise AuditInputError(f"'{name}' is not a model file: upload .safetensors, .pt or .pth.")
    folder = case.path("uploads", secrets.token_hex(8))  # under the user's own file name, so messages name it
    staging = atomic_write_bytes(folder / name, content)
    try:
        model, record = load_model(staging, arch=arch, dataset=dataset, data_root=data_root)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    filename = name
    if record.unlearning is None and not record.metrics:
        from .data import DatasetSpec, load_dataset
        from .train import accuracy

        data = load_dataset(DatasetSpec.from_dict(record.dataset))
        record = record.with_updates(metrics={"test_acc": accuracy(model, data.x_test, data.y_test)})
    record = record.with_updates(metrics={**record.metrics, "imported_from": filename})
    entry = _save_role(case, "original", model, record)
    case.log("import", role="original", sha256=entry["sha256"], upload_sha256=hashlib.sha256(content).hexdigest(), arch=record.arch)
    return entry


def case_set_forget(case: Case, request: ForgetRequest) -> dict:
    """Validate ``request`` against the original's training set and store it."""
    from .models.io import read_record

    path = case.file("original")
    if path is None:
        raise AuditInputError("This case has no model yet: train or upload a model first.")
    record = read_record(path)
    assert record is not None
    indices = validate_indices(request.indices, record.train_indices, record.n_train_split)
    request = ForgetRequest(indices, request.kind, request.params)
    from .models.io import sha256_file

    path = write_request(request, case.path("forget.json"))
    entry = {"file": "forget.json", "sha256": sha256_file(path), "count": len(request), "kind": request.kind, "describe": request.describe()}
    manifest = case.set_entry("forget", entry)
    case.log("forget", sha256=entry["sha256"], count=entry["count"], kind=request.kind)
    return manifest


def case_unlearn(case: Case, method: str, params: dict[str, Any] | None = None, *, progress: Progress | None = None) -> dict:
    """Unlearn the case's forget request from its original with ``method``.

    ``retrain`` fills the retrained reference instead of the unlearned slot.
    """
    from .models import sha256_file
    from .unlearn import unlearn

    model, record = load_case_model(case, "original")
    request = case_forget_request(case)
    result = unlearn(model, record, request.indices, method=method, params=params, source_sha256=sha256_file(case.file("original")), progress=progress)
    role = "retrained" if method == "retrain" else "unlearned"
    entry = _save_role(case, role, result.model, result.record)
    case.log("unlearn", role=role, method=method, params=(result.record.unlearning or {}).get("params"), sha256=entry["sha256"],
             source_sha256=(case.entry("original") or {}).get("sha256"))
    return entry


def case_retrain(case: Case, *, progress: Progress | None = None) -> dict:
    """Compute the retrained-from-scratch reference (the yardstick)."""
    return case_unlearn(case, "retrain", progress=progress)


def case_audit(
    case: Case,
    attacks: list[str] | None = None,
    *,
    seed: int = 0,
    reference_models: int = 16,
    method: str | None = None,
    margin: float = 0.1,
    alpha: float = 0.05,
    bootstrap: int = 200,
    retrains: int = 4,
    progress: Progress | None = None,
) -> dict:
    """Run the membership audit on every model the case has; writes ``audit/report.json`` (and CSVs).

    Reference models are kept in the case's ``references/`` folder and reused by later audits, and so
    are the verdict's exact retrains (``retrains`` in all, the case's retrained model first; see
    :mod:`mu_core.audit.retrains`).
    """
    from .audit.report import run_audit

    request = case_forget_request(case)
    models, files = {}, {}
    for role in ("original", "unlearned", "retrained"):
        if case.file(role) is not None:
            models[role] = load_case_model(case, role)
            files[role] = case.file(role)
    if "original" not in models:
        raise AuditInputError("This case has no model yet: train or upload a model first.")
    result = run_audit(models, request.indices, attacks=attacks, seed=seed, model_files=files, progress=progress,
                       reference_models=reference_models, reference_dir=case.path("references"), method=method,
                       margin=margin, alpha=alpha, bootstrap=bootstrap, retrains=retrains)
    result.write(case.path("audit"))
    if case.path("references").is_dir() and not case.entry("references"):
        case.update(references={"file": "references"})
    case.set_entry("audit", {"file": "audit", "attacks": list(result.data["attacks"]), "models": list(models),
                             "verdict": result.data["verdict"]})
    from .models import sha256_file

    case.log("audit", report_sha256=sha256_file(case.path("audit", "report.json")), verdict=result.data["verdict"],
             models={role: (case.entry(role) or {}).get("sha256") for role in models},
             settings={"attacks": list(result.data["attacks"]), "seed": seed, "reference_models": reference_models, "method": method,
                       "margin": margin, "alpha": alpha, "bootstrap": bootstrap})
    return result.data


def case_compare(
    case: Case, methods: list[str], *, grid: bool = False, floor: bool = False, repeats: int = 1, progress: Progress | None = None
) -> dict:
    """Run several methods (and ``retrain``) on the case's request; keep every model and the table.

    Models go to ``compare/models/<name>.safetensors``, the table to ``compare/compare.json`` (and CSV);
    the retrained model also becomes the case's retrained reference.
    """
    from .compare import compare_methods
    from .models import save_model, sha256_file

    model, record = load_case_model(case, "original")
    request = case_forget_request(case)
    source = sha256_file(case.file("original"))
    result = compare_methods(model, record, request.indices, methods, grid=grid, floor=floor, repeats=repeats, progress=progress)
    case.set_entry("compare", {"file": "compare"})
    result.write(case.path("compare"))
    for name, res in result.models.items():
        unlearning = dict(res.record.unlearning or {}, source_sha256=source)
        save_model(res.model, res.record.with_updates(unlearning=unlearning), case.path("compare", "models", f"{name}.safetensors"))
    _save_role(case, "retrained", result.models["retrain"].model, result.models["retrain"].record)
    case.update(compare={"file": "compare", "methods": list(result.rows), "grid": grid, "floor": floor, "repeats": repeats})
    case.log("unlearn", role="compare", methods=list(result.rows), grid=grid, floor=floor, repeats=repeats,
             retrained_sha256=(case.entry("retrained") or {}).get("sha256"))
    return result.to_dict()


def case_explain(case: Case, layers: list[str] | None = None, *, seed: int = 0, compare_labeller: Labeller | None = None,
                 progress: Progress | None = None) -> dict:
    """Neuron-level explanation of the case's models (original with the unlearned and/or the
    retrained one) on its forget request; writes ``neurons/`` (``neurons.json``, ``neurons.npz``,
    heatmap PNGs) and records the model hashes it was computed from. ``compare_labeller`` (e.g.
    the ``open_clip`` labeller) labels every neuron a second time, next to the default labels."""
    from .neurons import explain_models

    request = case_forget_request(case)
    models = {role: load_case_model(case, role) for role in ("original", "unlearned", "retrained") if case.file(role) is not None}
    if "original" not in models:
        raise AuditInputError("This case has no model yet: train or upload a model first.")
    if len(models) < 2:
        raise AuditInputError("This case has neither an unlearned nor a retrained model yet: run unlearning or retraining first.")
    result = explain_models(models, request.indices, layers=layers, seed=seed, compare_labeller=compare_labeller, progress=progress)
    result.write(case.path("neurons"))
    sources = {role: (case.entry(role) or {}).get("sha256") for role in models}
    case.set_entry("neurons", {"file": "neurons", "models": list(models), "layers": [layer["name"] for layer in result.data["layers"]],
                               "sources": sources, "seconds": result.data["seconds"], "compared_labeller": result.data["compared_labeller"]})
    case.log("explain", models=sources, layers=layers, seed=seed)
    return result.data


def case_use_method(case: Case, method: str) -> dict:
    """Make a compared method's model the case's unlearned model (for the membership audit)."""
    from .models import load_model

    path = case.path("compare", "models", f"{method}.safetensors")
    if not path.is_file():
        raise AuditInputError(f"No compared model for '{method}' in this case; run the comparison first.")
    model, record = load_model(path)
    entry = _save_role(case, "unlearned", model, record)
    case.log("unlearn", role="unlearned", method=method, from_compare=True, sha256=entry["sha256"])
    return entry


def make_demo_case(store: CaseStore | None = None, *, progress: Progress | None = None) -> Case:
    """The teaching demo as a case (:mod:`mu_core.demo`, the same as ``python -m mu_core demo``): an
    overfit digits ``mlp``, 100 random samples to forget, a weak method (``neggrad``) the audit finds
    ``not_forgotten``, the retrain it finds ``forgotten``, and both audits."""
    from .demo import build_demo

    store = store or CaseStore()
    with store.staged("Digits demo") as case:  # published whole, or not at all (even if killed)
        build_demo(case, progress=progress)
    return case


INVERSION_DIR = "inversion"
INVERSION_LIVE = "live.npz"


def case_inversion_setting(case: Case, target: str = "unlearned") -> str:
    """Which setting an inversion of the case's ``target`` model (``unlearned`` or ``retrained``)
    assumes: ``exact`` when the original was fine-tuned from a recorded base and the target was
    retrained from it, else ``approximate`` (the plain parameter difference)."""
    from .models.io import read_record

    original, attacked = case.file("original"), case.file(target)
    if original is None or attacked is None:
        return "approximate"
    record, other = read_record(original), read_record(attacked)
    method = ((other.unlearning or {}).get("method") if other else None)
    return "exact" if record is not None and record.recipe.get("init") and method == "retrain" else "approximate"


def case_invert(
    case: Case,
    *,
    target: str = "unlearned",
    steps: int | None = None,
    restarts: int | None = None,
    tv_weight: float | None = None,
    known_label: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict:
    """The unlearning-inversion attack on the case's forget request (Hu et al. 2024).

    Reconstructions are sensitive: they are written only inside the case, to ``inversion/``
    (``inversion.json``, a PNG per sample, ``reconstructions.npz``), and go with the case. While
    the attack runs, ``inversion/live.npz`` holds the current dummies and cosine losses.
    """
    import shutil

    from .inversion import InversionConfig, invert, load_recorded_base
    from .models import sha256_file

    if target not in ("unlearned", "retrained"):
        raise AuditInputError(f"The inversion attacks the unlearned or the retrained model, not '{target}'.")
    original, record = load_case_model(case, "original")
    attacked, attacked_record = load_case_model(case, target)
    request = case_forget_request(case)
    setting = case_inversion_setting(case, target)
    base = load_recorded_base(record) if setting == "exact" else None
    given = {"steps": steps, "restarts": restarts, "tv_weight": tv_weight}
    config = InversionConfig(**{k: v for k, v in given.items() if v is not None}, label="known" if known_label else "inferred", seed=seed)
    config.validate()
    folder = case.path(INVERSION_DIR)
    case.update(inversion=None)
    shutil.rmtree(folder, ignore_errors=True)

    def live(snap) -> None:
        from .inversion import _npz_bytes

        atomic_write_bytes(folder / INVERSION_LIVE, _npz_bytes(
            images=snap.images, losses=np.asarray(snap.losses, dtype=np.float32),
            meta=np.array([snap.restart, snap.restarts, snap.step, snap.steps])))

    try:
        result = invert(original, attacked, request.indices, record=record, unlearned_record=attacked_record, base=base,
                        setting=setting, config=config, progress=progress, snapshot=live)
        result.write(folder)
    finally:
        (folder / INVERSION_LIVE).unlink(missing_ok=True)
    entry = {"file": INVERSION_DIR, "target": target, "target_sha256": sha256_file(case.file(target)), "setting": result.setting,
             "top1_share": result.top1_share, "label_accuracy": result.label_accuracy, "samples": len(result.samples)}
    case.set_entry("inversion", entry)
    case.log("invert", target=target, target_sha256=entry["target_sha256"], setting=result.setting, samples=entry["samples"], seed=seed)
    return result.to_dict()


DEFENSES_FILE = "defenses.json"


def case_defense_sweep(
    case: Case,
    grid: dict[str, list[float]] | None = None,
    *,
    steps: int | None = None,
    restarts: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[dict]:
    """The inversion attack against defended copies of the case's unlearned model (noise,
    pruning, fine-tuning after unlearning; :func:`mu_core.inversion.defense_sweep`): per defense
    and strength, the defended model's test accuracy and the attack's rank-1 share, label
    accuracy and image scores. Written to ``defenses.json`` in the case; no images are kept."""
    from .inversion import InversionConfig, defense_sweep, load_recorded_base
    from .models import sha256_file

    original, record = load_case_model(case, "original")
    unlearned, unlearned_record = load_case_model(case, "unlearned")
    request = case_forget_request(case)
    setting = case_inversion_setting(case, "unlearned")
    base = load_recorded_base(record) if setting == "exact" else None
    given = {"steps": steps, "restarts": restarts}
    config = InversionConfig(**{k: v for k, v in given.items() if v is not None}, seed=seed).validate()
    rows = defense_sweep(original, unlearned, request.indices, record=record, unlearned_record=unlearned_record, grid=grid,
                         base=base, setting=setting, config=config, progress=progress)
    atomic_write_text(case.path(DEFENSES_FILE), json.dumps({"setting": setting, "steps": config.steps, "restarts": config.restarts,
                                                             "rows": rows}, indent=1, allow_nan=False))
    case.set_entry("defenses", {"file": DEFENSES_FILE, "unlearned_sha256": sha256_file(case.file("unlearned")), "rows": len(rows)})
    return rows


def case_inversion_live(case: Case) -> dict | None:
    """The running inversion's latest snapshot (``images``, ``losses``, ``restart``, ``step``...), if any."""
    path = case.path(INVERSION_DIR, INVERSION_LIVE)
    try:
        with np.load(path) as npz:
            restart, restarts, step, steps = (int(v) for v in npz["meta"])
            return {"images": npz["images"], "losses": npz["losses"].tolist(), "restart": restart, "restarts": restarts, "step": step, "steps": steps}
    except (FileNotFoundError, OSError, ValueError, KeyError):
        return None


def case_utility(case: Case) -> dict[str, dict[str, float]]:
    """Forget, retain and test accuracy of every model the case has (retain = original's
    training set minus the forget set)."""
    import torch

    from .data import DatasetSpec, load_dataset
    from .train import accuracy

    original, record = load_case_model(case, "original")
    request = case_forget_request(case)
    data = load_dataset(DatasetSpec.from_dict(record.dataset))
    forget_idx = torch.from_numpy(request.indices)
    retain_idx = torch.from_numpy(np.setdiff1d(record.train_indices, request.indices))
    out = {}
    for role in ("original", "unlearned", "retrained"):
        if case.file(role) is None:
            continue
        model = original if role == "original" else load_case_model(case, role)[0]
        out[role] = {
            "forget_acc": accuracy(model, data.x_train[forget_idx], data.y_train[forget_idx]),
            "retain_acc": accuracy(model, data.x_train[retain_idx], data.y_train[retain_idx]),
            "test_acc": accuracy(model, data.x_test, data.y_test),
        }
    return out
