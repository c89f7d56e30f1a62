"""Compare unlearning methods on one request against retraining from scratch.

For every method: UA, RA, TA, MIA-efficacy (:mod:`mu_core.audit.efficacy`), the gap to
retraining averaged over those four (Avg. Gap, as in SalUn), run time and speed-up over
retraining. ``retrain`` is always run first: it is the reference.

>>> result = compare_methods(model, record, forget_idx, ["neggrad", "finetune"])   # doctest: +SKIP
>>> result.rows["neggrad"]["avg_gap"]                                                # doctest: +SKIP
0.031
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._types import Progress, report
from .audit.efficacy import METRIC_KEYS, avg_gap, efficacy_metrics
from .data import Dataset, DatasetSpec, load_dataset
from .device import pick_device
from .errors import AuditInputError
from .forget import validate_indices
from .models import ModelRecord
from .unlearn import UnlearnResult, get_method, list_methods, preset, unlearn
from .unlearn._common import whole_class

__all__ = ["CSV_COLUMNS", "CompareResult", "compare_methods", "param_grid"]

CSV_COLUMNS = ("method", "ua", "ra", "ta", "mia_efficacy", "avg_gap", "seconds", "speedup", "params", "notes", "mia_efficacy_se")


def param_grid(method: str, n_train: int | None = None) -> list[dict[str, Any]]:
    """A small grid around a method's :func:`~mu_core.unlearn.preset` for ``n_train`` training
    samples: learning rate x{1/3, 1, 3} and epochs x{1/2, 1} (whichever the method has); the
    method's own ``grid`` class attribute takes precedence."""
    impl = get_method(method)
    custom = getattr(impl, "grid", None)
    if custom:
        keys = list(custom)
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(custom[k] for k in keys))]
    defaults = preset(method, n_train)
    axes: dict[str, list] = {}
    if "lr" in defaults:
        lr = float(defaults["lr"])
        axes["lr"] = [lr / 3, lr, lr * 3]
    if "epochs" in defaults:
        epochs = int(defaults["epochs"])
        axes["epochs"] = sorted({max(1, epochs // 2), epochs})
    if not axes:
        return [{}]
    keys = list(axes)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(axes[k] for k in keys))]


@dataclass(frozen=True, eq=False)
class CompareResult:
    """Per-method rows (``rows[name]``: ua, ra, ta, mia_efficacy, mia_efficacy_se, avg_gap,
    seconds, speedup, params, notes) and the unlearned models, keyed by method. ``original``
    scores the original model itself (no unlearning) the same way: a method whose Avg. Gap is
    not below the original's has not moved the model closer to retraining."""

    rows: dict[str, dict[str, Any]]
    models: dict[str, UnlearnResult] = field(repr=False)
    forget_count: int = 0
    forgotten_class: int | None = None
    #: Methods that refused this request (e.g. ``unsir`` on a random one), with their sentence.
    skipped: dict[str, str] = field(default_factory=dict)
    #: The original model scored like a method (Avg. Gap of doing nothing); ``None`` if not run.
    original: dict[str, float] | None = None
    #: A second retrain with the next seed, scored against the first (``floor=True``): the Avg.
    #: Gap exact unlearning itself shows from run to run. ``None`` if not asked for.
    noise_floor: dict[str, Any] | None = None

    def to_dict(self) -> dict:
        return {
            "reference": "retrain",
            "forget_count": self.forget_count,
            "forgotten_class": self.forgotten_class,
            "metrics": "fractions in [0, 1]; avg_gap = mean |metric - retrain's| over ua, ra, ta, mia_efficacy",
            "methods": self.rows,
            "original": self.original,
            "noise_floor": self.noise_floor,
            "skipped": self.skipped,
        }

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(CSV_COLUMNS)
        for name, row in self.rows.items():
            writer.writerow([name, *(row[k] if k not in ("params", "notes") else json.dumps(row[k], sort_keys=True) for k in CSV_COLUMNS[1:])])
        return buf.getvalue()

    def write(self, out_dir: str | Path) -> Path:
        """Write ``compare.json`` and ``compare.csv``; returns the JSON's path."""
        from .case import atomic_write_text

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "compare.csv", self.to_csv())
        return atomic_write_text(out / "compare.json", json.dumps(self.to_dict(), indent=1, allow_nan=False))


def compare_run_job(job: dict, shared, ctx) -> dict:
    """One run of :func:`compare_methods` as an :func:`~mu_core.executor.run_jobs` job: unlearn
    ``job["method"]`` with ``job["setting"]`` for repeat ``k`` (the method's own seed, or retraining's
    recipe seed, moved by ``k``) from the original in ``shared["model"]``, then score it (UA, RA, TA,
    MIA-efficacy). Returns ``metrics``, ``seconds``, ``params``, ``record`` and the unlearned ``model``
    file's bytes, or ``skipped`` with the method's sentence when it refuses the request."""
    from .executor import pack_model, unpack_model

    model, record = unpack_model(shared["model"])
    data = Dataset(DatasetSpec.from_dict(job["dataset"]), shared["x_train"], shared["y_train"], shared["x_test"], shared["y_test"],
                   tuple(job["class_names"]))
    forget_idx = shared["forget"].numpy()
    retain_idx = np.setdiff1d(record.train_indices, forget_idx)
    method, setting, k = job["method"], dict(job["setting"]), int(job["k"])
    device = torch.device(ctx.device)

    def progress(fraction: float, message: str) -> None:
        ctx.progress(fraction, f"{job['label']}: {message}")

    try:
        if method == "retrain":
            seeded = record if k == 0 else record.with_updates(recipe={**record.recipe, "seed": int(job["recipe_seed"]) + k})
            result = unlearn(model, seeded, forget_idx, method=method, params=setting, dataset=data, progress=progress, device=device)
        else:
            if k:
                setting["seed"] = int(setting.get("seed", preset(method, len(record.train_indices))["seed"])) + k
            result = unlearn(model, record, forget_idx, method=method, params=setting, dataset=data, progress=progress, device=device)
    except AuditInputError as exc:
        if method == "retrain":
            raise
        return {"skipped": str(exc)}
    metrics = efficacy_metrics(result.model, data, retain_idx, forget_idx, forgotten_class=job["forgotten_class"], seed=int(job["seed"]),
                               device=device)
    return {"metrics": {key: float(v) for key, v in metrics.items()}, "seconds": float(result.seconds), "params": result.params,
            "model": pack_model(result.model, result.record)}


def _unlearn_result(outcome: dict, method: str) -> UnlearnResult:
    from .executor import unpack_model

    model, record = unpack_model(outcome["model"])
    return UnlearnResult(model, record, method, outcome["params"], outcome["seconds"])


def compare_methods(
    model: nn.Module,
    record: ModelRecord,
    forget_indices,
    methods: list[str],
    *,
    grid: bool = False,
    params: dict[str, dict[str, Any]] | None = None,
    dataset: Dataset | None = None,
    seed: int = 0,
    floor: bool = False,
    repeats: int = 1,
    progress: Progress | None = None,
    device: torch.device | str | None = None,
    executor=None,
) -> CompareResult:
    """Run ``retrain`` and each method on one request; score each against retraining.

    With ``grid`` each method runs over :func:`param_grid` and keeps the setting with the
    smallest Avg. Gap (the retrained model is the yardstick, as in the papers' tuning).
    ``params`` overrides a method's defaults (``{"neggrad": {"lr": 0.02}}``). A method that
    refuses the request (``unsir`` on a random one, ``sisa`` on a plain model) is listed in
    ``skipped`` with its reason; the others still run. With ``floor`` the original's recipe is
    retrained once more with the next unused seed and scored against the retrain row
    (``noise_floor``): gaps below it cannot be told from exact unlearning. With ``repeats`` > 1
    every method, retraining included, runs that many times with consecutive seeds (a method's
    ``seed`` parameter, retraining's recipe seed) and its metrics are the means, as papers
    average trials; ``avg_gap_sd`` is the spread of the single runs' gaps. The saved model is
    the first run's. Every run is a job of :func:`~mu_core.executor.run_jobs` (``executor``:
    ``inline``, ``ray`` or ``None`` for the setting in force), scored where it ran.
    """
    if record.arch == "ddpm":
        raise AuditInputError("compare scores classifiers (UA, RA, TA, MIA-efficacy); for a diffusion model unlearn and audit each method.")
    unknown = [m for m in methods if m not in list_methods("classifier")]
    if unknown:
        raise AuditInputError(f"Unknown method(s) {', '.join(unknown)}; choose from: {', '.join(list_methods('classifier'))}.")
    data = dataset or load_dataset(DatasetSpec.from_dict(record.dataset))
    forget_idx = validate_indices(forget_indices, record.train_indices, record.n_train_split)
    retain_idx = np.setdiff1d(record.train_indices, forget_idx)
    device = device if isinstance(device, torch.device) else pick_device(device)
    cls = whole_class(data.y_train.numpy(), forget_idx, retain_idx)
    ordered = ["retrain", *[m for m in dict.fromkeys(methods) if m != "retrain"]]
    runs = {m: (param_grid(m, len(record.train_indices)) if grid and m != "retrain" else [dict((params or {}).get(m, {}))]) for m in ordered}
    repeats = int(repeats)
    if repeats < 1:
        raise AuditInputError("repeats must be at least 1.")
    n_train = len(record.train_indices)
    # a method without a seed (SISA, and the deterministic one-shot ones if any) gives the same model every time
    reps = {m: repeats if m == "retrain" or "seed" in preset(m, n_train) else 1 for m in ordered}
    recipe_seed = int(record.recipe.get("seed", 0))
    base = {"dataset": data.spec.to_dict(), "class_names": list(data.class_names), "forgotten_class": cls, "seed": seed,
            "recipe_seed": recipe_seed}
    jobs = [{**base, "method": m, "setting": setting, "k": k, "label": m}
            for m in ordered for setting in runs[m] for k in range(reps[m])]
    if floor:
        jobs.append({**base, "method": "retrain", "setting": {}, "k": repeats, "label": "retrain with another seed"})
    from .executor import pack_model, run_jobs

    shared = {"model": pack_model(model, record), "forget": torch.from_numpy(forget_idx), "x_train": data.x_train,
              "y_train": data.y_train, "x_test": data.x_test, "y_test": data.y_test}
    outcomes = iter(run_jobs(compare_run_job, jobs, shared=shared, device=str(device), progress=progress, label="Compare run",
                               executor=executor))

    def score_model(scored: nn.Module) -> dict[str, float]:
        return efficacy_metrics(scored, data, retain_idx, forget_idx, forgotten_class=cls, seed=seed, device=device)

    rows: dict[str, dict[str, Any]] = {}
    models: dict[str, UnlearnResult] = {}
    skipped: dict[str, str] = {}
    reference: dict[str, float] = {}
    original: dict[str, float] | None = None
    retrain_seconds = 1.0
    for method in ordered:
        best: tuple[float, UnlearnResult, dict, float, list[dict]] | None = None
        for _setting in runs[method]:
            done = [next(outcomes) for _ in range(reps[method])]
            refused = next((o["skipped"] for o in done if "skipped" in o), None)
            if refused is not None or method in skipped:
                skipped.setdefault(method, refused)
                continue
            results = [_unlearn_result(o, method) for o in done]
            scores = [o["metrics"] for o in done]
            metrics = {k: float(np.mean([m[k] for m in scores])) for k in scores[0]}
            seconds = float(np.mean([r.seconds for r in results]))
            gap = 0.0 if method == "retrain" else avg_gap(metrics, reference)
            if best is None or gap < best[0]:
                best = (gap, results[0], metrics, seconds, scores)
        if best is None:
            continue
        gap, result, metrics, seconds, scores = best
        if method == "retrain":
            reference, retrain_seconds = metrics, max(seconds, 1e-9)
            untouched = score_model(model)
            original = {**{k: float(v) for k, v in untouched.items()}, "avg_gap": float(avg_gap(untouched, reference))}
        rows[method] = {
            **{k: float(metrics[k]) for k in (*METRIC_KEYS, "mia_efficacy_se")},
            "avg_gap": float(gap),
            "seconds": round(seconds, 3),
            "speedup": round(retrain_seconds / max(seconds, 1e-9), 2),
            "params": result.params,
            "notes": (result.record.unlearning or {}).get("notes", {}),
        }
        if len(scores) > 1:
            rows[method]["repeats"] = len(scores)
            rows[method]["avg_gap_sd"] = float(np.std([avg_gap(m, reference) for m in scores], ddof=1))
        models[method] = result
    noise_floor = None
    if floor:
        again = next(outcomes)
        metrics = again["metrics"]
        noise_floor = {**{k: float(v) for k, v in metrics.items()}, "avg_gap": float(avg_gap(metrics, reference)),
                       "seconds": round(float(again["seconds"]), 3), "seed": recipe_seed + repeats}
    report(progress, 1.0, "Comparison done")
    return CompareResult(rows, models, int(forget_idx.size), cls, skipped, original, noise_floor)
