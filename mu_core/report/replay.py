"""Replay a bundle: re-run the recorded audit from the bundle's models, request and settings and
compare every number with the recorded report.

The bundle is verified first (a replay of altered files proves nothing), its dataset split is
checked against the recorded digest, and reference models come from the bundle when it has them
(else they are retrained with the recorded recipe and seeds). Numbers compared: every number and
string of ``report.json`` except times, durations and file paths, and every per-sample score in
``scores.csv``. On the same machine the replay is identical (difference 0).
"""

from __future__ import annotations

import csv
import inspect
import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .._types import Progress, report
from ..errors import AuditInputError
from . import evidence as ev

__all__ = ["ReplayResult", "compare_reports", "replay_bundle"]

#: Keys whose values differ between runs by nature: times, durations, paths, the machine.
VOLATILE = frozenset({"created", "attack_seconds", "train_seconds", "seconds", "file", "device", "versions"})


@dataclass(frozen=True)
class ReplayResult:
    """The largest absolute difference of any number (``where`` names it), values that differ
    other than numbers, and the replayed report's path."""

    identical: bool
    max_difference: float
    where: str | None
    compared: int
    mismatches: list[str] = field(default_factory=list)
    report: Path | None = None

    def summary(self) -> str:
        where = f" (at {self.where})" if self.where else ""
        head = "identical" if self.identical else "DIFFERENT"
        extra = f"; {len(self.mismatches)} value(s) differ, first: {self.mismatches[0]}" if self.mismatches else ""
        return f"replay {head}: {self.compared:,} numbers compared, largest difference {self.max_difference:.3g}{where}{extra}"


def _leaves(obj, path: str = "") -> Iterator[tuple[str, object]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key not in VOLATILE:
                yield from _leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _leaves(value, f"{path}[{i}]")
    else:
        yield path, obj


def compare_reports(recorded: dict, replayed: dict, recorded_scores: str = "", replayed_scores: str = "") -> ReplayResult:
    """Compare two audit reports (and their ``scores.csv`` texts) number by number."""
    a, b = dict(_leaves(recorded)), dict(_leaves(replayed))
    max_diff, where, compared, mismatches = 0.0, None, 0, []
    for key in sorted(a.keys() | b.keys()):
        if key not in a or key not in b:
            mismatches.append(f"{key} only in the {'recorded' if key in a else 'replayed'} report")
            continue
        x, y = a[key], b[key]
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool) and not isinstance(y, bool):
            compared += 1
            diff = abs(float(x) - float(y)) if math.isfinite(float(x)) and math.isfinite(float(y)) else (0.0 if x == y else math.inf)
            if diff > max_diff:
                max_diff, where = diff, key
        elif x != y:
            mismatches.append(f"{key}: {x!r} recorded, {y!r} replayed")
    rows_a, rows_b = list(csv.reader(recorded_scores.splitlines())), list(csv.reader(replayed_scores.splitlines()))
    if len(rows_a) != len(rows_b):
        mismatches.append(f"scores.csv has {len(rows_a)} rows recorded, {len(rows_b)} replayed")
    for i, (ra, rb) in enumerate(zip(rows_a[1:], rows_b[1:], strict=False), start=2):
        if ra[:-1] != rb[:-1]:
            mismatches.append(f"scores.csv row {i}: {ra[:-1]} recorded, {rb[:-1]} replayed")
            continue
        compared += 1
        diff = abs(float(ra[-1]) - float(rb[-1])) if ra[-1] != rb[-1] else 0.0
        if diff > max_diff or (math.isnan(diff) and max_diff == 0):
            max_diff, where = diff, f"scores.csv row {i}"
    return ReplayResult(max_diff == 0 and not mismatches, max_diff, where, compared, mismatches[:50])


def _extract(bundle: Path, dest: Path) -> None:
    """Extract a verified bundle; every member must land inside ``dest``."""
    with ev.open_bundle(bundle) as archive:
        for info in archive.infolist():
            target = (dest / info.filename).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise AuditInputError(f"The bundle holds a path outside its folder ('{info.filename}').")
        archive.extractall(dest)


def replay_bundle(bundle: str | Path, out: str | Path, *, public_key: str | Path | None = None, device: str | None = None,
                  progress: Progress | None = None) -> ReplayResult:
    """Re-run the audit a bundle records into ``out`` (``out/bundle/``: the extracted bundle,
    ``out/audit/``: the replayed report) and compare it with the recorded one."""
    from ..audit.report import run_audit
    from ..forget import read_request
    from ..models import load_model
    from .build import dataset_digest

    bundle, out = Path(bundle), Path(out)
    result = ev.verify_bundle(bundle, public_key)
    if not result.ok:
        raise AuditInputError(f"The bundle does not verify ({result.message}); a replay of it would prove nothing.")
    report(progress, 0.02, "Extracting the bundle")
    files = out / "bundle"
    shutil.rmtree(files, ignore_errors=True)
    files.mkdir(parents=True)
    _extract(bundle, files)
    evidence = json.loads((files / "evidence.json").read_text(encoding="utf-8"))
    if evidence.get("redacted"):
        raise AuditInputError("This bundle is redacted: it holds no models or forget request, so it cannot be replayed; replay the full bundle.")
    recorded = json.loads((files / "audit" / "report.json").read_text(encoding="utf-8"))
    digest = dataset_digest(evidence["dataset"]["spec"])
    if digest["split_sha256"] != evidence["dataset"]["split_sha256"]:
        raise AuditInputError(f"The dataset '{digest['spec']['name']}' on this machine differs from the one the audit used "
                              "(its split digest does not match); the replay would not be the same audit.")
    settings = evidence["audit"]["settings"]
    models = {role: load_model(files / info["file"]) for role, info in evidence["models"].items() if info.get("file")}
    request = read_request(files / "forget.json")
    references = out / "references"
    shutil.rmtree(references, ignore_errors=True)
    if (files / "references").is_dir():
        shutil.copytree(files / "references", references)
    report(progress, 0.05, "Re-running the audit")
    sub = None if progress is None else (lambda f, m: progress(0.05 + 0.9 * f, m))
    extra = {}
    if settings.get("retrains") and "retrains" in inspect.signature(run_audit).parameters:
        extra["retrains"] = settings["retrains"]  # audits with several exact retrains (kept with the reference models)
    replayed = run_audit(models, request.indices, attacks=settings["attacks"], seed=settings["seed"], **extra,
                         model_files={role: files / info["file"] for role, info in evidence["models"].items() if info.get("file")},
                         reference_models=settings["reference_models"], reference_dir=references, method=settings.get("method"),
                         method_params=settings.get("method_params"), margin=settings["margin"], alpha=settings["alpha"],
                         bootstrap=settings["bootstrap"], device=device or settings.get("device") or "cpu", progress=sub)
    path = replayed.write(out / "audit")
    scores = files / "audit" / "scores.csv"
    outcome = compare_reports(recorded, replayed.data, scores.read_text() if scores.is_file() else "",
                              replayed.scores_csv() if scores.is_file() else "")
    report(progress, 1.0, "Replay done")
    return ReplayResult(outcome.identical, outcome.max_difference, outcome.where, outcome.compared, outcome.mismatches, path)
