"""Purge: delete a case and everything derived from it, then append a receipt without data.

Deleted: the case folder (models, forget request, references, retrains, reconstructions, neuron
results, audit, log), the reports its trail says were written elsewhere (only the files
``report`` writes, in the folders it recorded), and an image-folder zip's extracted copy under
``MU_AUDIT_HOME/datasets/`` when no other case uses that zip. The receipt in
``MU_AUDIT_HOME/purge-log.jsonl`` (itself hash-chained) names the case id, each deleted file's
path relative to its folder, size and SHA-256, and the time: no names, indices or pixels.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..case import LOG_FILE, Case, CaseStore, append_chained, check_chain
from . import evidence as ev

__all__ = ["PURGE_LOG", "purge_case"]

PURGE_LOG = "purge-log.jsonl"
#: The file in which the app remembers the last case opened (``pages/_lib/ui.py``).
LAST_CASE = "last_case"


def _files(root: Path) -> list[dict]:
    return [{"path": p.relative_to(root).as_posix(), "bytes": p.stat().st_size, "sha256": ev.sha256_file(p)}
            for p in sorted(root.rglob("*")) if p.is_file()]


def _report_outputs(case: Case) -> list[Path]:
    """The files ``report`` wrote outside the case, in the folders the case's trail names."""
    from .build import OUTPUT_FILES

    log = case.path(LOG_FILE)
    folders = []
    if log.is_file():
        for line in log.read_bytes().splitlines():
            try:
                entry = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if entry.get("action") == "report" and entry.get("details", {}).get("out"):
                folders.append(Path(entry["details"]["out"]))
    inside = case.dir.resolve()
    return [folder / name for folder in dict.fromkeys(folders) if not folder.resolve().is_relative_to(inside)
            for name in OUTPUT_FILES if (folder / name).is_file()]


def _extracted_dataset(store: CaseStore, case: Case) -> Path | None:
    """The unpacked copy of the case's image-folder zip, unless another case uses the same zip."""
    spec = case.manifest.get("dataset") or {}
    root = spec.get("root")
    if spec.get("name") != "imagefolder" or not root or not str(root).lower().endswith(".zip") or not Path(root).is_file():
        return None
    others = [c for c in store.list() if c.id != case.id and (c.manifest.get("dataset") or {}).get("root") == root]
    if others:
        return None
    folder = store.home / "datasets" / ev.sha256_file(root)[:16]
    return folder if folder.is_dir() else None


def purge_case(case_id: str, store: CaseStore | None = None) -> dict:
    """Delete case ``case_id`` and everything derived from it; returns the receipt appended to
    ``purge-log.jsonl``."""
    store = store or CaseStore()
    case = store.get(case_id)
    trail = case.log("purge")
    _, head = check_chain(case.path(LOG_FILE).read_bytes())
    deleted = {"case": _files(case.dir)}
    outside = _report_outputs(case)
    deleted["reports"] = [{"path": p.name, "folder_sha256": ev.sha256_bytes(str(p.parent).encode()), "bytes": p.stat().st_size,
                           "sha256": ev.sha256_file(p)} for p in outside]
    extracted = _extracted_dataset(store, case)
    deleted["extracted_dataset"] = _files(extracted) if extracted else []
    for path in outside:
        path.unlink(missing_ok=True)
    for folder in {p.parent for p in outside}:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    if extracted:
        shutil.rmtree(extracted, ignore_errors=True)
    store.delete(case.id)
    last = store.home / LAST_CASE  # the app's pointer to the last case opened
    if last.is_file() and last.read_text(encoding="utf-8", errors="replace").strip() == case.id:
        last.unlink()
    counts = {k: len(v) for k, v in deleted.items()}
    return append_chained(store.home / PURGE_LOG, "purge", case=case.id, trail_head=head, trail_entries=trail["seq"] + 1,
                          deleted=deleted, counts=counts)
