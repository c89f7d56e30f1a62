"""Report: the audit as a file a reviewer can keep: HTML, PDF, evidence and a signed bundle."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st

from pages._lib import ui

ui.setup_page("Report", ":material/description:")
st.title(":material/description: Report")
st.caption(
    "The audit as evidence: a self-contained HTML report, the same as PDF, `evidence.json` (every input and output "
    "with its SHA-256) and a bundle with a manifest, signed with your Ed25519 key. Built from the results already in "
    "the case; nothing is recomputed. The same as `python -m mu_core report --case ID --out DIR`."
)

case = ui.current_case()
if not ui.need(case, "original", "forget"):
    st.stop()
if not case.entry("audit") or not case.path("audit", "report.json").is_file():
    st.info("First run the membership audit on the **Membership** page: the report is built from its results.")
    ui.link("membership", "Go to Membership", ":material/arrow_forward:")
    st.stop()

from mu_core.report.build import OUTPUT_FILES, build_report, chromium_path  # noqa: E402
from mu_core.report.evidence import sha256_file, verify_bundle  # noqa: E402

REPORT_DIR = "report"
c1, c2, c3 = st.columns([1, 1, 2])
redact = c1.toggle("Redact", key="report_redact",
                   help="No training pixels and no raw indices: records are named by a keyed hash each data subject can check.")
with_pdf = c2.toggle("PDF", value=chromium_path() is not None, key="report_pdf", disabled=chromium_path() is None,
                     help="Printed from the HTML by headless Chromium" + ("" if chromium_path() else " (not found on this machine)"))
sign_key = c3.text_input("Signing key (optional)", key="report_key", placeholder="path to NAME.key from `python -m mu_core keygen`",
                         help="An Ed25519 private key on this machine; the bundle's manifest is signed with it.")
out = case.path(REPORT_DIR, "redacted" if redact else "full")
key = ui.job_key(case, "report")


def _build() -> None:
    path = sign_key.strip() or None
    ui.start_job(key, "Building the report", lambda progress: str(build_report(
        case=case, out=out, redact=redact, sign_key=path, pdf=with_pdf, progress=progress).bundle))


st.button("Build the report", type="primary", on_click=_build, disabled=any(j.key == key for j in ui.jobs().running()))
ui.job_status(key)

job = ui.jobs().get(key)
if job is not None and job.running:
    st.stop()  # files are being rewritten; the status panel above reruns the page when the job ends
evidence_path = out / "evidence.json"
if not all((out / name).is_file() for name in ("evidence.json", "report.html", "bundle.zip")):
    st.caption("No report of this kind yet for this case.")
    st.stop()

evidence = json.loads(evidence_path.read_text(encoding="utf-8"))
if evidence["audit"]["report_sha256"] != sha256_file(case.path("audit", "report.json")):
    st.warning("The audit changed since this report was built: build it again.")
signature = evidence.get("signature")
st.markdown(f"Built {evidence['times']['report'].replace('T', ' ')} · verdict **{evidence['verdict'].replace('_', ' ')}** · "
            + (f"signed by `{signature['fingerprint']}`" if signature else "not signed")
            + (" · redacted" if evidence.get("redacted") else ""))

d1, d2, d3, d4 = st.columns(4)
labels = {"report.html": ("HTML report", "text/html"), "report.pdf": ("PDF report", "application/pdf"),
          "bundle.zip": ("Bundle (zip)", "application/zip"), "evidence.json": ("evidence.json", "application/json")}
for col, name in zip((d1, d2, d3, d4), ("report.html", "report.pdf", "bundle.zip", "evidence.json"), strict=True):
    path = out / name
    if path.is_file():
        col.download_button(labels[name][0], path.read_bytes(), file_name=name, mime=labels[name][1], key=f"dl-{name}",
                            icon=":material/download:")
if evidence.get("redacted") and (out / OUTPUT_FILES[-1]).is_file():
    st.info(f"The redaction secret is kept at `{out / OUTPUT_FILES[-1]}`, outside the bundle. A data subject's key: "
            f"`python -m mu_core check-record bundle.zip --index N --secret {out / OUTPUT_FILES[-1]}`.", icon=":material/key:")

if st.button("Verify the bundle", key="report_verify"):
    result = verify_bundle(out / "bundle.zip")
    (st.success if result.ok else st.error)(result.message)

st.subheader("Preview")
st.iframe((out / "report.html").read_text(encoding="utf-8"), height=900)
