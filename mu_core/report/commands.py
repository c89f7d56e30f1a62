"""The command-line side of reports: ``report``, ``keygen``, ``verify``, ``replay``, ``purge`` and
``check-record`` (their arguments are declared in :func:`mu_core.cli.build_parser`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import AuditInputError

__all__ = ["cmd_check_record", "cmd_keygen", "cmd_purge", "cmd_replay", "cmd_report", "cmd_verify"]

#: ``verify`` and ``replay`` exit with this status when the bundle is altered or the replay differs.
EXIT_MISMATCH = 1


def cmd_report(args: argparse.Namespace) -> int:
    from ..case import CaseStore
    from ..cli import _with_bar
    from .build import build_report

    case = CaseStore().get(args.case) if args.case else None
    result = _with_bar("report", build_report, case=case, audit_dir=args.audit, out=args.out, redact=args.redact,
                       sign_key=args.sign_key, pdf=not args.no_pdf)
    print(f"wrote {result.html}, {result.pdf or '(no PDF)'}, {result.evidence} and {result.bundle}")
    if result.fingerprint:
        print(f"signed by {result.fingerprint}")
    if result.secret:
        print(f"redaction secret (keep it; never in the bundle): {result.secret}; a data subject's key: "
              f"python -m mu_core check-record {result.bundle} --index N --secret {result.secret}")
    print(f"verdict: {result.data['verdict']}")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from .evidence import fingerprint, generate_keypair, load_public_key

    key, pub = generate_keypair(args.out)
    print(f"wrote {key} (private: keep it secret) and {pub}; fingerprint {fingerprint(load_public_key(pub))}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .evidence import verify_bundle

    result = verify_bundle(args.bundle, args.public_key)
    print(result.message, file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else EXIT_MISMATCH


def cmd_replay(args: argparse.Namespace) -> int:
    from ..cli import _with_bar
    from .replay import replay_bundle

    result = _with_bar("replay", replay_bundle, args.bundle, args.out, public_key=args.public_key, device=args.device)
    print(f"wrote {result.report}")
    print(result.summary())
    return 0 if result.identical else EXIT_MISMATCH


def cmd_purge(args: argparse.Namespace) -> int:
    from ..case import CaseStore
    from .purge import PURGE_LOG, purge_case

    store = CaseStore()
    receipt = purge_case(args.case, store)
    counts = receipt["details"]["counts"]
    print(f"purged case {args.case}: {counts['case']} case file(s), {counts['reports']} report file(s), "
          f"{counts['extracted_dataset']} extracted dataset file(s); receipt appended to {store.home / PURGE_LOG}")
    return 0


def cmd_check_record(args: argparse.Namespace) -> int:
    from .evidence import check_record, read_secret

    if bool(args.key) == bool(args.secret):
        raise AuditInputError("Give the data subject's --key, or the controller's --secret file, one of the two.")
    answer = check_record(Path(args.bundle), args.index, key=args.key, secret=read_secret(args.secret) if args.secret else None)
    print(json.dumps(answer, indent=1))
    return 0 if answer["found"] else EXIT_MISMATCH
