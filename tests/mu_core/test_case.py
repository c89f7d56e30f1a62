"""Audit cases on disk: creation, listing, renaming, deletion, dependent entries and the demo."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mu_core.case import CaseStore, atomic_write_text
from mu_core.case import audit_home as home_folder
from mu_core.errors import AuditInputError


@pytest.fixture
def store() -> CaseStore:
    return CaseStore()


def leftovers(folder) -> list[str]:
    """Temporary or partial files anywhere under ``folder``."""
    return [p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".partial")) or p.name.startswith(".deleted-")]


def test_store_lives_under_mu_audit_home(store, audit_home):
    assert home_folder() == audit_home
    assert store.root == audit_home / "cases"
    assert store.list() == []


def test_created_case_has_an_id_a_name_and_a_manifest(store):
    case = store.create("  digits run  ", dataset={"name": "digits"})
    assert re.fullmatch(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}", case.id)
    manifest = json.loads((case.dir / "case.json").read_text())
    assert manifest["id"] == case.id and manifest["name"] == "digits run"
    assert manifest["dataset"] == {"name": "digits"}
    assert manifest["created"] == manifest["updated"]
    unnamed = store.create()
    assert unnamed.name == f"Case {unnamed.id}"


def test_list_rename_and_delete(store):
    first, second = store.create("first"), store.create("second")
    assert {c.id for c in store.list()} == {first.id, second.id}
    renamed = store.rename(first.id, "  renamed ")
    assert renamed.name == "renamed" and store.get(first.id).name == "renamed"
    with pytest.raises(AuditInputError, match="cannot be empty"):
        store.rename(first.id, "   ")
    store.delete(second.id)
    assert [c.id for c in store.list()] == [first.id]
    assert not second.dir.exists()
    assert leftovers(store.root) == []


def test_damaged_case_is_skipped_by_list_and_refused_by_manifest(store):
    good, bad = store.create("good"), store.create("bad")
    (bad.dir / "case.json").write_text("{not json")
    assert [c.id for c in store.list()] == [good.id]
    with pytest.raises(AuditInputError, match=r"damaged case\.json"):
        bad.manifest  # noqa: B018


@pytest.mark.parametrize("case_id", ["", "../../etc", "20240101-000000-zzzzzz", "latest"])
def test_get_refuses_what_is_not_a_case_id(store, case_id):
    with pytest.raises(AuditInputError, match="is not a case id"):
        store.get(case_id)


def test_deleted_case_cannot_be_fetched_or_read(store):
    case = store.create("doomed")
    store.delete(case.id)
    with pytest.raises(AuditInputError, match=f"Case '{case.id}' does not exist"):
        store.get(case.id)
    with pytest.raises(AuditInputError, match="no longer exists"):
        case.manifest  # noqa: B018
    with pytest.raises(AuditInputError, match="does not exist"):
        store.delete(case.id)


def test_updates_are_atomic_and_leave_no_temporary_files(store):
    case = store.create("atomic")
    for step in range(5):
        case.update(step=step, note=None if step % 2 else "even")
    manifest = case.manifest
    assert manifest["step"] == 4 and manifest["note"] == "even"
    atomic_write_text(case.path("notes", "a.txt"), "hello")
    assert case.path("notes", "a.txt").read_text() == "hello"
    assert sorted(p.name for p in case.dir.rglob("*")) == ["a.txt", "case.json", "notes"]


def test_update_with_none_deletes_a_key(store):
    case = store.create("keys", extra=1)
    case.update(extra=None)
    assert "extra" not in case.manifest


def test_new_original_drops_every_downstream_entry_and_its_files(store):
    case = store.create("chain")
    case.path("original.safetensors").write_bytes(b"v1")
    case.set_entry("original", {"file": "original.safetensors"})
    case.path("forget.json").write_text("{}")
    case.set_entry("forget", {"file": "forget.json", "count": 3})
    for role in ("unlearned", "retrained"):
        case.path(f"{role}.safetensors").write_bytes(b"w")
        case.set_entry(role, {"file": f"{role}.safetensors"})
    atomic_write_text(case.path("audit", "report.json"), "{}")
    case.set_entry("audit", {"file": "audit"})
    assert case.file("audit") == case.path("audit")
    atomic_write_text(case.path("threats", "screen", "screen.json"), "{}")  # the threats lab ran on the old model
    case.set_entry("threats", {"file": "threats", "runs": {"screen": {}}})

    case.path("original.safetensors").write_bytes(b"v2")
    manifest = case.set_entry("original", {"file": "original.safetensors", "sha256": "v2"})
    assert manifest["original"] == {"file": "original.safetensors", "sha256": "v2"}
    assert not {"forget", "unlearned", "retrained", "audit", "threats"} & set(case.manifest)
    assert sorted(p.name for p in case.dir.iterdir()) == ["case.json", "original.safetensors"]
    assert case.file("forget") is None


def test_new_unlearned_model_drops_only_the_audit(store):
    case = store.create("partial")
    case.set_entry("forget", {"file": "forget.json"})
    case.set_entry("retrained", {"file": "retrained.safetensors"})
    case.set_entry("audit", {"file": "audit"})
    case.set_entry("unlearned", {"file": "unlearned.safetensors"})
    assert {"forget", "retrained", "unlearned"} <= set(case.manifest)
    assert "audit" not in case.manifest


def test_entry_file_outside_the_case_is_never_removed(store, tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    case = store.create("escape")
    case.set_entry("forget", {"file": "../../../precious.txt"})
    case.set_entry("original", {"file": "original.safetensors"})
    assert outside.read_text() == "keep me"


@pytest.mark.slow
def test_demo_case_teaches_a_caught_weak_method_and_a_cleared_retrain(store):
    from mu_core.demo import DEMO, RETRAIN_AUDIT
    from mu_core.models.io import read_record
    from mu_core.workflow import case_forget_request, make_demo_case

    case = make_demo_case(store)
    assert store.list()[0].id == case.id and case.name == "Digits demo"
    for role in ("original", "unlearned", "retrained"):
        assert case.file(role) is not None and case.file(role).stat().st_size > 0
        assert len(case.entry(role)["sha256"]) == 64
    assert case.entry("forget")["count"] == 100 and case.file("forget") is not None
    request = case_forget_request(case)
    original, retrained = read_record(case.file("original")), read_record(case.file("retrained"))
    assert original.arch == DEMO["arch"] and len(original.train_indices) == DEMO["train_size"]
    assert retrained.unlearning["method"] == "retrain"
    assert np.setdiff1d(original.train_indices, request.indices).tolist() == retrained.train_indices.tolist()
    assert case.entry("audit")["verdict"] == "not_forgotten"
    assert (case.path(RETRAIN_AUDIT) / "report.json").is_file()
    demo = case.entry("demo")
    assert demo["weak_verdict"] == "not_forgotten" and demo["retrain_verdict"] == "forgotten"
    assert demo["unlearned_sha256"] == case.entry("unlearned")["sha256"]
    assert leftovers(case.dir) == []
