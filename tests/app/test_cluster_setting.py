"""The home page's "where jobs run" setting (engine: mu_core.executor)."""

from __future__ import annotations

from pathlib import Path

from mu_core.executor import ExecutorSettings, executor_settings
from tests.app.conftest import app, run_until, texts


def test_home_saves_the_cluster_setting_and_shows_the_clusters_resources(audit_home: Path, monkeypatch) -> None:
    import pages._lib.cluster as cluster

    monkeypatch.delenv("MU_AUDIT_EXECUTOR", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    asked = []

    def fake_resources(settings):
        asked.append(settings)
        return {"executor": "ray", "address": settings.address, "nodes": 3, "cpus": 24.0, "gpus": 2.0, "memory_gb": 96.0}

    monkeypatch.setattr(cluster, "cluster_resources", fake_resources)
    at = app().run()
    assert not at.exception
    assert any("In this process" in e.label for e in at.expander)
    check = next(b for b in at.button if b.label == "Check cluster")
    assert check.disabled  # nothing to check while jobs run here
    at.radio(key="executor_kind").set_value("ray")
    at.text_input(key="executor_address").set_value("127.0.0.1:6380")
    at.number_input(key="executor_cpus").set_value(2)
    next(b for b in at.button if b.label == "Save setting").click().run()
    assert any("Saved" in t for t in texts(at.success))
    assert executor_settings() == ExecutorSettings("ray", "127.0.0.1:6380", 2.0)
    assert (audit_home / "executor.json").is_file()
    assert any("On a Ray cluster" in e.label for e in at.expander)
    next(b for b in at.button if b.label == "Check cluster").click()
    run_until(at, lambda a: any(m.label == "GPUs" for m in a.metric))
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Nodes"], metrics["CPUs"], metrics["GPUs"]) == ("3", "24", "2")
    assert asked and asked[0].address == "127.0.0.1:6380"
