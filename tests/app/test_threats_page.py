"""The Threats page under AppTest: runs a threat and screens the forget request as background jobs."""

from __future__ import annotations

from tests.app.conftest import app, run_until, texts

PAGE = "7_Threats"


def test_threats_page_without_a_case_says_so() -> None:
    at = app(PAGE).run()
    assert not at.exception
    assert any("No case is open" in t for t in texts(at.info))


def test_threats_page_runs_a_threat_and_screens_the_request(install_case) -> None:
    install_case("demo")
    at = app(PAGE).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="threat_name").value == "targeted_request"
    at.number_input(key="threat_targeted_request_targets").set_value(1)
    at.number_input(key="threat_targeted_request_budget").set_value(3)
    at.text_input(key="threat_targeted_request_methods").set_value("neggrad")
    at.button(key="threat_run").click()
    run_until(at, lambda a: any("Threat targeted_request: done" in t for t in texts(a.success)))
    at.run()
    assert not at.exception and not at.error
    assert any("an attacker holding" in t for t in texts(at.info))

    at.button(key="screen_run").click()
    run_until(at, lambda a: any("Screening: done" in t for t in texts(a.success)))
    at.run()
    assert not at.exception
    decisions = [t for t in texts(at.success) + texts(at.warning) + texts(at.error) if t.startswith("Decision:")]
    assert decisions and any(word in decisions[0] for word in ("accept", "review"))
    assert any("**training_samples**" in t for t in texts(at.markdown))
