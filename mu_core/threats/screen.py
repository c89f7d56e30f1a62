"""Request screening: check an unlearning request before running it.

Three checks, and a decision: ``reject`` when the request holds a sample that was never trained
on, ``review`` when another check fails, else ``accept``.

- ``training_samples``: every requested index is in the model's training set, and any submitted
  content is that training sample exactly (a perturbed copy is not one; Huang et al. 2024,
  *Unlearn and Burn*, attack with such copies).
- ``gradient_influence``: the defense of Qian et al. (KDD 2023, seed ``000``): the request's
  gradient influence on the model, here the first-order change of each probe sample's loss when
  the request is unlearned by gradient ascent (``grad L(probe)·sum grad L(request)``, over all
  parameters). Three statistics: the share of the harm on the top 1% of probes (a few samples),
  on the most harmed class (one class, class sizes evened out), and the log of the mean harm.
  Each is z-scored against random requests of the same size from the training set; the score
  is the largest z, flagged above ``threshold``. Deviations: the paper estimates influence on
  the unlearned model with influence functions; this uses the identity Hessian and the model
  before unlearning, and the test split (up to ``probes`` samples) as the probes.
- ``dry_run``: the method runs on a copy; flagged when test accuracy drops by more than
  ``tolerance``.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._types import Progress, report
from ..errors import AuditInputError
from ._common import directional_losses, loss_gradient, provider_unlearn, with_samples

__all__ = ["CHECKS", "DECISIONS", "SCREEN_FILE", "ScreenCheck", "ScreenResult", "influence_score", "read_samples", "screen_request"]

CHECKS = ("training_samples", "gradient_influence", "dry_run")
DECISIONS = ("accept", "review", "reject")
SCREEN_FILE = "screen.json"
#: Largest ``--samples`` file read (bytes).
MAX_SAMPLES_BYTES = 512 * 1024**2


@dataclass(frozen=True)
class ScreenCheck:
    """One check: its name, whether the request passed it, what was found, and a score."""

    name: str
    passed: bool
    detail: str
    score: float | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "passed": self.passed, "detail": self.detail, "score": self.score}


@dataclass(frozen=True)
class ScreenResult:
    """The decision (``accept`` | ``review`` | ``reject``) and the checks behind it."""

    decision: str
    checks: tuple[ScreenCheck, ...]
    settings: dict
    seconds: float
    numbers: dict = field(default_factory=dict)

    def check(self, name: str) -> ScreenCheck:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict:
        return {"decision": self.decision, "checks": [c.to_dict() for c in self.checks], "settings": self.settings,
                "numbers": self.numbers, "seconds": round(self.seconds, 3)}

    def write(self, out_dir: str | Path) -> Path:
        """Write ``screen.json`` into ``out_dir``; returns its path."""
        from ..case import atomic_write_text

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(out / SCREEN_FILE, json.dumps(self.to_dict(), indent=1, allow_nan=False))


def read_samples(path: str | Path) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """A request with content from an ``.npz`` file (no pickles): ``index`` (the training indices
    claimed), ``x`` (n, C, H, W in [0, 1]) and ``y`` (n labels)."""
    path = Path(path)
    if not path.is_file():
        raise AuditInputError(f"Samples file '{path}' does not exist.")
    if path.stat().st_size > MAX_SAMPLES_BYTES:
        raise AuditInputError(f"'{path.name}' is larger than {MAX_SAMPLES_BYTES // 1024**2} MiB; screen fewer samples at once.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            index, x, y = npz["index"], npz["x"], npz["y"]
    except (OSError, ValueError, KeyError):
        raise AuditInputError(f"'{path.name}' is not an .npz file with arrays 'index', 'x' and 'y'.") from None
    if x.ndim != 4 or index.ndim != 1 or y.ndim != 1 or not len(index) == len(x) == len(y):
        raise AuditInputError(f"'{path.name}' must hold index (n), x (n, C, H, W) and y (n) for the same n samples.")
    if not (np.issubdtype(index.dtype, np.integer) and np.issubdtype(y.dtype, np.integer)):
        raise AuditInputError(f"'{path.name}': 'index' and 'y' must be whole numbers.")
    return index.astype(np.int64), torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))


def _content_check(data, record, index: np.ndarray, samples: tuple[torch.Tensor, torch.Tensor] | None) -> ScreenCheck:
    n = len(index)
    in_range = (index >= 0) & (index < record.n_train_split)
    trained = in_range & np.isin(index, record.train_indices)
    problems = []
    bad_count = int((~trained).sum())
    if not trained.all():
        bad = index[~trained][:5]
        problems.append(f"{int((~trained).sum())} of {n} requested indices were never trained on (e.g. {', '.join(map(str, bad))})")
    if samples is not None:
        x, y = samples
        safe = torch.from_numpy(np.where(in_range, index, 0))
        same = (x - data.x_train[safe]).flatten(1).abs().amax(1) <= 1e-6
        same &= y == data.y_train[safe]
        differs = torch.from_numpy(trained) & ~same
        if differs.any():
            gap = float((x - data.x_train[safe]).flatten(1).abs().amax(1)[differs].max())
            bad_count += int(differs.sum())
            problems.append(f"{int(differs.sum())} of {n} submitted samples differ from the training sample at their index "
                            f"(largest pixel difference {gap:.3f}, or another label): they are not training samples")
    if problems:
        return ScreenCheck("training_samples", False, "; ".join(problems) + ".", float(bad_count))
    return ScreenCheck("training_samples", True, f"All {n} requested samples are training samples" + (" (index and content)." if samples is not None else " (by index)."), 0.0)


def _harm(model, x: torch.Tensor, y: torch.Tensor, probe_x: torch.Tensor, probe_y: np.ndarray, device) -> np.ndarray:
    """Per probe, the first-order rise of its loss when the request ``(x, y)`` is unlearned by
    gradient ascent."""
    return directional_losses(model, probe_x, torch.from_numpy(probe_y), loss_gradient(model, x, y, device), device)


def _raw_stats(harm: np.ndarray, null: np.ndarray, probe_y: np.ndarray, num_classes: int) -> dict:
    """The request's harm against the null requests' (rows of ``null``): the largest per-probe
    z-score (a few samples), the largest per-class z-score (one class), the z-score of the total."""
    mean, spread = null.mean(0), null.std(0, ddof=1)
    spread = np.maximum(spread, 1e-3 * spread.mean() + 1e-12)
    probe_z = (harm - mean) / spread
    onehot = probe_y[None, :] == np.arange(num_classes)[:, None]
    class_null, class_harm = null @ onehot.T, onehot @ harm
    class_z = (class_harm - class_null.mean(0)) / np.maximum(class_null.std(0, ddof=1), 1e-12)
    totals = np.log(np.clip(null, 0, None).sum(1) + 1e-12)  # a sum of heavy-tailed harms: compared on a log scale
    total_z = (np.log(np.clip(harm, 0, None).sum() + 1e-12) - totals.mean()) / max(totals.std(ddof=1), 1e-12)
    return {"probe": float(probe_z.max()), "class": float(class_z.max()), "total": float(total_z),
            "most_harmed_probe": int(probe_z.argmax()), "most_harmed_class": int(class_z.argmax())}


def _probes(data, probes: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(data.n_test, size=min(probes, data.n_test), replace=False))
    return data.x_test[torch.from_numpy(idx)], data.y_test.numpy()[idx]


def influence_score(model, record, data, x: torch.Tensor, y: torch.Tensor, *, null_requests: int = 20, probes: int = 2000, seed: int = 0,
                    device=None, null: np.ndarray | None = None) -> tuple[float, dict, np.ndarray]:
    """The ``gradient_influence`` score of the request ``(x, y)``.

    Each probe's harm (:func:`_harm`) is compared with its harm under ``null_requests`` random
    requests of the same size from the training set (or the given ``null`` harm matrix): the
    largest per-probe z-score, the largest per-class z-score and the z-score of the total's log. The two
    maxima are calibrated by the same statistics of each null request against the others
    (leave-one-out), so that taking a maximum over many probes or classes does not pass for an
    anomaly. The score is the largest of the three calibrated z-scores. Returns the score, the
    statistics and the null harm matrix (for reuse on requests of the same size)."""
    probe_x, probe_y = _probes(data, probes, seed)
    if null is None:
        rng = np.random.default_rng(seed + 7)
        null = np.stack([_harm(model, data.x_train[idx], data.y_train[idx], probe_x, probe_y, device)
                         for idx in (torch.from_numpy(rng.choice(record.train_indices, size=min(len(x), len(record.train_indices)), replace=False))
                                     for _ in range(null_requests))])
    if len(null) < 3:
        raise AuditInputError("Screening compares a request with at least 3 random requests.")
    raw = _raw_stats(_harm(model, x, y, probe_x, probe_y, device), null, probe_y, data.num_classes)
    loo = [_raw_stats(null[j], np.delete(null, j, axis=0), probe_y, data.num_classes) for j in range(len(null))]
    z = {}
    for key in ("probe", "class"):
        values = np.array([s[key] for s in loo])
        z[key] = float((raw[key] - values.mean()) / max(values.std(ddof=1), 1e-12))
    z["total"] = raw["total"]
    return max(z.values()), {**raw, "z": z}, null


def screen_request(
    model,
    record,
    indices=None,
    *,
    samples: tuple[torch.Tensor, torch.Tensor] | None = None,
    method: str = "neggrad",
    dataset=None,
    tolerance: float = 0.05,
    threshold: float = 3.0,
    null_requests: int = 20,
    probes: int = 2000,
    seed: int = 0,
    progress: Progress | None = None,
    device=None,
) -> ScreenResult:
    """Screen the unlearning request ``indices`` (training-split indices claimed by the
    requester) for ``model``, with the submitted content ``samples = (x, y)`` when the request
    carries it (one sample per index, in the same order). ``method`` is the unlearning method the
    dry run uses. See the module docstring for the checks."""
    from ..data import DatasetSpec, load_dataset
    from ..device import pick_device
    from ..train import accuracy
    from ..unlearn import get_method

    started = time.perf_counter()
    get_method(method)
    data = dataset or load_dataset(DatasetSpec.from_dict(record.dataset))
    device = pick_device(device) if not hasattr(device, "type") else device
    if indices is None:
        raise AuditInputError("A request names the training indices it asks to forget.")
    index = np.asarray(indices, dtype=np.int64).reshape(-1)
    if index.size == 0:
        raise AuditInputError("The request is empty: it names no sample to forget.")
    if index.size > record.n_train_split:
        raise AuditInputError(f"The request names {index.size} samples, more than the {record.n_train_split} of the training split.")
    if samples is not None:
        x, y = samples
        if len(x) != index.size or len(y) != index.size:
            raise AuditInputError("The submitted samples and the requested indices differ in number; give one sample per index.")
        if tuple(x.shape[1:]) != tuple(data.in_shape):
            raise AuditInputError(f"The submitted samples have shape {tuple(x.shape[1:])}; this model takes {tuple(data.in_shape)}.")
    if not 0 < tolerance < 1:
        raise AuditInputError("The accuracy tolerance must be between 0 and 1, e.g. 0.05.")
    if null_requests < 3 or probes < 10:
        raise AuditInputError("Screening needs at least 3 random requests to compare with and 10 probe samples.")
    model = copy.deepcopy(model).to(device).eval()

    report(progress, 0.0, "Checking the requested samples")
    content = _content_check(data, record, index, samples)
    trained = bool(np.isin(index, record.train_indices).all()) and bool((index < record.n_train_split).all())
    if samples is None and not trained:
        x = y = None
    elif samples is None:
        x, y = data.x_train[torch.from_numpy(index)], data.y_train[torch.from_numpy(index)]
    else:
        x, y = samples

    report(progress, 0.1, "Gradient influence against random requests")
    if x is None:
        influence = ScreenCheck("gradient_influence", False, "Not run: the request names samples the model was never trained on, so there "
                                "is no content to measure.")
        stats: dict = {}
    else:
        score, stats, _ = influence_score(model, record, data, x, y, null_requests=null_requests, probes=probes, seed=seed, device=device)
        worst = max(stats["z"], key=stats["z"].get)
        words = {"probe": "its harm concentrates on a few samples", "class": "its harm concentrates on class "
                 f"{data.class_names[stats['most_harmed_class']]}", "total": "it harms the model far more than random requests"}
        detail = (f"Against {null_requests} random requests of the same size, on {min(probes, data.n_test)} test samples: z-scores "
                  f"{stats['z']['probe']:.1f} (most harmed sample), {stats['z']['class']:.1f} (most harmed class), "
                  f"{stats['z']['total']:.1f} (total harm).")
        passed = score <= threshold
        influence = ScreenCheck("gradient_influence", passed, detail + ("" if passed else f" Flagged: {words[worst]}."), score)

    report(progress, 0.5, f"Dry run of {method} on a copy")
    before = accuracy(model, data.x_test, data.y_test, device=device)
    if x is None:
        dry = ScreenCheck("dry_run", False, "Not run: the method cannot unlearn samples the model was never trained on.")
        after = None
    else:
        if samples is not None and not content.passed:
            run_data, run_record, run_idx = with_samples(data, record, x, y)
        else:
            run_data, run_record, run_idx = data, record, np.unique(index)
        unlearned = provider_unlearn(model, run_record, run_data, run_idx, method, device=device, seed=seed)
        after = accuracy(unlearned, data.x_test, data.y_test, device=device)
        drop = before - after
        passed = drop <= tolerance
        dry = ScreenCheck("dry_run", passed, f"{method} on a copy: test accuracy {before:.1%} -> {after:.1%} "
                          f"({'-' if drop >= 0 else '+'}{abs(drop):.1%}; tolerance {tolerance:.0%})" + ("." if passed else ": flagged."), drop)
    checks = (content, influence, dry)
    decision = "reject" if not content.passed else ("accept" if all(c.passed for c in checks) else "review")
    settings = {"method": method, "tolerance": tolerance, "threshold": threshold, "null_requests": null_requests, "probes": probes,
                "seed": seed, "requested": int(index.size), "with_content": samples is not None, "model": record.summary()}
    numbers = {"test_acc_before": before, "test_acc_after_dry_run": after, "influence": stats}
    return ScreenResult(decision, checks, settings, time.perf_counter() - started, numbers)
