"""Build the audit report, its evidence and the bundle from results already in a case or an audit folder.

Nothing is computed anew except hashes: the model files' SHA-256 and weights digests, the forget
request's, and a digest of the dataset split. ``report.html`` and ``report.pdf`` (printed from the
HTML by headless Chromium) say the same thing; ``evidence.json`` lists every input and output with
its SHA-256; ``bundle.zip`` holds all of it with a manifest, signed with Ed25519 when a key is given.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .._types import Progress, report
from ..case import LOG_FILE, MANIFEST, Case, atomic_write_bytes, atomic_write_text, check_chain, redact_chain
from ..errors import AuditInputError
from . import evidence as ev

__all__ = ["OUTPUT_FILES", "ReportResult", "build_report", "chromium_path", "dataset_digest", "redact_report"]

EVIDENCE_SCHEMA = "mu_audit.evidence/1"
#: What ``report`` writes into ``OUT`` (and what a purge of the case removes there).
OUTPUT_FILES = ("report.html", "report.pdf", "evidence.json", "bundle.zip", "redaction.secret")
ROLES = ("original", "unlearned", "retrained")
AUDIT_FILES = ("report.json", "scores.csv", "roc.csv", "records.csv")
#: The forget request's parameters a redacted report keeps (a random request's seed would rebuild its indices).
REDACTED_PARAMS = ("class", "class_name", "share")


@dataclass
class _Sources:
    """What a report is built from: bundle path -> file on disk, plus the parsed results."""

    kind: str
    ident: str
    report: dict
    files: dict[str, Path] = field(default_factory=dict)
    forget: object = None
    case_manifest: dict | None = None
    log: bytes = b""
    extras: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ReportResult:
    """Paths of what was written, the signer's fingerprint and the evidence itself."""

    out: Path
    html: Path
    pdf: Path | None
    evidence: Path
    bundle: Path
    fingerprint: str | None
    secret: Path | None
    data: dict = field(repr=False)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AuditInputError(f"'{path.name}' could not be read as JSON ({exc}).") from None


def _add_tree(files: dict[str, Path], root: Path, prefix: str) -> None:
    if root.is_dir():
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
            files[f"{prefix}/{path.relative_to(root).as_posix()}"] = path


def _threat_files(root: Path) -> list[Path]:
    """``threat.json`` files anywhere in the case, and any JSON in its ``threats/`` folder."""
    found = {p for p in root.rglob("threat.json") if p.is_file()}
    if (root / "threats").is_dir():
        found |= {p for p in (root / "threats").rglob("*.json") if p.is_file()}
    return sorted(found)


def _from_case(case: Case) -> _Sources:
    from ..workflow import case_forget_request

    report_path = case.path("audit", "report.json")
    if not report_path.is_file():
        raise AuditInputError("This case has no membership audit yet: run the audit first, then build the report.")
    src = _Sources("case", case.id, _read_json(report_path), case_manifest=case.manifest)
    for name in AUDIT_FILES:
        if case.path("audit", name).is_file():
            src.files[f"audit/{name}"] = case.path("audit", name)
    for role in ROLES:
        path = case.file(role)
        if path is not None:
            src.files[f"models/{role}.safetensors"] = path
    src.forget = case_forget_request(case)
    src.files["forget.json"] = case.file("forget")
    _add_tree(src.files, case.path("references"), "references")
    _add_tree(src.files, case.path("compare"), "compare")
    _add_tree(src.files, case.path("inversion"), "inversion")
    _add_tree(src.files, case.path("neurons"), "neurons")
    if case.path("defenses.json").is_file():
        src.files["defenses.json"] = case.path("defenses.json")
    for path in _threat_files(case.dir):
        src.files.setdefault(path.relative_to(case.dir).as_posix(), path)
    src.files["case.json"] = case.path(MANIFEST)
    if case.path(LOG_FILE).is_file():
        src.log = case.path(LOG_FILE).read_bytes()
        src.files[LOG_FILE] = case.path(LOG_FILE)
    _load_extras(src)
    return src


def _from_audit(audit_dir: Path) -> _Sources:
    """An audit folder written by ``audit --out DIR``: its models are found from the paths the
    report recorded (as given, else beside the folder); the forget request is rebuilt from the
    unlearned model's record, else from the members in ``scores.csv``."""
    from ..forget import ForgetRequest
    from ..models.io import read_record

    report_path = audit_dir / "report.json"
    if not report_path.is_file():
        raise AuditInputError(f"'{audit_dir}' holds no report.json; give the --out folder of an audit.")
    src = _Sources("audit", str(audit_dir.resolve()), _read_json(report_path))
    for name in AUDIT_FILES:
        if (audit_dir / name).is_file():
            src.files[f"audit/{name}"] = audit_dir / name
    forget = None
    for role, info in src.report.get("provenance", {}).get("models", {}).items():
        recorded = info.get("file")
        candidates = [Path(recorded), audit_dir / recorded, audit_dir.parent / Path(recorded).name] if recorded else []
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise AuditInputError(f"The audit's {role} model '{recorded}' is not on disk any more; the report needs every model file.")
        if info.get("sha256") and ev.sha256_file(path) != info["sha256"]:
            raise AuditInputError(f"'{path}' is not the {role} model the audit used (its SHA-256 differs).")
        src.files[f"models/{role}.safetensors"] = path
        record = read_record(path)
        if record is not None and record.forget_indices is not None and forget is None:
            forget = record.forget_indices
    if forget is None:
        forget = _members_from_scores(audit_dir / "scores.csv")
    src.forget = ForgetRequest(forget, "indices", {})
    _load_extras(src)
    return src


def _members_from_scores(path: Path):
    import numpy as np
    import pandas as pd

    if not path.is_file():
        raise AuditInputError("The audit folder has no scores.csv and its unlearned model records no forget set.")
    table = pd.read_csv(path, usecols=["member", "index"])
    return np.unique(table.loc[table["member"] == 1, "index"].to_numpy(dtype=np.int64))


def _load_extras(src: _Sources) -> None:
    """Inversion, defenses, neuron and threat results, parsed for the report when present."""
    for key, name in (("inversion", "inversion/inversion.json"), ("defenses", "defenses.json"), ("neurons", "neurons/neurons.json"),
                      ("compare", "compare/compare.json")):
        if name in src.files:
            src.extras[key] = _read_json(src.files[name])
    threats = {}
    for name, path in src.files.items():
        if name.endswith("threat.json") or name.startswith("threats/"):
            threats[name] = _read_json(path)
    if threats:
        src.extras["threats"] = threats


# --- evidence -----------------------------------------------------------------------------------

def dataset_digest(spec: dict) -> dict:
    """SHA-256 of a dataset's canonical split: train and test images (float32) and labels (int64),
    in the loader's stable order, with the counts and class names."""
    import numpy as np

    from ..data import DatasetSpec, load_dataset

    data = load_dataset(DatasetSpec.from_dict(spec))
    digest = hashlib.sha256(b"mu_audit.split/1\n")
    digest.update(json.dumps(list(data.class_names)).encode())
    for tensor, dtype in ((data.x_train, np.float32), (data.y_train, np.int64), (data.x_test, np.float32), (data.y_test, np.int64)):
        array = np.ascontiguousarray(tensor.numpy(), dtype=dtype)
        digest.update(json.dumps([str(array.dtype), list(array.shape)]).encode())
        digest.update(array.tobytes())
    return {"spec": data.spec.to_dict(), "split_sha256": digest.hexdigest(), "n_train": int(data.n_train), "n_test": int(data.n_test),
            "classes": list(data.class_names)}


def _indices_sha256(indices) -> str:
    import numpy as np

    return ev.sha256_bytes(np.ascontiguousarray(np.asarray(indices, dtype="<i8")).tobytes())


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from ..audit.report import library_versions

    out = dict(library_versions())
    for name in ("plotly", "cryptography", "safetensors", "scipy", "captum"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def audit_settings(report_data: dict) -> dict:
    """The settings that re-run the recorded audit, read from its report: attacks, seed, reference
    models, the unlearning method the U-LiRA family replicated, margin, alpha and bootstrap."""
    prov = report_data.get("provenance", {})
    vs = report_data.get("verdict_settings", {})
    method, params = None, None
    for per_model in report_data.get("attacks", {}).values():
        if not isinstance(per_model, dict):
            continue
        for result in [per_model, *(v for v in per_model.values() if isinstance(v, dict))]:
            if isinstance(result, dict) and result.get("method") and method is None:
                method, params = result["method"], result.get("params")
    refs = prov.get("reference_models") or {}
    return {"attacks": list(report_data.get("attacks", {})), "seed": int(prov.get("seeds", {}).get("nonmember_sampling", 0)),
            "reference_models": int(refs.get("count", 16)), "method": method, "method_params": params,
            "margin": vs.get("margin", 0.1), "alpha": vs.get("alpha", 0.05), "bootstrap": vs.get("bootstrap", 200),
            "retrains": (report_data.get("reference") or {}).get("retrains"), "device": prov.get("device")}


def _evidence(src: _Sources, *, redact: bool, bundled: set[str], created: str, names: dict[int, str] | None,
              secret: bytes | None = None) -> dict:
    from ..models.io import read_record

    prov = src.report.get("provenance", {})
    models = {}
    for role in ROLES:
        path = src.files.get(f"models/{role}.safetensors")
        if path is None:
            continue
        record = read_record(path)
        models[role] = {
            "file": f"models/{role}.safetensors" if f"models/{role}.safetensors" in bundled else None,
            "sha256": ev.sha256_file(path), "weights_sha256": ev.weights_digest(path), "bytes": path.stat().st_size,
            "arch": record.arch if record else None, "recipe": record.recipe if record else None,
            "train_samples": len(record.train_indices) if record else None,
            "train_indices_sha256": None if record is None or redact else _indices_sha256(record.train_indices),
            "unlearning": {k: v for k, v in ((record.unlearning or {}) if record else {}).items() if k != "forget_indices"} or None,
        }
    forget = src.forget
    forget_entry = {"file": "forget.json" if "forget.json" in bundled else None, "kind": forget.kind, "count": len(forget),
                    "params": forget.params if not redact else {k: v for k, v in forget.params.items() if k in REDACTED_PARAMS}}
    if "forget.json" in src.files and not redact:
        forget_entry["sha256"] = ev.sha256_file(src.files["forget.json"])
    elif "forget.json" in src.files and secret is not None:  # a one-index request's plain hash could be guessed
        forget_entry["hmac_sha256"] = hmac.new(secret, src.files["forget.json"].read_bytes(), hashlib.sha256).hexdigest()
    if not redact:
        forget_entry["indices_sha256"] = _indices_sha256(forget.indices)
    else:
        forget_entry["records"] = sorted(names.values()) if names else []
    references = {name: {"sha256": ev.sha256_file(path), "bytes": path.stat().st_size, "in_bundle": name in bundled}
                  for name, path in src.files.items() if name.startswith(("references/", "compare/models/"))}
    for name, info in references.items():
        if name.endswith(".safetensors"):
            info["weights_sha256"] = ev.weights_digest(src.files[name])
    outputs = {name: {"sha256": ev.sha256_file(path), "bytes": path.stat().st_size, "in_bundle": name in bundled}
               for name, path in src.files.items() if not name.startswith(("models/", "references/", "compare/models/")) and name != "forget.json"}
    if redact:  # file names such as inversion/sample_<index>.png would name records: one digest per folder instead
        for folder in ("inversion/", "neurons/", "audit/"):
            hidden = sorted(n for n in outputs if n.startswith(folder) and n not in bundled)
            if hidden:
                outputs[folder + "(other files)"] = {
                    "sha256": ev.sha256_bytes("".join(outputs[n]["sha256"] for n in hidden).encode()),
                    "bytes": sum(outputs[n]["bytes"] for n in hidden), "files": len(hidden), "in_bundle": False}
                for n in hidden:
                    del outputs[n]
    times = {"audit": prov.get("created"), "report": created}
    if src.log:
        lines = [json.loads(line) for line in src.log.splitlines() if line.strip()]
        times.update({"case_first_action": lines[0].get("time"), "case_last_action": lines[-1].get("time")} if lines else {})
    problem, head = check_chain(src.log) if src.log else (None, None)
    return {
        "schema": EVIDENCE_SCHEMA,
        "source": {"kind": src.kind, "id": src.ident if src.kind == "case" else Path(src.ident).name,
                   "name": (src.case_manifest or {}).get("name")},
        "redacted": redact,
        "verdict": src.report.get("verdict"),
        "models": models,
        "forget_request": forget_entry,
        "dataset": dataset_digest(prov.get("dataset") or read_record(src.files["models/original.safetensors"]).dataset),
        "references_and_retrains": references,
        "reference_models": prov.get("reference_models"),
        "audit": {"settings": audit_settings(src.report), "seeds": prov.get("seeds"), "members": prov.get("members"),
                  "nonmembers": prov.get("nonmembers"), "report_sha256": ev.sha256_file(src.files["audit/report.json"])},
        "results": outputs,
        "trail": {"file": LOG_FILE if LOG_FILE in bundled else None, "entries": len([x for x in src.log.splitlines() if x.strip()]),
                  "head": head, "intact": problem is None, "problem": problem} if src.log else None,
        "versions": _versions(),
        "platform": {"system": platform.system(), "release": platform.release(), "machine": platform.machine(),
                     "python": sys.version.split()[0], "processor": platform.processor() or None, "device": prov.get("device")},
        "times": times,
    }


# --- redaction ----------------------------------------------------------------------------------

def redact_report(report_data: dict, names: dict[int, str]) -> dict:
    """A copy of ``report.json`` without raw indices: each record's ``index`` becomes its keyed
    ``record`` name, records are sorted by name (index order would leak), and model file paths go."""
    out = json.loads(json.dumps(report_data))
    out["records"] = sorted(({"record": names[int(r["index"])], **{k: v for k, v in r.items() if k != "index"}}
                             for r in out.get("records", [])), key=lambda r: r["record"])
    for info in out.get("provenance", {}).get("models", {}).values():
        info["file"] = None
    out["redacted"] = True
    return out


def _redacted_inversion(data: dict, names: dict[int, str]) -> dict:
    out = json.loads(json.dumps(data))
    out["samples"] = sorted(({"record": names.get(int(s["index"]), "r-?"), **{k: v for k, v in s.items() if k not in ("index", "png")}}
                             for s in out.get("samples", [])), key=lambda s: s["record"])
    return out


# --- PDF ----------------------------------------------------------------------------------------

def chromium_path() -> str | None:
    """Headless Chromium: ``MU_AUDIT_CHROMIUM``, else ``/usr/bin/chromium`` or one on the PATH."""
    for candidate in (os.environ.get("MU_AUDIT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def print_pdf(html_path: Path, pdf_path: Path, *, timeout: float = 180) -> Path:
    """Print the HTML to PDF with headless Chromium (no network: the file is self-contained)."""
    exe = chromium_path()
    if exe is None:
        raise AuditInputError("The PDF is printed by Chromium, which was not found: install it (apt-get install chromium), "
                              "set MU_AUDIT_CHROMIUM, or pass --no-pdf.")
    with tempfile.TemporaryDirectory(prefix="mu_audit_chromium_") as profile:
        tmp = pdf_path.with_name(f".{pdf_path.name}.tmp")
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}", "--no-pdf-header-footer",
               "--virtual-time-budget=30000", f"--print-to-pdf={tmp}", html_path.resolve().as_uri()]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise AuditInputError(f"Chromium did not finish printing the PDF within {timeout:.0f} s.") from None
        if done.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            tmp.unlink(missing_ok=True)
            raise AuditInputError(f"Chromium could not print the PDF (exit {done.returncode}).")
        os.replace(tmp, pdf_path)
    return pdf_path


# --- the bundle ---------------------------------------------------------------------------------

def _write_bundle(path: Path, entries: dict[str, Path], *, created: str, signing_key, meta: dict) -> str | None:
    manifest = ev.manifest_for({name: (ev.sha256_file(p), p.stat().st_size) for name, p in entries.items()}, created=created, meta=meta)
    extra = {ev.MANIFEST_NAME: manifest}
    signer = None
    if signing_key is not None:
        signature, pub = ev.sign_manifest(manifest, signing_key)
        extra.update({ev.SIGNATURE_NAME: signature, ev.SIGNER_NAME: pub})
        signer = ev.fingerprint(signing_key.public_key())
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name, data in extra.items():
            archive.writestr(name, data)
        for name, src in entries.items():
            archive.write(src, name)
    os.replace(tmp, path)
    return signer


def build_report(
    *,
    case: Case | None = None,
    audit_dir: str | Path | None = None,
    out: str | Path,
    redact: bool = False,
    sign_key: str | Path | None = None,
    pdf: bool = True,
    progress: Progress | None = None,
) -> ReportResult:
    """Write ``report.html``, ``report.pdf``, ``evidence.json`` and ``bundle.zip`` into ``out``
    from a case's results or an audit folder (exactly one of the two).

    With ``redact``, nothing in ``out`` names a training record by index or shows its pixels:
    records are named by a keyed hash (:func:`mu_core.report.evidence.record_name`) and the
    secret that derives each data subject's key is written to ``out/redaction.secret``, outside
    the bundle. Models, the forget request, reference models, scores and reconstructions stay
    out of a redacted bundle (their hashes stay in the evidence), so it cannot be replayed.
    """
    from .render import render_html

    if (case is None) == (audit_dir is None):
        raise AuditInputError("Build a report from a case (--case ID) or an audit folder (--audit DIR), one of the two.")
    signing_key = ev.load_private_key(sign_key) if sign_key else None
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AuditInputError(f"--out must be a folder: '{out}' is a file.")
    out.mkdir(parents=True, exist_ok=True)
    report(progress, 0.0, "Reading the results")
    src = _from_case(case) if case is not None else _from_audit(Path(audit_dir))
    created = datetime.now(UTC).isoformat(timespec="seconds")

    names: dict[int, str] | None = None
    secret_path, secret = None, None
    bundled: dict[str, Path] = {}
    staged = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
    try:
        if redact:
            secret = ev.new_secret()
            secret_path = atomic_write_text(out / "redaction.secret", secret.hex() + "\n")
            secret_path.chmod(0o600)
            indices = {int(i) for i in src.forget.indices} | {int(r["index"]) for r in src.report.get("records", [])}
            names = {i: ev.record_name(ev.subject_key(secret, i), i) for i in sorted(indices)}
            report_data = redact_report(src.report, names)
            bundled["audit/report.json"] = atomic_write_text(staged / "report.json", json.dumps(report_data, indent=1, allow_nan=False))
            for name in ("audit/roc.csv", "compare/compare.json", "defenses.json"):
                if name in src.files:
                    bundled[name] = src.files[name]
            if src.log:  # the trail's details name file hashes (a one-sample request's could be guessed): withheld, still chained
                bundled[LOG_FILE] = atomic_write_bytes(staged / LOG_FILE, redact_chain(src.log))
            if "inversion" in src.extras:
                src.extras["inversion"] = _redacted_inversion(src.extras["inversion"], names)
                bundled["inversion/inversion.json"] = atomic_write_text(staged / "inversion.json", json.dumps(src.extras["inversion"], indent=1))
        else:
            report_data = src.report
            if "forget.json" not in src.files:  # an 'audit --out' folder keeps no request file: bundle the one read from it
                from ..forget import write_request

                src.files["forget.json"] = write_request(src.forget, staged / "forget.json")
            bundled.update(src.files)
        report(progress, 0.1, "Hashing models, request and data")
        data = _evidence(src, redact=redact, bundled=set(bundled), created=created, names=names, secret=secret if redact else None)
        fp = ev.fingerprint(signing_key.public_key()) if signing_key is not None else None
        data["signature"] = {"algorithm": "Ed25519", "fingerprint": fp, "time": created} if fp else None
        evidence_path = atomic_write_text(out / "evidence.json", json.dumps(data, indent=1, allow_nan=False))

        report(progress, 0.4, "Writing the report")
        html_path = atomic_write_text(out / "report.html", render_html(report_data, data, src.extras, redacted=redact,
                                                                      images=None if redact else src.files))
        pdf_path = None
        if pdf:
            report(progress, 0.5, "Printing the PDF")
            pdf_path = print_pdf(html_path, out / "report.pdf")
        else:
            (out / "report.pdf").unlink(missing_ok=True)

        report(progress, 0.8, "Writing the bundle")
        entries = {"report.html": html_path, **({"report.pdf": pdf_path} if pdf_path else {}), "evidence.json": evidence_path, **bundled}
        meta = {"source": data["source"], "redacted": redact, "verdict": data["verdict"]}
        _write_bundle(out / "bundle.zip", entries, created=created, signing_key=signing_key, meta=meta)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    if case is not None:
        written = {name: ev.sha256_file(out / name) for name in OUTPUT_FILES if (out / name).is_file() and name != "redaction.secret"}
        case.log("report", out=str(out.resolve()), redacted=redact, signed_by=fp, files=written)
    report(progress, 1.0, "Report done")
    return ReportResult(out, html_path, pdf_path, evidence_path, out / "bundle.zip", fp, secret_path, data)
