"""The teaching demo: one case where the audit has power, a weak approximate method it catches,
and an exact retrain it clears.

The setting (:data:`DEMO`): the digits ``mlp`` trained on 300 samples for 100 epochs (it overfits:
train accuracy 100%, test about 94%), 100 random training samples to forget, ``neggrad`` with its
default preset as the weak method (it leaves forget accuracy at 100%), the exact retrain, and the
verdict's reference of 4 exact retrains. Two audits with the default attacks: the weak method
(``audit/report.json``, expected ``not_forgotten``) and the retrain audited as if it were the
unlearned model (``audit-retrain/report.json``, expected ``forgotten``; its reference are four
*other* retrains, so it is not compared with itself). Both report the power the audit has.

The home page's **Try the demo** (:func:`mu_core.workflow.make_demo_case`) and
``python -m mu_core demo --out DIR`` build this same case: the case folder and ``DIR`` hold the
same files (models, ``forget.json``, ``audit/``, ``audit-retrain/``, ``references/retrains/``).
"""

from __future__ import annotations

import time
from pathlib import Path

from ._types import Progress, report, sub_progress
from .case import Case
from .workflow import DEMO_FORGET_SIZE

__all__ = ["DEMO", "RETRAIN_AUDIT", "build_demo", "demo_lines", "run_demo"]

DEMO = {"dataset": "digits", "arch": "mlp", "train_size": 300, "epochs": 100, "forget": DEMO_FORGET_SIZE, "seed": 0, "method": "neggrad",
        "retrains": 4}
#: The folder of the retrain's audit, beside the case's ``audit/``.
RETRAIN_AUDIT = "audit-retrain"


def build_demo(case: Case, *, progress: Progress | None = None) -> dict:
    """Fill ``case`` with the demo (see the module doc); returns both verdicts, their reasons and the seconds
    taken (wall clock and this process's CPU time)."""
    from .audit.report import run_audit
    from .forget import random_request
    from .models.io import read_record
    from .workflow import (
        case_audit,
        case_forget_request,
        case_retrain,
        case_set_forget,
        case_train,
        case_unlearn,
        load_case_model,
    )

    wall, cpu = time.perf_counter(), time.process_time()
    case_train(case, DEMO["dataset"], DEMO["arch"], epochs=DEMO["epochs"], seed=DEMO["seed"], train_size=DEMO["train_size"],
               progress=sub_progress(progress, 0.0, 0.1))
    record = read_record(case.file("original"))
    assert record is not None
    case_set_forget(case, random_request(record.train_indices, DEMO["forget"], seed=DEMO["seed"]))
    case_retrain(case, progress=sub_progress(progress, 0.1, 0.2))
    case_unlearn(case, DEMO["method"], progress=sub_progress(progress, 0.2, 0.3))
    weak = case_audit(case, retrains=DEMO["retrains"], progress=sub_progress(progress, 0.3, 0.65))
    report(progress, 0.65, "Auditing the retrain the same way")
    models = {"original": load_case_model(case, "original"), "unlearned": load_case_model(case, "retrained")}
    files = {"original": case.file("original"), "unlearned": case.file("retrained")}
    exact = run_audit(models, case_forget_request(case).indices, model_files=files, retrains=DEMO["retrains"],
                      reference_dir=case.path("references"), progress=sub_progress(progress, 0.65, 1.0))
    exact.write(case.path(RETRAIN_AUDIT))
    seconds = {"wall": round(time.perf_counter() - wall, 1), "cpu": round(time.process_time() - cpu, 1)}
    summary = {"weak_method": DEMO["method"], "weak_verdict": weak["verdict"], "weak_reason": weak["verdict_reason"],
               "retrain_verdict": exact.data["verdict"], "retrain_reason": exact.data["verdict_reason"],
               "unlearned_sha256": (case.entry("unlearned") or {}).get("sha256"), "seconds": seconds, "settings": DEMO}
    case.update(demo=summary)
    return summary


def demo_lines(summary: dict, folder: Path) -> list[str]:
    """What ``python -m mu_core demo`` prints: both verdicts, where the reports are, and the time."""
    return [
        f"weak method ({summary['weak_method']}): {summary['weak_verdict']}. {summary['weak_reason']}",
        f"exact retrain: {summary['retrain_verdict']}. {summary['retrain_reason']}",
        f"reports: {folder / 'audit' / 'report.json'} and {folder / RETRAIN_AUDIT / 'report.json'}",
        f"time: {summary['seconds']['wall']:.1f} s wall clock, {summary['seconds']['cpu']:.1f} s CPU",
    ]


def run_demo(folder: str | Path, *, progress: Progress | None = None) -> dict:
    """Build the demo in ``folder`` (a case folder of its own: ``case.json`` and the same files as the
    app's demo case); refuses a folder that already holds files."""
    from .case import MANIFEST, atomic_write_json
    from .errors import AuditInputError

    out = Path(folder)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AuditInputError(f"--out must be a new or empty folder: '{folder}' already holds files.")
    out.mkdir(parents=True, exist_ok=True)
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    atomic_write_json(out / MANIFEST, {"id": out.name, "name": "Digits demo", "created": now, "updated": now})
    return build_demo(Case(out), progress=progress)
