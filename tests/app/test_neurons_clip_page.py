"""The Neurons page with a foundation model configured (a tiny open_clip checkpoint built here, no
pretrained weights, the network unreachable): both labellings side by side, with where they agree."""

from __future__ import annotations

import json
import math

import pytest

from mu_core.case import CaseStore
from tests.app.conftest import app, run_until, texts
from tests.clip_fixtures import VOCABULARY, block_network, make_tiny_clip

pytest.importorskip("open_clip")

PAGE = "6_Neurons"


def side_by_side(at):
    """The table with both labellings of the chosen layer's neurons."""
    return next(d.value for d in at.dataframe if "open_clip label" in d.value.columns)


def test_neurons_page_without_a_checkpoint_says_how_to_configure_one(install_case, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MU_AUDIT_CLIP_CHECKPOINT", raising=False)
    install_case("unlearned")
    at = app(PAGE).run()
    assert not at.exception
    assert any("MU_AUDIT_CLIP_CHECKPOINT" in t for t in texts(at.caption))


def test_neurons_page_shows_both_labellings_side_by_side_offline(install_case, audit_home, tmp_path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint, config, vocabulary = make_tiny_clip(tmp_path / "clip")
    monkeypatch.setenv("MU_AUDIT_CLIP_CHECKPOINT", str(checkpoint))
    monkeypatch.setenv("MU_AUDIT_CLIP_MODEL", str(config))
    monkeypatch.setenv("MU_AUDIT_CLIP_VOCABULARY", str(vocabulary))
    attempts = block_network(monkeypatch)
    case_id = install_case("unlearned")
    at = app(PAGE).run()
    assert not at.exception
    assert any("Foundation-model labels: open_clip" in t and "tiny_clip.safetensors" in t for t in texts(at.caption))
    next(b for b in at.button if b.key == "neurons_button").click()
    run_until(at, lambda a: any("Explaining neurons: done" in t for t in texts(a.success)))
    at.run()
    assert not at.exception and not at.error
    case = CaseStore(audit_home).get(case_id)
    assert case.entry("neurons")["compared_labeller"] == "open_clip"
    data = json.loads(case.path("neurons", "neurons.json").read_text())
    assert data["labeller"] == "selectivity" and data["compared_labeller"] == "open_clip"
    allowed = set(VOCABULARY) | {c["name"] for c in data["concepts"]}
    clip_labels = [n["compared"] for n in data["neurons"]]
    assert all(c["label"] in allowed and math.isfinite(c["score"]) for c in clip_labels)
    assert any(c["label"] in VOCABULARY for c in clip_labels)
    # the page: agreement per model, and the layer's neurons with both labels
    metrics = {m.label: m.value for m in at.metric}
    assert {"original: labels agree", "unlearned: labels agree", "retrained: labels agree"} <= set(metrics)
    side = side_by_side(at)
    assert {"selectivity label", "open_clip label", "open_clip score", "best concepts", "agree"} <= set(side.columns)
    assert len(side) == 16  # conv1's channels, the first layer shown
    assert set(side["agree"]) <= {"yes", "no", "–"}
    first = next(n for n in data["neurons"] if n["model"] == "original" and n["layer"] == "conv1" and n["index"] == side.index[0])
    assert side.iloc[0]["open_clip label"] == first["compared"]["label"]
    at.selectbox(key="neurons_layer").set_value("fc1").run()
    at.radio(key="neurons_side_model").set_value("retrained").run()
    assert not at.exception and len(side_by_side(at)) == 128
    assert any("Responds to" in m for m in texts(at.markdown))  # the description next to the top-activating examples
    assert attempts == []
