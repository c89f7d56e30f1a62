"""The Report page: asks for an audit first, builds the report in the background, offers the files."""

from __future__ import annotations

import json
from pathlib import Path

from mu_core.case import CaseStore
from tests.app.conftest import app, run_until, texts


def test_report_page_renders_without_a_case() -> None:
    at = app("8_Report").run()
    assert not at.exception
    assert any("No case is open" in t for t in texts(at.info))


def test_report_page_asks_for_the_audit_first(install_case) -> None:
    install_case("unlearned")
    at = app("8_Report").run()
    assert not at.exception and not at.error
    assert any("membership audit" in t for t in texts(at.info))


def test_report_page_builds_the_report_and_offers_downloads(install_case, audit_home: Path) -> None:
    from mu_core.workflow import case_audit

    case = CaseStore(audit_home).get(install_case("unlearned"))
    case_audit(case, bootstrap=20)
    at = app("8_Report").run()
    at.toggle(key="report_pdf").set_value(False)
    next(b for b in at.button if b.label == "Build the report").click()
    run_until(at, lambda a: any("Building the report: done" in t for t in texts(a.success)))
    at.run()
    assert not at.exception
    evidence = json.loads(case.path("report", "full", "evidence.json").read_text())
    assert evidence["source"]["id"] == case.id and evidence["signature"] is None
    assert any("verdict" in t for t in texts(at.markdown))
    at.button(key="report_verify").click().run()
    assert any(t.startswith("intact, unsigned") for t in texts(at.success))
    assert json.loads(case.path("log.jsonl").read_bytes().splitlines()[-1])["action"] == "report"


def test_home_delete_for_good_purges_and_keeps_a_receipt(install_case, audit_home: Path) -> None:
    case_id = install_case("demo")
    at = app().run()
    at.button(key=f"delete-{case_id}").click().run()
    assert not at.exception
    assert CaseStore(audit_home).list() == []
    receipt = json.loads((audit_home / "purge-log.jsonl").read_bytes().splitlines()[-1])
    assert receipt["details"]["case"] == case_id
    assert [p for p in audit_home.rglob("*") if p.is_file() and p.name != "purge-log.jsonl" and case_id.encode() in p.read_bytes()] == []
