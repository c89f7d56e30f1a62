"""The Neurons page under AppTest: says what is missing, explains in a background job, then shows
the stored results (ranking, CKA, labels, examples, attributions) without recomputing."""

from __future__ import annotations

import json

from mu_core.case import CaseStore
from tests.app.conftest import app, run_until, texts

PAGE = "6_Neurons"


def ranking(at):
    """The neuron ranking table (the one with a change column)."""
    return next(d.value for d in at.dataframe if "change (forget)" in d.value.columns)


def test_neurons_page_renders_without_a_case() -> None:
    at = app(PAGE).run()
    assert not at.exception
    assert any("No case is open" in t for t in texts(at.info))


def test_neurons_page_explains_in_the_background_and_shows_the_results(install_case, audit_home) -> None:
    case_id = install_case("unlearned")
    at = app(PAGE).run()
    assert not at.exception
    assert not at.dataframe  # nothing computed yet
    next(b for b in at.button if b.key == "neurons_button").click()
    run_until(at, lambda a: any("Explaining neurons: done" in t for t in texts(a.success)))
    at.run()
    assert not at.exception and not at.error
    case = CaseStore(audit_home).get(case_id)
    data = json.loads((case.path("neurons", "neurons.json")).read_text())
    assert data["models"] == ["original", "unlearned", "retrained"]
    assert case.entry("neurons")["layers"] == ["conv1", "conv2", "fc1", "fc2"]
    # a random forget request forgets no class as a whole: the page says so instead of counting
    assert any("No class was forgotten as a whole" in t for t in texts(at.info))
    table = ranking(at)
    assert "change (forget)" in table.columns and list(table["change (forget)"]) == sorted(table["change (forget)"], reverse=True)
    at.selectbox(key="neurons_layer").set_value("fc1").run()
    assert not at.exception
    assert len(ranking(at)) == 128
    at.selectbox(key="neurons_sample").set_value(1).run()
    at.radio(key="neurons_attr_method").set_value("neuron_integrated_gradients").run()
    assert not at.exception and not at.error
    # any neuron of the layer can be attributed, not only the precomputed most-changed ones
    picker = at.selectbox(key="neurons_attr_neuron")
    precomputed = data["attributions"]["top_neurons"]["fc1"]
    assert list(picker.options[: len(precomputed)]) == [f"neuron {n} (most changed, precomputed)" for n in precomputed]
    other = next(n for n in range(128) if n not in precomputed)
    charts_before = len(at.get("plotly_chart"))
    picker.set_value(other).run()
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) == charts_before
    specs = [chart.proto.spec for chart in at.get("plotly_chart")]
    assert any(f"unlearned: neuron {other}" in spec for spec in specs) and any(f"original: neuron {other}" in spec for spec in specs)
    assert at.button(key="neurons_button").label == "Recompute explanations"


def test_neurons_page_counts_the_forgotten_class_neurons(install_case, audit_home) -> None:
    from mu_core.forget import class_request
    from mu_core.models.io import read_record
    from mu_core.workflow import case_explain, case_retrain, case_set_forget

    case = CaseStore(audit_home).get(install_case("demo"))
    record = read_record(case.file("original"))
    from mu_core.data import load_dataset

    labels = load_dataset("digits").y_train.numpy()
    case_set_forget(case, class_request(record.train_indices, labels, 3, class_names=record.class_names))
    case_retrain(case)
    case_explain(case)
    at = app(PAGE).run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Original (before)"]) > int(metrics["Retrained"])
    assert metrics["Output units labelled with their class"].endswith("%")
