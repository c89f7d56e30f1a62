"""Calibration of the verdict, measured: how often each answer comes out when the truth is known.

Per seed s, on an overfit setting (by default the digits ``mlp`` on 300 training samples for 100
epochs, 100 random samples forgotten): the original is trained with seed s on its own seeded
subset, the request is drawn with seed s, and K exact retrains (seeds s, s + 1, ...) form the
reference. Three models are then audited as "the unlearned model" against that reference:

- ``retrain``: an independent exact retrain (seed 10,000 + s, never among the reference's seeds).
  Exact unlearning: ``not_forgotten`` must come out at most alpha of the time.
- ``original``: the untouched original (fake unlearning): ``not_forgotten`` nearly always.
- weak approximate methods (default ``random_label`` and ``l1_sparse``, their default presets;
  ``finetune`` is no test here: on a model with zero training loss its gradients vanish and it
  returns the original almost unchanged).

The reference retrains are shared by the audits of one seed (they are the same reference a user
would have), and so are the reference models of attacks that need them (LiRA, RMIA: kept in a
temporary folder per seed); nothing is shared across seeds, so the seeds are independent repetitions.
``benchmarks/calibration.py`` prints the table for BENCHMARKS.md; a small seeded run is a test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .._types import Progress, report, sub_progress

__all__ = ["CalibrationResult", "calibrate"]

#: The seed offset of the independent retrain passed as the unlearned model.
INDEPENDENT_SEED = 10_000


@dataclass(frozen=True)
class CalibrationResult:
    """Per candidate (``retrain``, ``original``, each weak method): the verdict of every seed, in order."""

    seeds: list[int]
    verdicts: dict[str, list[str]]
    aucs: dict[str, list[float]] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0

    def counts(self, candidate: str) -> dict[str, int]:
        v = self.verdicts[candidate]
        return {k: v.count(k) for k in ("not_forgotten", "inconclusive", "forgotten")}

    def table(self) -> str:
        """A markdown table: per candidate, how many seeds gave each verdict."""
        n = len(self.seeds)
        lines = ["| unlearned model | not_forgotten | inconclusive | forgotten | mean AUC difference (loss) |", "| --- | --- | --- | --- | --- |"]
        for name in self.verdicts:
            c = self.counts(name)
            d = np.mean(self.aucs.get(name, [np.nan]))
            lines.append(f"| {name} | {c['not_forgotten']}/{n} | {c['inconclusive']}/{n} | {c['forgotten']}/{n} | {d:+.3f} |")
        return "\n".join(lines)


def calibrate(seeds, *, dataset: str = "digits", arch: str = "mlp", train_size: int = 300, epochs: int = 100, forget: int = 100,
              retrains: int = 4, weak: tuple[str, ...] = ("random_label", "l1_sparse"), attacks: list[str] | None = None,
              alpha: float = 0.05, margin: float = 0.1, bootstrap: int = 200, reference_models: int = 16, device: str = "cpu", progress: Progress | None = None) -> CalibrationResult:
    """Run the calibration over ``seeds`` (see the module doc); returns every verdict."""
    from ..data import load_dataset
    from ..forget import random_request
    from ..train import TrainConfig, default_config, fit_model
    from ..unlearn import unlearn
    from .report import run_audit
    from .retrains import train_retrains

    data = load_dataset(dataset)
    seeds = [int(s) for s in seeds]
    verdicts: dict[str, list[str]] = {"retrain": [], "original": [], **{name: [] for name in weak}}
    aucs: dict[str, list[float]] = {k: [] for k in verdicts}
    started = time.perf_counter()
    import tempfile

    for j, seed in enumerate(seeds):
        sub = sub_progress(progress, j / len(seeds), (j + 1) / len(seeds))
        report(sub, 0.0, f"Seed {seed}: training the original and {retrains} retrains")
        config = TrainConfig(**{**default_config(arch, train_size).to_dict(), "epochs": epochs, "seed": seed})
        model, record = fit_model(data, arch, config, train_size=train_size, device=device)
        request = random_request(record.train_indices, forget, seed=seed)
        reference = train_retrains(model, record, request.indices, retrains, dataset=data, device=device)
        independent = train_retrains(model, record.with_updates(recipe={**record.recipe, "seed": INDEPENDENT_SEED + seed}),
                                     request.indices, 1, dataset=data, device=device)[0]
        candidates = {"retrain": independent, "original": (model, record)}
        for name in weak:
            approx = unlearn(model, record, request.indices, method=name, dataset=data, device=device)
            candidates[name] = (approx.model, approx.record)
        with tempfile.TemporaryDirectory(prefix="mu_calibration_") as folder:
            for name, pair in candidates.items():
                report(sub, 0.5, f"Seed {seed}: auditing the {name} model")
                models = {"original": (model, record), "unlearned": pair, "retrained": reference[0]}
                out = run_audit(models, request.indices, attacks=attacks, seed=seed, dataset=data, more_retrained=reference[1:],
                                alpha=alpha, margin=margin, bootstrap=bootstrap, reference_models=reference_models,
                                reference_dir=folder, device=device).data
                verdicts[name].append(out["verdict"])
                detail = out["verdict_detail"].get("loss") or next(iter(out["verdict_detail"].values()), {})
                aucs[name].append(float(detail.get("auc_difference", np.nan)))
    settings = {"dataset": dataset, "arch": arch, "train_size": train_size, "epochs": epochs, "forget": forget, "retrains": retrains,
                "weak": list(weak), "attacks": attacks, "alpha": alpha, "margin": margin,
                "bootstrap": bootstrap}
    return CalibrationResult(seeds, verdicts, aucs, settings, round(time.perf_counter() - started, 1))
