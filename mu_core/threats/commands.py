"""``python -m mu_core threat`` and ``python -m mu_core screen``: the commands' implementations
(``mu_core.cli`` declares their flags and imports this module only when one of them runs)."""

from __future__ import annotations

import argparse

from ..errors import AuditInputError

__all__ = ["cmd_screen", "cmd_threat"]


def _load(args: argparse.Namespace):
    from ..models import load_model

    return load_model(args.model, arch=args.arch, dataset=args.dataset, data_root=args.data_root)


def cmd_threat(args: argparse.Namespace) -> int:
    from ..cli import _with_bar
    from . import REQUEST_FILE, run_threat

    model, record = _load(args)
    params = list(args.param or [])
    if args.seed is not None:
        params.append(f"seed={args.seed}")
    result = _with_bar(args.name, run_threat, args.name, model, record, params=params, device=args.device)
    path = result.write(args.out)
    print(f"wrote {path}" + (f" and {path.parent / REQUEST_FILE}" if "request" in result.extra else ""))
    print(result.conclusion)
    return 0


def cmd_screen(args: argparse.Namespace) -> int:
    from ..cli import _with_bar
    from ..forget import read_request
    from .screen import screen_request

    if bool(args.forget) == bool(args.samples):
        raise AuditInputError("Give the request as --forget FILE (indices) or --samples NPZ (indices with their content), one of them.")
    model, record = _load(args)
    if args.samples:
        from .screen import read_samples

        index, x, y = read_samples(args.samples)
        samples = (x, y)
    else:
        index, samples = read_request(args.forget).indices, None
    result = _with_bar("screen", screen_request, model, record, index, samples=samples, method=args.method, tolerance=args.tolerance,
                       threshold=args.threshold, null_requests=args.null_requests, seed=args.seed, device=args.device)
    path = result.write(args.out)
    print(f"wrote {path}")
    print(f"decision: {result.decision}")
    for check in result.checks:
        print(f"  [{'pass' if check.passed else 'FAIL'}] {check.name}: {check.detail}")
    return 0
