"""Report benchmark: what the evidence costs on a digits case (the demo cnn, NegGrad, the default
audit): building the report with and without the PDF, verifying, replaying (against the audit's
own time), bundle sizes, and hashing speed on a ResNet-18 file.

Run from the repository root: ``.venv/bin/python benchmarks/report.py``. Prints Markdown; the
numbers in BENCHMARKS.md come from it. Ratios are measured inside one run (the machine is shared).
"""

from __future__ import annotations

import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - started, out


def main() -> None:
    from mu_core.case import CaseStore
    from mu_core.models import build_model, save_model, sha256_file
    from mu_core.models.io import read_record
    from mu_core.report import build_report, generate_keypair, replay_bundle, verify_bundle, weights_digest
    from mu_core.report.build import chromium_path
    from mu_core.workflow import case_audit, case_unlearn, make_demo_case

    tmp = Path(tempfile.mkdtemp(prefix="bench_report_"))
    store = CaseStore(tmp / "home")
    case = make_demo_case(store)
    case_unlearn(case, "neggrad")
    audit_s, _ = timed(case_audit, case)
    key, _ = generate_keypair(tmp / "bench")
    rows = [("membership audit (default 4 attacks, 200 resamples), for scale", audit_s)]
    no_pdf_s, _ = timed(build_report, case=case, out=tmp / "nopdf", sign_key=key, pdf=False)
    rows.append(("report without PDF (hashes, data digest, HTML, signed bundle)", no_pdf_s))
    if chromium_path():
        full_s, result = timed(build_report, case=case, out=tmp / "full", sign_key=key)
        rows.append(("report with PDF (headless Chromium)", full_s))
    else:
        result = build_report(case=case, out=tmp / "full", sign_key=key, pdf=False)
    redact_s, _ = timed(build_report, case=case, out=tmp / "red", redact=True, pdf=False)
    rows.append(("redacted report without PDF", redact_s))
    verify_s, verdict = timed(verify_bundle, result.bundle)
    assert verdict.ok
    rows.append(("verify (every file re-hashed, signature, trail)", verify_s))
    replay_s, replay = timed(replay_bundle, result.bundle, tmp / "replay")
    rows.append((f"replay ({'identical' if replay.identical else 'DIFFERENT'}, {replay.compared:,} numbers)", replay_s))

    print("| step | seconds |\n| --- | --- |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} |")
    print(f"\nreplay / audit time: {replay_s / audit_s:.2f}x; PDF share of a report: "
          f"{(full_s - no_pdf_s) / full_s:.0%}" if chromium_path() else "")

    print("\n| bundle member | bytes | compressed |\n| --- | --- | --- |")
    with zipfile.ZipFile(result.bundle) as archive:
        for info in archive.infolist():
            print(f"| {info.filename} | {info.file_size:,} | {info.compress_size:,} |")
    print(f"| **bundle.zip** | | {result.bundle.stat().st_size:,} |")

    record = read_record(case.file("original"))
    big = save_model(build_model("resnet18", (3, 32, 32), 10), record, tmp / "resnet18.safetensors")
    sha_s, _ = timed(sha256_file, big)
    digest_s, _ = timed(weights_digest, big)
    size = big.stat().st_size / 1024**2
    print(f"\nResNet-18 file {size:.1f} MiB: SHA-256 {sha_s:.3f} s ({size / sha_s:.0f} MiB/s), "
          f"weights digest {digest_s:.3f} s ({size / digest_s:.0f} MiB/s)")


if __name__ == "__main__":
    main()
