"""Every page under AppTest: renders alone, says what is missing, and does its one job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mu_core.case import CaseStore
from tests.app.conftest import ROOT, app, open_by_url, run_until, texts

PAGES = ["1_Model", "2_Forget", "3_Unlearn", "4_Membership"]


@pytest.mark.parametrize("page", [None, *PAGES])
def test_every_page_renders_without_a_case(page: str | None) -> None:
    at = app(page).run()
    assert not at.exception
    if page in ("2_Forget", "3_Unlearn", "4_Membership"):
        assert any("No case is open" in t for t in texts(at.info))


def test_home_demo_button_builds_a_ready_case_and_opens_it(audit_home: Path) -> None:
    at = app().run()
    assert any("No case is open" in t for t in texts(at.info))
    next(b for b in at.button if b.label == "Try the demo").click()
    run_until(at, lambda a: any("Building the demo case: done" in t for t in texts(a.success)))
    at.run()
    cases = CaseStore(audit_home).list()
    assert len(cases) == 1
    manifest = cases[0].manifest
    assert manifest["forget"]["count"] == 100
    assert {"original", "forget", "retrained", "unlearned", "audit", "demo"} <= set(manifest)
    assert manifest["demo"]["weak_verdict"] == "not_forgotten" and manifest["demo"]["retrain_verdict"] == "forgotten"
    assert at.session_state["case_id"] == cases[0].id
    assert at.query_params["case"] in (cases[0].id, [cases[0].id])


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_alone_with_a_ready_case(page: str, install_case) -> None:
    install_case("unlearned")
    at = app(page).run()
    assert not at.exception
    assert not at.error


def test_case_survives_a_restart_through_the_url(install_case) -> None:
    demo_id = install_case("demo")
    install_case("unlearned")
    at = app()
    at.query_params["case"] = demo_id
    at.run()
    assert at.session_state["case_id"] == demo_id


def test_a_session_without_case_in_its_url_opens_no_case(install_case) -> None:
    install_case("demo")
    _no_url = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)  # a new tab, no ?case=
    fresh = _no_url.run()
    assert fresh.session_state["case_id"] is None
    assert any("No case is open" in t for t in texts(fresh.info))


def test_home_renames_and_deletes_cases(install_case, audit_home: Path) -> None:
    case_id = install_case("demo")
    at = app().run()
    at.text_input(key=f"name-{case_id}").set_value("Renamed audit")
    at.button(key=f"rename-{case_id}").click().run()
    assert CaseStore(audit_home).get(case_id).name == "Renamed audit"
    at.button(key=f"delete-{case_id}").click().run()
    assert CaseStore(audit_home).list() == []
    assert not at.exception


def test_model_page_trains_in_the_background_and_shows_the_model(audit_home: Path) -> None:
    at = app("1_Model").run()
    at.selectbox(key="train_arch").select("mlp")
    at.number_input(key="train_epochs").set_value(3)
    at.button(key="train_button").click()
    run_until(at, lambda a: any("Current model: **mlp** on **digits**" in t for t in texts(a.success)))
    case = CaseStore(audit_home).list()[0]
    assert case.manifest["original"]["summary"]["arch"] == "mlp"
    assert case.manifest["original"]["summary"]["train_samples"] == 1437


def test_forget_page_saves_a_class_request_and_refuses_bad_indices(install_case, audit_home: Path) -> None:
    case_id = install_case("demo")
    at = app("2_Forget").run()
    at.radio(key="forget_mode").set_value("A class (or part of one)").run()
    at.selectbox(key="forget_class").select(3)
    at.slider(key="forget_share").set_value(0.5)
    at.button(key="forget_save").click().run()
    assert not at.exception
    entry = CaseStore(audit_home).get(case_id).manifest["forget"]
    assert entry["kind"] == "class" and 70 <= entry["count"] <= 75  # half of the ~146 training 3s
    assert "retrained" not in CaseStore(audit_home).get(case_id).manifest  # made for the old request

    at.radio(key="forget_mode").set_value("Indices").run()
    at.text_area(key="forget_text").set_value("1, 2, banana")
    at.button(key="forget_save").click().run()
    assert any("'banana'" in t and "not a whole number" in t for t in texts(at.error))
    at.text_area(key="forget_text").set_value("5\n99999")
    at.button(key="forget_save").click().run()
    assert any("out of range" in t for t in texts(at.error))
    assert CaseStore(audit_home).get(case_id).manifest["forget"]["kind"] == "class"  # kept


def test_unlearn_page_needs_a_forget_request_first(audit_home: Path) -> None:
    store = CaseStore(audit_home)
    case = store.create("empty")
    open_by_url(case.id)
    at = app("3_Unlearn").run()
    assert any("train or upload a model" in t for t in texts(at.info))


def test_unlearn_page_runs_a_method_and_compares_accuracy(install_case, audit_home: Path) -> None:
    case_id = install_case("demo")
    at = app("3_Unlearn").run()
    at.selectbox(key="unlearn_method").select("neggrad")
    at.button(key="unlearn_button").click()
    run_until(at, lambda a: any("Unlearning with neggrad: done" in t for t in texts(a.success)))
    at.run()
    frame = at.dataframe[0].value
    manifest = CaseStore(audit_home).get(case_id).manifest
    assert manifest["unlearned"]["summary"]["method"] == "neggrad"
    assert list(frame.index) == ["original", "unlearned", "retrained"]
    assert frame.loc["original", "forget accuracy"] == pytest.approx(1.0)
    assert 0.0 <= frame.loc["unlearned", "forget accuracy"] <= 1.0


def test_membership_page_audits_and_reports_all_three_models(install_case, audit_home: Path) -> None:
    case_id = install_case("unlearned")
    at = app("4_Membership").run()
    assert not any("no unlearned" in t for t in texts(at.info))  # the case has both; no stale note
    at.number_input(key="audit_retrains").set_value(2).run()
    assert any("2 in the reference, 1 to train, estimated" in t for t in texts(at.caption))  # the estimate comes first
    at.button(key="audit_button").click()
    run_until(at, lambda a: any("Membership audit: done" in t for t in texts(a.success)))
    at.run()
    report = json.loads((audit_home / "cases" / case_id / "audit" / "report.json").read_text())
    assert set(report["attacks"]["loss"]) == {"original", "unlearned", "retrained"}
    assert report["verdict"] in ("forgotten", "not_forgotten", "inconclusive")
    assert report["reference"]["retrains"] == 2 and (audit_home / "cases" / case_id / "references" / "retrains").is_dir()
    banner = texts(at.success) + texts(at.error) + texts(at.warning)
    assert any(report["verdict_reason"][:40] in t for t in banner)
    assert [m.value for m in at.metric][:3] == [str(report["record_counts"][k]) for k in ("forgotten", "not_forgotten", "inconclusive")]
    assert any("epsilon lower bound" in d.value.columns and "AUC" in d.value.columns for d in at.dataframe)  # beside AUC
    assert len(at.get("plotly_chart")) == 4  # linear ROC, log-log ROC, per-class AUC, per-record exposure
    assert len(report["records"]) == report["forget"]["count"]
    record_tables = [d.value for d in at.dataframe if "exposure" in d.value.columns]
    assert record_tables and len(record_tables[0]) == report["forget"]["count"]
    assert {"report.json", "scores.csv", "roc.csv", "records.csv"} <= {p.name for p in (audit_home / "cases" / case_id / "audit").iterdir()}


def test_membership_page_runs_a_reference_model_attack_and_keeps_the_models(install_case, audit_home: Path) -> None:
    case_id = install_case("unlearned")
    at = app("4_Membership").run()
    at.multiselect(key="audit_attacks").set_value(["loss", "lira_online"])
    at.run()
    at.slider(key="audit_refs").set_value(4)
    at.number_input(key="audit_retrains").set_value(1)
    at.run()
    at.button(key="audit_button").click()
    run_until(at, lambda a: any("Membership audit: done" in t for t in texts(a.success)))
    at.run()
    case_dir = audit_home / "cases" / case_id
    report = json.loads((case_dir / "audit" / "report.json").read_text())
    assert report["provenance"]["reference_models"]["count"] == 4
    assert (case_dir / "references" / "references.safetensors").is_file()
    assert report["records"][0]["attack"] == "lira_online"


def test_membership_page_estimates_say_how_many_jobs_ray_runs_at_once(install_case, audit_home: Path, monkeypatch) -> None:
    from mu_core.executor import ExecutorSettings, save_settings

    monkeypatch.setenv("MU_AUDIT_RAY_CPUS", "4")  # the local Ray that would start: 4 one-CPU jobs at once (none is started)
    monkeypatch.delenv("MU_AUDIT_EXECUTOR", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    install_case("unlearned")
    save_settings(ExecutorSettings("ray", cpus_per_job=1))
    at = app("4_Membership").run()
    at.multiselect(key="audit_attacks").set_value(["loss", "lira_online"])
    at.number_input(key="audit_retrains").set_value(5)  # the case's retrained model is the first
    at.run()
    assert any("4 to train, estimated" in t and "on Ray, 4 at a time" in t for t in texts(at.caption))
    at.button(key="audit_estimate").click().run()
    assert not at.exception
    assert any("Estimated training time for 16 reference models" in t and "4 at a time on Ray" in t for t in texts(at.markdown))


def test_unlearn_page_compares_methods_and_uses_one_for_the_audit(install_case, audit_home: Path) -> None:
    case_id = install_case("demo")
    at = app("3_Unlearn").run()
    at.multiselect(key="compare_methods").set_value(["finetune", "neggrad"])
    at.checkbox(key="compare_floor").check()
    at.button(key="compare_button").click()
    run_until(at, lambda a: any("Comparing 2 method(s): done" in t for t in texts(a.success)))
    at.run()
    assert any("Noise floor: retraining once more with seed 1" in t for t in texts(at.info))
    assert any("Doing nothing (the original model" in t for t in texts(at.caption))
    table = at.dataframe(key="compare_table").value if "compare_table" in [d.key for d in at.dataframe] else at.dataframe[-1].value
    assert list(table.index) == ["retrain", "finetune", "neggrad"]
    assert table.loc["retrain", "Avg. Gap"] == 0.0
    assert len(at.get("plotly_chart")) == 1
    at.selectbox(key="compare_use").select("neggrad")
    at.button(key="compare_use_button").click().run()
    manifest = CaseStore(audit_home).get(case_id).manifest
    assert manifest["unlearned"]["summary"]["method"] == "neggrad"
    assert manifest["compare"]["methods"] == ["retrain", "finetune", "neggrad"]
