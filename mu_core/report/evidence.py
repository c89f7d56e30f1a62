"""Evidence: hashes, the bundle's manifest, Ed25519 signatures, verification and redaction names.

A bundle is a zip holding ``manifest.json`` (every other file's path, size and SHA-256), the
files themselves and, when signed, ``manifest.sig`` (an Ed25519 signature of the manifest's bytes,
RFC 8032, via ``cryptography``) and ``signer.pub`` (the public key, PEM). :func:`verify_bundle`
recomputes every hash, looks for missing and added files, checks the signature and the audit
trail's hash chain (:func:`mu_core.case.check_chain`). Verification imports neither torch nor numpy.

Redaction names records by a keyed hash: the controller keeps a secret; each data subject is
given their own key, ``HMAC-SHA256(secret, index)``, and their record's name is
``HMAC-SHA256(subject key, index)``. A subject checks their name from their index and key
(:func:`record_name`); without the secret nobody can name another subject's record, even though
indices are few enough to enumerate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..case import check_chain
from ..errors import AuditInputError

__all__ = [
    "BUNDLE_EXTRA",
    "MANIFEST_NAME",
    "SIGNATURE_NAME",
    "SIGNER_NAME",
    "VerifyResult",
    "check_record",
    "fingerprint",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "manifest_for",
    "new_secret",
    "open_bundle",
    "read_secret",
    "record_name",
    "sha256_bytes",
    "sha256_file",
    "sign_manifest",
    "subject_key",
    "verify_bundle",
    "weights_digest",
]

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
SIGNER_NAME = "signer.pub"
#: Files of a bundle that the manifest does not list (they are about the manifest).
BUNDLE_EXTRA = (MANIFEST_NAME, SIGNATURE_NAME, SIGNER_NAME)
MANIFEST_SCHEMA = "mu_audit.manifest/1"
#: Bounds checked before a bundle is read: members and uncompressed bytes.
MAX_BUNDLE_MEMBERS = 20_000
MAX_BUNDLE_BYTES = 8 * 1024**3
#: Largest JSON or JSON-lines member read into memory (a report, a trail).
MAX_TEXT_BYTES = 256 * 1024**2
_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_stream(fh) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: fh.read(_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | Path) -> str:
    """A file's SHA-256, read in chunks (``mu_core.models.sha256_file`` would import torch with
    its package; ``verify`` stays torch-free and quick to start)."""
    with open(path, "rb") as fh:
        return _sha256_stream(fh)


def weights_digest(path: str | Path) -> str:
    """SHA-256 over a model file's tensors only: for each tensor, sorted by name, its name, dtype,
    shape and raw bytes. Unlike the file's SHA-256 it ignores metadata (training time, paths), so
    two files with the same weights have the same digest. Safetensors files are read without
    torch; a ``.pt``/``.pth`` state dict goes through the weights-only loader (dtypes then named
    as torch does, so the same weights in the two formats give two digests)."""
    from ..models.io import _safetensors_header

    path = Path(path)
    digest = hashlib.sha256(b"mu_audit.weights/1\n")
    header = _safetensors_header(path)
    if header is not None:
        with open(path, "rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            base = 8 + length
            for name in sorted(k for k in header if k != "__metadata__"):
                info = header[name]
                start, end = (int(v) for v in info["data_offsets"])
                digest.update(json.dumps([name, info["dtype"], list(info["shape"]), end - start]).encode())
                fh.seek(base + start)
                remaining = end - start
                while remaining > 0:
                    chunk = fh.read(min(_CHUNK, remaining))
                    if not chunk:
                        raise AuditInputError(f"'{path.name}' is a truncated safetensors file.")
                    digest.update(chunk)
                    remaining -= len(chunk)
        return digest.hexdigest()
    import torch

    from ..models.io import _load_state_dict_file

    state = _load_state_dict_file(path)
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        raw = tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape), len(raw)]).encode())
        digest.update(raw)
    return digest.hexdigest()


def manifest_for(files: dict[str, tuple[str, int]], *, created: str, meta: dict | None = None) -> bytes:
    """The manifest's bytes: ``{schema, created, ...meta, files: {path: {sha256, bytes}}}`` from
    ``files[path] = (sha256, size)``, in the order given (the report first, models last)."""
    body = {"schema": MANIFEST_SCHEMA, "created": created, **(meta or {}),
            "files": {name: {"sha256": sha, "bytes": size} for name, (sha, size) in files.items()}}
    return json.dumps(body, indent=1).encode("utf-8")


# --- keys and signatures ------------------------------------------------------------------------

def generate_keypair(out: str | Path) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair: ``OUT.key`` (private, PKCS#8 PEM, mode 600) and ``OUT.pub``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ..case import atomic_write_bytes

    stem = Path(out)
    if stem.suffix in (".key", ".pub"):
        stem = stem.with_suffix("")
    key_path, pub_path = stem.with_name(stem.name + ".key"), stem.with_name(stem.name + ".pub")
    if key_path.exists():
        raise AuditInputError(f"'{key_path}' already exists; choose another name (a key is never overwritten).")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    atomic_write_bytes(key_path, pem)
    key_path.chmod(0o600)
    atomic_write_bytes(pub_path, key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_path, pub_path


def load_private_key(path: str | Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise AuditInputError(f"Signing key '{path}' does not exist.") from None
    except (ValueError, TypeError):
        raise AuditInputError(f"'{path}' is not an unencrypted PEM private key (make one with 'keygen').") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditInputError(f"'{path}' is not an Ed25519 key (make one with 'keygen').")
    return key


def load_public_key(data: str | Path | bytes):
    """An Ed25519 public key from PEM bytes or a PEM file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    name = "the bundle's signer.pub" if isinstance(data, bytes) else f"'{data}'"
    try:
        raw = data if isinstance(data, bytes) else Path(data).read_bytes()
        key = serialization.load_pem_public_key(raw)
    except FileNotFoundError:
        raise AuditInputError(f"Public key {name} does not exist.") from None
    except (ValueError, TypeError):
        raise AuditInputError(f"{name} is not a PEM public key.") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditInputError(f"{name} is not an Ed25519 public key.")
    return key


def fingerprint(public_key) -> str:
    """``SHA256:<base64>`` of the raw 32-byte public key (the form OpenSSH prints)."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def sign_manifest(manifest: bytes, private_key) -> tuple[bytes, bytes]:
    """``(manifest.sig, signer.pub)`` contents: a base64 Ed25519 signature and the PEM public key."""
    from cryptography.hazmat.primitives import serialization

    signature = base64.b64encode(private_key.sign(manifest)) + b"\n"
    pub = private_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return signature, pub


# --- verification -------------------------------------------------------------------------------

@dataclass(frozen=True)
class VerifyResult:
    """``ok`` and the sentence to print; ``file`` names the first altered, missing or added file."""

    ok: bool
    message: str
    fingerprint: str | None = None
    file: str | None = None


def _member_sha256(archive: zipfile.ZipFile, name: str) -> str | None:
    """The member's SHA-256, or ``None`` when its bytes fail the zip's own CRC (altered in place)."""
    try:
        with archive.open(name) as fh:
            return _sha256_stream(fh)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return None


def read_member(archive: zipfile.ZipFile, name: str) -> bytes:
    """A text member's bytes, refused above :data:`MAX_TEXT_BYTES` (``KeyError`` when absent)."""
    if archive.getinfo(name).file_size > MAX_TEXT_BYTES:
        raise AuditInputError(f"'{name}' in the bundle is larger than MU Audit ever writes it; refusing to read it.")
    return archive.read(name)


def open_bundle(path: str | Path) -> zipfile.ZipFile:
    """The bundle as a zip, after checking its size bounds."""
    path = Path(path)
    if not path.is_file():
        raise AuditInputError(f"Bundle '{path}' does not exist.")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise AuditInputError(f"'{path.name}' is not a readable zip bundle.") from None
    infos = archive.infolist()
    if len(infos) > MAX_BUNDLE_MEMBERS or sum(i.file_size for i in infos) > MAX_BUNDLE_BYTES:
        archive.close()
        raise AuditInputError(f"'{path.name}' is larger than any bundle MU Audit writes; refusing to read it.")
    return archive


def verify_bundle(path: str | Path, public_key: str | Path | None = None) -> VerifyResult:
    """Check a bundle: every listed file present with its SHA-256, no file added, the signature
    (against ``public_key`` when given, else the bundle's own ``signer.pub``) and the audit
    trail's chain. The first problem found is the result."""
    with open_bundle(path) as archive:
        names = [i.filename for i in archive.infolist() if not i.is_dir()]
        twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if twice:
            return VerifyResult(False, f"added: {twice} (a second file of that name)", file=twice)
        if MANIFEST_NAME not in names:
            return VerifyResult(False, f"missing: {MANIFEST_NAME} (not a bundle, or its manifest was removed)", file=MANIFEST_NAME)
        manifest_bytes = read_member(archive, MANIFEST_NAME)
        try:
            manifest = json.loads(manifest_bytes)
            listed = manifest["files"]
            assert isinstance(listed, dict)
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AssertionError):
            return VerifyResult(False, f"altered: {MANIFEST_NAME} (it is no longer a valid manifest)", file=MANIFEST_NAME)
        signer = None
        if SIGNATURE_NAME in names:
            try:
                key = load_public_key(public_key) if public_key else load_public_key(read_member(archive, SIGNER_NAME))
            except KeyError:
                return VerifyResult(False, f"missing: {SIGNER_NAME} (the signature's public key)", file=SIGNER_NAME)
            from cryptography.exceptions import InvalidSignature

            try:
                key.verify(base64.b64decode(read_member(archive, SIGNATURE_NAME), validate=False), manifest_bytes)
            except (InvalidSignature, ValueError):
                which = f"the key {fingerprint(key)}" if public_key else "the bundle's signer.pub"
                return VerifyResult(False, f"bad signature: the manifest's signature does not match {which}", file=SIGNATURE_NAME)
            signer = fingerprint(key)
        elif public_key:
            return VerifyResult(False, "bad signature: the bundle is not signed, but a public key was given", file=SIGNATURE_NAME)
        present = set(names)
        for name, info in listed.items():
            if name not in present:
                return VerifyResult(False, f"missing: {name}", signer, name)
            if _member_sha256(archive, name) != info.get("sha256"):
                return VerifyResult(False, f"altered: {name}", signer, name)
        for name in names:
            if name not in listed and name not in BUNDLE_EXTRA:
                return VerifyResult(False, f"added: {name}", signer, name)
        for name in (n for n in listed if n.endswith("log.jsonl")):
            problem, _ = check_chain(read_member(archive, name))
            if problem:
                return VerifyResult(False, f"altered: {name} ({problem})", signer, name)
    count = len(listed)
    if signer:
        return VerifyResult(True, f"intact, signed by {signer} ({count} files)", signer)
    return VerifyResult(True, f"intact, unsigned ({count} files; sign with --sign-key to prove who made it)")


# --- redaction ----------------------------------------------------------------------------------

def new_secret() -> bytes:
    """A fresh 32-byte redaction secret (kept by the controller, never put in a bundle)."""
    return secrets.token_bytes(32)


def read_secret(path: str | Path) -> bytes:
    try:
        text = Path(path).read_text(encoding="ascii").strip()
        secret = bytes.fromhex(text)
    except FileNotFoundError:
        raise AuditInputError(f"Redaction secret '{path}' does not exist.") from None
    except (UnicodeDecodeError, ValueError):
        raise AuditInputError(f"'{path}' is not a redaction secret (64 hexadecimal characters).") from None
    if len(secret) != 32:
        raise AuditInputError(f"'{path}' is not a redaction secret (64 hexadecimal characters).")
    return secret


def subject_key(secret: bytes, index: int) -> str:
    """The key handed to the data subject of training record ``index`` (hex)."""
    return hmac.new(secret, f"mu-audit/subject-key/{int(index)}".encode(), hashlib.sha256).hexdigest()


def record_name(key: str, index: int) -> str:
    """A record's name in a redacted report, from the subject's ``key`` (hex) and their ``index``."""
    try:
        raw = bytes.fromhex(key.strip())
    except ValueError:
        raise AuditInputError("A record key is 64 hexadecimal characters.") from None
    if len(raw) != 32:
        raise AuditInputError("A record key is 64 hexadecimal characters.")
    return "r-" + hmac.new(raw, f"mu-audit/record/{int(index)}".encode(), hashlib.sha256).hexdigest()[:20]


def check_record(bundle: str | Path, index: int, *, key: str | None = None, secret: bytes | None = None) -> dict:
    """A data subject's answer from a bundle: their record's name (from ``key``, or derived from
    the controller's ``secret``), whether the bundle holds it, and its verdict, p-value and
    exposure. In an unredacted bundle the record is found by its index."""
    with open_bundle(bundle) as archive:
        try:
            report = json.loads(read_member(archive, "audit/report.json"))
        except KeyError:
            raise AuditInputError("The bundle holds no audit/report.json.") from None
    out: dict = {"index": int(index)}
    if report.get("redacted"):
        if secret is not None:
            key = subject_key(secret, index)
            out["subject_key"] = key
        if not key:
            raise AuditInputError("This bundle is redacted: give the key you were handed (--key) to find your record.")
        out["record"] = record_name(key, index)
        match = [r for r in report.get("records", []) if r.get("record") == out["record"]]
    else:
        match = [r for r in report.get("records", []) if r.get("index") == int(index)]
    out["found"] = bool(match)
    if match:
        out.update({k: match[0].get(k) for k in ("class", "verdict", "p_value", "exposure", "attack")})
    return out
