"""Audit cases on disk: a folder per case under ``MU_AUDIT_HOME/cases/<id>/``.

A case holds the dataset spec, model files, the forget request and results, described by
``case.json``. Every write is atomic (a temporary file, then a rename), so a crash never leaves
a half-written file. This module does not import torch, so listing cases is fast.

>>> store = CaseStore(tmp_home)                      # doctest: +SKIP
>>> case = store.create("digits demo")               # doctest: +SKIP
>>> [c.name for c in store.list()]                   # doctest: +SKIP
['digits demo']
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import AuditInputError

try:
    import fcntl
except ImportError:  # Windows: the in-process lock only
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOG_FILE",
    "MAX_NAME_CHARS",
    "Case",
    "CaseStore",
    "append_chained",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "audit_home",
    "check_chain",
    "clean_name",
    "redact_chain",
]

MANIFEST = "case.json"
#: The case's audit trail: one JSON object per line, each carrying the hash of the line before.
LOG_FILE = "log.jsonl"
#: The ``prev`` of a trail's first entry.
CHAIN_START = "0" * 64
_ID_PATTERN = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
_LOCK = threading.RLock()

#: What depends on what: replacing a key invalidates the keys listed for it.
_DOWNSTREAM = {
    "original": ("forget", "unlearned", "retrained", "audit", "compare", "references", "inversion", "defenses", "neurons", "threats"),
    "forget": ("unlearned", "retrained", "audit", "compare", "inversion", "defenses", "neurons", "threats"),
    "unlearned": ("audit", "inversion", "defenses", "neurons"),
    "retrained": ("audit", "neurons"),
}


def audit_home() -> Path:
    """``MU_AUDIT_HOME`` if set, else ``~/.mu_audit``."""
    return Path(os.environ.get("MU_AUDIT_HOME") or Path.home() / ".mu_audit").expanduser()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def _entry_hash(entry: dict) -> str:
    """The hash the next entry points at: over seq, time, action, prev and the SHA-256 of the salted
    details, so an entry whose details are withheld (:func:`redact_chain`) still links."""
    details_sha = entry.get("details_sha256") or hashlib.sha256(_canonical({"salt": entry.get("salt"), "details": entry.get("details")})).hexdigest()
    return hashlib.sha256(_canonical({k: entry.get(k) for k in ("seq", "time", "action", "prev")} | {"details_sha256": details_sha})).hexdigest()


def append_chained(path: str | Path, action: str, **details: Any) -> dict:
    """Append ``{seq, time, action, details, salt, prev}`` to a hash-chained JSON-lines file.

    ``prev`` is the hash of the previous entry (:data:`CHAIN_START` for the first), so changing,
    removing or reordering any earlier entry breaks every later link (a tamper-evident log in the
    sense of Crosby & Wallach 2009, without their Merkle tree: a trail is short). The details are
    hashed with a random salt, so a copy that withholds them (:func:`redact_chain`) still verifies
    and its hashes cannot be matched against guessed details.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK, open(path, "a+b") as fh:
        if fcntl is not None:  # the app and the CLI may append to one trail at once
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fh.seek(0)
        raw = fh.read()
        lines = [line for line in raw.split(b"\n") if line.strip()]
        entry = {"seq": len(lines), "time": _now(), "action": action, "details": details, "salt": secrets.token_hex(16),
                 "prev": _entry_hash(json.loads(lines[-1])) if lines else CHAIN_START}
        if raw and not raw.endswith(b"\n"):
            fh.write(b"\n")
        fh.write(_canonical(entry) + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
        return entry


def check_chain(raw: bytes) -> tuple[str | None, str]:
    """``(problem, head)`` of a hash-chained file's bytes: ``problem`` is ``None`` when every
    entry links to the one before, else a sentence naming the first broken entry; ``head`` is the
    last entry's hash (what a later entry or a receipt points at)."""
    prev = CHAIN_START
    for number, line in enumerate((line for line in raw.split(b"\n") if line.strip()), start=1):
        try:
            entry = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return f"entry {number} is not valid JSON", prev
        if not isinstance(entry, dict) or entry.get("prev") != prev or entry.get("seq") != number - 1:
            return f"entry {number} does not link to the entry before it (altered, removed or reordered)", prev
        prev = _entry_hash(entry)
    return None, prev


def redact_chain(raw: bytes) -> bytes:
    """The same trail with every entry's details and salt replaced by their hash: the actions,
    times and links stay checkable, the details (file hashes, settings) are withheld."""
    out = []
    for line in (line for line in raw.split(b"\n") if line.strip()):
        entry = json.loads(line)
        details_sha = hashlib.sha256(_canonical({"salt": entry.pop("salt", None), "details": entry.pop("details", None)})).hexdigest()
        out.append(_canonical({**entry, "details_sha256": entry.get("details_sha256") or details_sha}))
    return b"".join(line + b"\n" for line in out)


class Case:
    """One audit case. Read ``manifest`` for its state; change it only through the methods."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.id = directory.name

    @property
    def manifest(self) -> dict:
        try:
            return json.loads((self.dir / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AuditInputError(f"Case '{self.id}' no longer exists.") from None
        except json.JSONDecodeError:
            raise AuditInputError(f"Case '{self.id}' has a damaged case.json; delete the case or repair the file.") from None

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.id))

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def update(self, **changes: Any) -> dict:
        """Merge ``changes`` into the manifest (``None`` deletes a key) and save it atomically."""
        with _LOCK:
            manifest = self.manifest
            for key, value in changes.items():
                if value is None:
                    manifest.pop(key, None)
                else:
                    manifest[key] = value
            manifest["updated"] = _now()
            atomic_write_json(self.dir / MANIFEST, manifest)
            return manifest

    def set_entry(self, key: str, entry: dict) -> dict:
        """Record an artefact (``original``, ``forget``, ``unlearned``, ``retrained``, ``audit``)
        and drop what depended on the previous one, with its files."""
        with _LOCK:
            manifest = self.manifest
            stale = [k for k in _DOWNSTREAM.get(key, ()) if k in manifest]
            for k in stale:
                self._remove_files(manifest[k])
            return self.update(**{key: entry}, **{k: None for k in stale})

    def log(self, action: str, **details: Any) -> dict:
        """Append an action (train, import, forget, unlearn, audit, report, purge...) to the case's
        audit trail ``log.jsonl`` (:func:`append_chained`); details hold hashes and settings, never data."""
        return append_chained(self.dir / LOG_FILE, action, **details)

    def entry(self, key: str) -> dict | None:
        return self.manifest.get(key)

    def file(self, key: str) -> Path | None:
        """The file of an artefact, if recorded and present."""
        entry = self.entry(key)
        if not entry or "file" not in entry:
            return None
        path = self.dir / entry["file"]
        return path if path.exists() else None

    def _remove_files(self, entry: dict) -> None:
        target = entry.get("file") if isinstance(entry, dict) else None
        if not target:
            return
        path = (self.dir / target).resolve()
        if path.is_relative_to(self.dir.resolve()) and path != self.dir.resolve():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"Case({self.id!r})"


#: Longest case name kept (longer names are cut).
MAX_NAME_CHARS = 120
STAGING = ".staging"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def clean_name(name: object) -> str:
    """A case name as plain text: control and direction characters removed, whitespace
    collapsed, at most ``MAX_NAME_CHARS`` characters. (Pages also show it escaped, never as markup.)"""
    text = _CONTROL.sub(" ", str(name)[: MAX_NAME_CHARS * 4])
    text = " ".join(text.split())
    return text[:MAX_NAME_CHARS].strip()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


class CaseStore:
    """The cases under a home folder (default :func:`audit_home`).

    With ``owner`` (a signed-in user's id) the store records that owner in every case it
    creates and sees only that owner's cases: listing, opening, renaming and deleting anyone
    else's case is refused exactly as for a case that does not exist. Without ``owner`` (the
    command line, a single-user install) every case is visible.
    """

    def __init__(self, home: str | Path | None = None, *, owner: str | None = None) -> None:
        self.home = Path(home) if home else audit_home()
        self.root = self.home / "cases"
        self.owner = owner

    def _new_id(self) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        return f"{stamp}-{secrets.token_hex(3)}"

    def _manifest(self, case_id: str, name: str, fields: dict) -> dict:
        now = _now()
        owner = {"owner": self.owner} if self.owner is not None else {}
        return {"id": case_id, "name": clean_name(name) or f"Case {case_id}", "created": now, "updated": now, **fields, **owner}

    def create(self, name: str = "", **fields: Any) -> Case:
        case_id = self._new_id()
        directory = self.root / case_id
        directory.mkdir(parents=True)
        atomic_write_json(directory / MANIFEST, self._manifest(case_id, name, fields))
        return Case(directory)

    @contextmanager
    def staged(self, name: str = "", **fields: Any) -> Iterator[Case]:
        """Build a case out of sight, then publish it whole.

        The case lives under ``cases/.staging/<id>/`` (never listed) while the ``with`` block
        fills it, and is renamed into ``cases/<id>/`` when the block ends; an exception removes
        it, and a process killed meanwhile leaves only a staging folder, which the next
        :meth:`list` removes. So an interrupted demo leaves no half case.
        """
        case_id = self._new_id()
        directory = self.root / STAGING / case_id
        directory.mkdir(parents=True)
        (directory / "staging.pid").write_text(str(os.getpid()))
        atomic_write_json(directory / MANIFEST, self._manifest(case_id, name, fields))
        case = Case(directory)
        try:
            yield case
            (directory / "staging.pid").unlink(missing_ok=True)
            final = self.root / case_id
            directory.rename(final)
            case.dir = final
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    def _clean_staging(self) -> None:
        """Remove staging folders whose process is gone (a build killed half-way)."""
        staging = self.root / STAGING
        if not staging.is_dir():
            return
        for directory in staging.iterdir():
            try:
                pid = int((directory / "staging.pid").read_text())
            except (OSError, ValueError):
                pid = 0
            if not pid or not _pid_alive(pid):
                shutil.rmtree(directory, ignore_errors=True)

    def _visible(self, manifest: dict) -> bool:
        return self.owner is None or manifest.get("owner") == self.owner

    def get(self, case_id: str) -> Case:
        if not isinstance(case_id, str) or not _ID_PATTERN.match(case_id):
            raise AuditInputError(f"'{str(case_id)[:40]}' is not a case id.")
        directory = self.root / case_id
        if not (directory / MANIFEST).is_file():
            raise AuditInputError(f"Case '{case_id}' does not exist (it may have been deleted).")
        case = Case(directory)
        if self.owner is not None:
            try:
                visible = self._visible(case.manifest)
            except AuditInputError:
                visible = False
            if not visible:  # the same sentence as for a missing case: ids cannot be probed
                raise AuditInputError(f"Case '{case_id}' does not exist (it may have been deleted).")
        return case

    def list(self) -> list[Case]:
        """Cases (this owner's, with an owner), most recently updated first; damaged ones are skipped."""
        if not self.root.is_dir():
            return []
        self._clean_staging()
        cases = []
        for directory in self.root.iterdir():
            if _ID_PATTERN.match(directory.name) and (directory / MANIFEST).is_file():
                try:
                    manifest = Case(directory).manifest
                except AuditInputError:
                    continue
                if self._visible(manifest):
                    cases.append((manifest.get("updated", ""), Case(directory)))
        return [case for _, case in sorted(cases, key=lambda pair: pair[0], reverse=True)]

    def rename(self, case_id: str, name: str) -> Case:
        name = clean_name(name)
        if not name:
            raise AuditInputError("A case name cannot be empty.")
        case = self.get(case_id)
        case.update(name=name)
        return case

    def delete(self, case_id: str) -> None:
        """Delete a case and every file in it (reconstructions and reports included)."""
        case = self.get(case_id)
        with _LOCK:
            trash = case.dir.with_name(f".deleted-{case.id}")
            case.dir.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
