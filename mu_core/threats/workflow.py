"""The Threats lab on a case: what the Threats page calls (the same engine as the CLI).

Results live in the case's ``threats/`` folder (``threats/<name>/threat.json``,
``threats/screen/screen.json``) and in the ``threats`` entry of ``case.json``, together with
the SHA-256 of the original model (and, for screening, of the forget request) they were made
from; results made from an older model or request are not returned.
"""

from __future__ import annotations

import json

from .._types import Progress
from ..case import Case

__all__ = ["THREATS_DIR", "case_screen", "case_screen_result", "case_threat", "case_threat_results"]

THREATS_DIR = "threats"


def _original_sha(case: Case) -> str:
    return case.entry("original")["sha256"]


def _forget_sha(case: Case) -> str:
    from ..models import sha256_file

    return sha256_file(case.file("forget"))


def _record(case: Case, key: str, relative: str, extra: dict | None = None) -> None:
    entry = dict(case.entry("threats") or {"file": THREATS_DIR, "runs": {}})
    entry.setdefault("runs", {})[key] = {"file": relative, "original_sha256": _original_sha(case), **(extra or {})}
    case.set_entry("threats", entry)


def case_threat(case: Case, name: str, params: dict | list[str] | None = None, *, progress: Progress | None = None) -> dict:
    """Run threat ``name`` against the case's original model; keep and return its ``threat.json``."""
    from ..workflow import load_case_model
    from . import THREAT_FILE, run_threat

    model, record = load_case_model(case, "original")
    result = run_threat(name, model, record, params=params, progress=progress)
    result.write(case.path(THREATS_DIR, name))
    _record(case, name, f"{THREATS_DIR}/{name}/{THREAT_FILE}")
    return result.to_dict()


def case_screen(case: Case, method: str = "neggrad", *, progress: Progress | None = None, **options) -> dict:
    """Screen the case's forget request against its original model with ``method``'s dry run
    (:func:`mu_core.threats.screen.screen_request`); keep and return ``screen.json``."""
    from ..workflow import case_forget_request, load_case_model
    from .screen import SCREEN_FILE, screen_request

    model, record = load_case_model(case, "original")
    request = case_forget_request(case)
    result = screen_request(model, record, request.indices, method=method, progress=progress, **options)
    result.write(case.path(THREATS_DIR, "screen"))
    _record(case, "screen", f"{THREATS_DIR}/screen/{SCREEN_FILE}", {"forget_sha256": _forget_sha(case)})
    return result.to_dict()


def _read(case: Case, run: dict) -> dict | None:
    path = case.path(run["file"])
    if not path.is_file() or case.entry("original") is None or run.get("original_sha256") != _original_sha(case):
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def case_threat_results(case: Case) -> dict[str, dict]:
    """Every threat result kept in the case for its current original model, by threat name."""
    runs = (case.entry("threats") or {}).get("runs", {})
    out = {name: _read(case, run) for name, run in runs.items() if name != "screen"}
    return {name: data for name, data in out.items() if data is not None}


def case_screen_result(case: Case) -> dict | None:
    """The screening kept in the case, if it was made for the current model and forget request."""
    run = (case.entry("threats") or {}).get("runs", {}).get("screen")
    if run is None or case.file("forget") is None or run.get("forget_sha256") != _forget_sha(case):
        return None
    return _read(case, run)
