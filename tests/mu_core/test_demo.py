"""The teaching demo: ``python -m mu_core demo`` builds a case where the audit has power, catches a weak
method and clears the exact retrain."""

from __future__ import annotations

import json

from mu_core.cli import EXIT_BAD_INPUT, main


def test_demo_prints_both_verdicts_and_its_time(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "weak method (neggrad): not_forgotten." in printed
    assert "exact retrain: forgotten." in printed
    assert "s wall clock" in printed and "s CPU" in printed
    weak = json.loads((out / "audit" / "report.json").read_text())
    exact = json.loads((out / "audit-retrain" / "report.json").read_text())
    assert weak["verdict"] == "not_forgotten" and exact["verdict"] == "forgotten" and exact["has_power"]
    assert weak["reference"]["retrains"] == exact["reference"]["retrains"] == 4
    assert 0 not in exact["reference"]["seeds"]  # the audited retrain (seed 0) is not in its own reference
    assert {"original.safetensors", "unlearned.safetensors", "retrained.safetensors", "forget.json", "case.json"} <= {
        p.name for p in out.iterdir()}
    manifest = json.loads((out / "case.json").read_text())
    assert manifest["demo"]["weak_verdict"] == "not_forgotten" and manifest["demo"]["seconds"]["cpu"] > 0
    assert main(["demo", "--out", str(out)]) == EXIT_BAD_INPUT  # never overwrites
