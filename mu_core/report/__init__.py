"""Evidence a reviewer can file: the audit report (HTML, PDF), its evidence, a signed bundle,
verification, replay and purge.

Built from results already in a case or an audit folder: nothing is computed anew except hashes
(and the audit itself, by :func:`replay_bundle`). Light names (keys, verification) do not import
torch.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "ReportResult": "build",
    "build_report": "build",
    "VerifyResult": "evidence",
    "check_record": "evidence",
    "fingerprint": "evidence",
    "generate_keypair": "evidence",
    "record_name": "evidence",
    "subject_key": "evidence",
    "verify_bundle": "evidence",
    "weights_digest": "evidence",
    "ReplayResult": "replay",
    "replay_bundle": "replay",
    "purge_case": "purge",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
