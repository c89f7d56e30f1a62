"""Issue 12 in the engine: deterministic model files, data folders a file cannot choose, cases
built whole or not at all, owners, and the launcher's listen address."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mu_core.case import CaseStore
from mu_core.data import DatasetSpec, load_dataset, trusted_root
from mu_core.errors import AuditInputError
from mu_core.models import load_model, save_model
from mu_core.models.io import read_record
from mu_core.serve import auth_configured, serve_command

ROOT = Path(__file__).resolve().parents[2]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_identical_weights_give_an_identical_file_hash_whatever_the_timings(digits_mlp, tmp_path):
    model, record = digits_mlp
    slow = record.with_updates(metrics={**record.metrics, "train_seconds": 99.0},
                               unlearning={"method": "finetune", "params": {}, "forget_indices": [1, 2], "seconds": 7.5})
    fast = record.with_updates(metrics={**record.metrics, "train_seconds": 0.1},
                               unlearning={"method": "finetune", "params": {}, "forget_indices": [1, 2], "seconds": 0.2})
    a, b = save_model(model, slow, tmp_path / "a.safetensors"), save_model(model, fast, tmp_path / "b.safetensors")
    assert sha(a) == sha(b)
    stored = read_record(a)
    assert "train_seconds" not in stored.metrics and "seconds" not in stored.unlearning
    assert stored.metrics["test_acc"] == record.metrics["test_acc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "b.safetensors"]


def _idx_folder(folder: Path, n_train: int = 6, n_test: int = 4) -> Path:
    import struct

    folder.mkdir(parents=True)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        (folder / f"{stem}-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + struct.pack(">III", n, 28, 28) + bytes(n * 784))
        (folder / f"{stem}-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", n) + bytes(i % 10 for i in range(n)))
    return folder


def test_a_data_folder_is_read_only_when_the_user_gave_it(tmp_path, monkeypatch):
    given, planted = _idx_folder(tmp_path / "given"), _idx_folder(tmp_path / "planted")
    assert not trusted_root(str(given))
    load_dataset("mnist", root=str(given))  # the user names it: remembered
    assert trusted_root(str(given)) and not trusted_root(str(planted))
    assert DatasetSpec.from_dict({"name": "mnist", "root": str(given)}).root == str(given)
    assert DatasetSpec.from_dict({"name": "mnist", "root": str(planted)}).root is None  # a file's choice is dropped
    with pytest.raises(AuditInputError, match="--data-root"):
        load_dataset(DatasetSpec.from_dict({"name": "mnist", "root": str(planted)}))
    monkeypatch.setenv("MU_AUDIT_DATA", str(tmp_path))
    assert trusted_root(str(planted))  # inside MU_AUDIT_DATA


def test_a_staged_case_is_published_whole_or_removed(tmp_path):
    store = CaseStore()
    with store.staged("built") as case:
        (case.path("artefact.txt")).write_text("x")
        assert store.list() == []  # invisible while it is built
    assert [c.id for c in store.list()] == [case.id] and case.path("artefact.txt").is_file()
    with pytest.raises(RuntimeError), store.staged("broken"):
        raise RuntimeError("interrupted")
    assert [c.id for c in store.list()] == [case.id]
    assert not any((store.root / ".staging").iterdir())


def test_a_case_build_killed_half_way_leaves_no_case(audit_home):
    script = textwrap.dedent("""
        import os, signal, sys
        sys.path.insert(0, sys.argv[1])
        from mu_core.case import CaseStore
        with CaseStore().staged("Digits demo") as case:
            case.update(original={"file": "original.safetensors"})
            print(case.id, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(ROOT)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MU_AUDIT_HOME": str(audit_home)})
    assert proc.returncode == -signal.SIGKILL and proc.stdout.strip()
    store = CaseStore()
    assert (store.root / ".staging" / proc.stdout.strip()).is_dir()  # what the kill left
    assert store.list() == []
    assert not (store.root / ".staging" / proc.stdout.strip()).exists()  # cleaned by the next listing


def test_owners_see_only_their_own_cases_and_guessing_an_id_fails_like_a_missing_case():
    alice, bob = CaseStore(owner="idp|alice"), CaseStore(owner="idp|bob")
    mine = alice.create("alice's")
    theirs = bob.create("bob's")
    assert mine.manifest["owner"] == "idp|alice"
    assert [c.id for c in alice.list()] == [mine.id] and [c.id for c in bob.list()] == [theirs.id]
    for action in (lambda: bob.get(mine.id), lambda: bob.delete(mine.id), lambda: bob.rename(mine.id, "taken")):
        with pytest.raises(AuditInputError, match=f"Case '{mine.id}' does not exist"):
            action()
    assert alice.get(mine.id).name == "alice's"
    assert {c.id for c in CaseStore().list()} == {mine.id, theirs.id}  # the command line sees every case


def test_case_names_are_cleaned_and_capped():
    case = CaseStore().create("<b>x</b>\x00\n" + "y" * 10_000)
    assert case.name.startswith("<b>x</b> y") and len(case.name) == 120


def test_without_sign_in_the_app_listens_on_loopback_only(tmp_path):
    plain = tmp_path / "plain.toml"
    plain.write_text('[other]\nkey = "value"\n')
    command = serve_command(secrets_file=str(plain), port=8600)
    assert command[command.index("--server.address") + 1] == "127.0.0.1"
    with pytest.raises(AuditInputError, match=r"127\.0\.0\.1 only"):
        serve_command(secrets_file=str(plain), address="0.0.0.0")
    team = tmp_path / "team.toml"
    team.write_text('[auth]\nclient_id = "x"\n')
    assert auth_configured([team]) and not auth_configured([plain])
    command = serve_command(secrets_file=str(team), address="0.0.0.0")
    assert command[command.index("--server.address") + 1] == "0.0.0.0"
    proc = subprocess.run([sys.executable, "-m", "mu_core", "serve", "--secrets", str(plain), "--address", "10.0.0.1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "single-user install" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_an_upload_error_names_the_users_file(digits_mlp):
    from mu_core.workflow import case_import_model

    case = CaseStore().create("upload")
    with pytest.raises(AuditInputError, match=r"'my model\.safetensors'"):
        case_import_model(case, b"\x80\x04not really a model", "../../my model.safetensors")
    assert not list(case.path("uploads").rglob("*.safetensors"))


def test_a_model_record_is_checked_against_its_dataset(digits_mlp, tmp_path):
    model, record = digits_mlp
    honest = save_model(model, record, tmp_path / "honest.safetensors")
    assert load_model(honest)[1].n_train_split == 1437
    claims_more = record.with_updates(n_train_split=2000, train_indices=np.arange(2000))
    path = save_model(model, claims_more, tmp_path / "m.safetensors")
    with pytest.raises(AuditInputError, match="2000 samples, but dataset 'digits' has 1437"):
        load_model(path)
