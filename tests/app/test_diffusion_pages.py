"""The pages on a diffusion-model case: methods and attacks for DDPMs, the Generate view, and
the classifier-only pages saying so."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.app.conftest import app, open_by_url, run_until, texts


@pytest.fixture(scope="module")
def ddpm_store(tmp_path_factory: pytest.TempPathFactory):
    """A case with a tiny DDPM (T = 20, 80 digits, a few steps), 10 forgotten samples and its retrain."""
    from mu_core.case import CaseStore
    from mu_core.forget import random_request
    from mu_core.models.io import read_record
    from mu_core.workflow import case_retrain, case_set_forget, case_train

    store = CaseStore(tmp_path_factory.mktemp("ddpm_home"))
    case = store.create("DDPM")
    case_train(case, "digits", "ddpm", epochs=3, train_size=80)
    record = read_record(case.file("original"))
    case_set_forget(case, random_request(record.train_indices, 10, seed=0))
    case_retrain(case)
    return store, case.id


@pytest.fixture
def ddpm_case(ddpm_store, audit_home: Path) -> str:
    store, case_id = ddpm_store
    shutil.copytree(store.root / case_id, audit_home / "cases" / case_id)
    open_by_url(case_id)
    return case_id


@pytest.mark.parametrize("page", ["5_Inversion", "6_Neurons"])
def test_classifier_pages_say_they_cover_classifiers_only(page: str, ddpm_case) -> None:
    at = app(page).run()
    assert not at.exception
    assert any("covers classifiers only" in t for t in texts(at.info))


def test_unlearn_page_offers_diffusion_methods_and_runs_one(ddpm_case, audit_home: Path) -> None:
    at = app("3_Unlearn").run()
    assert not at.exception
    assert [o.split(" – ")[0] for o in at.selectbox(key="unlearn_method").options] == ["finetune", "neggrad", "erasediff"]
    at.selectbox(key="unlearn_method").select("erasediff")
    at.run()
    at.number_input(key="param_erasediff_steps").set_value(5)
    at.button(key="unlearn_button").click()
    run_until(at, lambda a: any("Unlearning with erasediff: done" in t for t in texts(a.success)))
    manifest = json.loads((audit_home / "cases" / ddpm_case / "case.json").read_text())
    assert manifest["unlearned"]["summary"]["method"] == "erasediff"
    assert any("covers classifiers only" in t for t in texts(at.info))  # the comparison table is for classifiers


def test_membership_page_defaults_to_diffusion_attacks(ddpm_case, audit_home: Path) -> None:
    at = app("4_Membership").run()
    assert at.multiselect(key="audit_attacks").value == ["diffusion_loss", "secmi", "pia", "score_norm"]
    at.multiselect(key="audit_attacks").set_value(["diffusion_loss", "pia"])
    at.run()
    at.button(key="audit_button").click()
    run_until(at, lambda a: any("Membership audit: done" in t for t in texts(a.success)))
    report = json.loads((audit_home / "cases" / ddpm_case / "audit" / "report.json").read_text())
    assert set(report["attacks"]) == {"diffusion_loss", "pia"}
    assert set(report["attacks"]["pia"]) == {"original", "retrained"}


def test_generate_page_shows_each_models_samples_side_by_side(ddpm_case, audit_home: Path) -> None:
    at = app("9_Generate").run()
    assert not at.exception
    at.number_input(key="gen_per_class").set_value(2)
    at.number_input(key="gen_steps").set_value(3)
    at.run()
    at.button(key="gen_button").click()
    run_until(at, lambda a: any("Generating samples: done" in t for t in texts(a.success)))
    at.run()
    folder = audit_home / "cases" / ddpm_case / "generate"
    assert sorted(p.name for p in folder.iterdir()) == ["original", "retrained"]
    assert json.loads((folder / "original" / "samples.json").read_text())["per_class"] == 2
    assert len(at.get("image")) == 2 and {"**original**", "**retrained**"} <= {m.value for m in at.markdown}


def test_generate_page_on_a_classifier_case_needs_a_diffusion_model(install_case) -> None:
    install_case("demo")
    at = app("9_Generate").run()
    assert any("needs a diffusion model" in t for t in texts(at.info))
