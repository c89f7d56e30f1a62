"""The Inversion page under AppTest: says what is missing, states the setting, runs the attack in the background."""

from __future__ import annotations

from pathlib import Path

from mu_core.case import CaseStore
from tests.app.conftest import app, run_until, texts

PAGE = "5_Inversion"


def test_inversion_page_without_a_case_says_so() -> None:
    at = app(PAGE).run()
    assert not at.exception
    assert any("No case is open" in t for t in texts(at.info))


def test_inversion_page_asks_for_an_unlearned_model_first(install_case) -> None:
    install_case("demo")
    at = app(PAGE).run()
    assert not at.exception
    assert any("run an unlearning method" in t for t in texts(at.info))


def test_inversion_page_states_the_setting_and_offers_the_controls(install_case) -> None:
    install_case("unlearned")
    at = app(PAGE).run()
    assert not at.exception and not at.error
    assert any("Setting the attack assumes: **approximate**" in t for t in texts(at.info))
    assert {"inv_steps", "inv_restarts", "inv_tv"} <= {w.key for w in at.number_input}
    assert at.number_input(key="inv_steps").value == 1000


def test_inversion_page_runs_the_attack_on_one_forgotten_sample(install_case, audit_home: Path) -> None:
    from mu_core.forget import explicit_request
    from mu_core.models.io import read_record
    from mu_core.workflow import case_set_forget, case_unlearn

    case_id = install_case("demo")
    case = CaseStore(audit_home).get(case_id)
    record = read_record(case.file("original"))
    index = int(record.train_indices[3])
    case_set_forget(case, explicit_request([index], record.train_indices, record.n_train_split))
    case_unlearn(case, "neggrad")

    at = app(PAGE).run()
    at.number_input(key="inv_steps").set_value(40)
    at.number_input(key="inv_restarts").set_value(1)
    at.button(key="inv_button").click()
    run_until(at, lambda a: any("Unlearning inversion: done" in t for t in texts(a.success)))
    at.run()
    assert not at.exception and not at.error
    labels = [m.label for m in at.metric]
    assert "Rank 1 (singled out)" in labels and "Label inference accuracy" in labels
    assert any(f"**#{index}**" in t for t in texts(at.markdown))
    folder = case.path("inversion")
    assert (folder / "inversion.json").is_file() and (folder / f"sample_{index}.png").is_file()
    CaseStore(audit_home).delete(case_id)
    assert not folder.exists()


def test_inversion_page_sweeps_defenses_and_plots_them_against_test_accuracy(install_case, audit_home: Path) -> None:
    import json

    from mu_core.forget import explicit_request
    from mu_core.models.io import read_record
    from mu_core.workflow import case_set_forget, case_unlearn

    case_id = install_case("demo")
    case = CaseStore(audit_home).get(case_id)
    record = read_record(case.file("original"))
    case_set_forget(case, explicit_request([int(record.train_indices[3])], record.train_indices, record.n_train_split))
    case_unlearn(case, "neggrad")

    at = app(PAGE).run()
    at.text_input(key="def_prune").set_value("0.5, 1.5")  # a share of 1.5 cannot be pruned
    at.button(key="def_button").click().run()
    assert any("below 1" in t for t in texts(at.error)) and case.entry("defenses") is None

    at.text_input(key="def_prune").set_value("0.5")
    at.text_input(key="def_finetune").set_value("")
    at.number_input(key="def_steps").set_value(20)
    at.button(key="def_button").click()
    run_until(at, lambda a: any("Defense sweep (4 attacks): done" in t for t in texts(a.success)))
    at.run()
    assert not at.exception
    rows = json.loads(case.file("defenses").read_text())["rows"]
    assert [(r["defense"], r["strength"]) for r in rows] == [("none", 0.0), ("noise", 0.001), ("noise", 0.01), ("prune", 0.5)]
    assert all(0.0 <= r["test_acc"] <= 1.0 and 0.0 <= r["top1_share"] <= 1.0 for r in rows)
    assert len(at.get("plotly_chart")) >= 1
    # replacing the unlearned model drops the sweep: it described the old one
    case_unlearn(case, "finetune")
    assert case.entry("defenses") is None and not case.path("defenses.json").exists()
