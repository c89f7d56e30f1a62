"""Evidence a reviewer can file: report, bundle, verify, signatures, replay, redaction, trail and purge.

One digits case (an mlp, 40 forgotten samples, retrained and NegGrad models, the default audit)
is built once for the module; tests that change files work on copies.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from mu_core.case import LOG_FILE, CaseStore, check_chain, redact_chain
from mu_core.cli import main
from mu_core.report import build_report, check_record, purge_case, record_name, verify_bundle, weights_digest
from mu_core.report.build import chromium_path
from mu_core.report.evidence import BUNDLE_EXTRA, MANIFEST_NAME, manifest_for, sha256_bytes
from mu_core.report.replay import compare_reports

needs_chromium = pytest.mark.skipif(chromium_path() is None, reason="Chromium prints the PDF; not installed here")


def _make_case(store: CaseStore):
    from mu_core.forget import random_request
    from mu_core.models.io import read_record
    from mu_core.workflow import case_audit, case_retrain, case_set_forget, case_train, case_unlearn

    case = store.create("Report test")
    case_train(case, "digits", "mlp", epochs=8)
    case_set_forget(case, random_request(read_record(case.file("original")).train_indices, 40, seed=0))
    case_retrain(case)
    case_unlearn(case, "neggrad")
    case_audit(case, bootstrap=50)
    return case


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    """The case, its signed report (with PDF when Chromium is here) and two key pairs."""
    from mu_core.report import generate_keypair

    root = tmp_path_factory.mktemp("report")
    store = CaseStore(root / "home")
    case = _make_case(store)
    alice, mallory = generate_keypair(root / "alice"), generate_keypair(root / "mallory")
    shutil.copytree(case.dir, root / "pristine")  # for the purge test: a copy whose trail names no report folder
    result = build_report(case=case, out=root / "out", sign_key=alice[0], pdf=chromium_path() is not None)
    return {"root": root, "store": store, "case": case, "alice": alice, "mallory": mallory, "result": result}


def _rewrite(bundle: Path, dest: Path, *, change: str | None = None, drop: str | None = None, add: str | None = None) -> Path:
    """A copy of ``bundle`` with one byte of member ``change`` flipped, ``drop`` left out or ``add`` added."""
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as out:
        for info in src.infolist():
            if info.filename == drop:
                continue
            data = src.read(info.filename)
            if info.filename == change:
                middle = len(data) // 2
                data = data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]
            out.writestr(info.filename, data)
        if add:
            out.writestr(add, b"extra")
    return dest


def test_report_writes_html_pdf_evidence_and_bundle(built) -> None:
    result, case = built["result"], built["case"]
    html = result.html.read_text(encoding="utf-8")
    assert "<script src" not in html and "<link" not in html  # self-contained: Plotly is inline
    assert html.count("Plotly.newPlot") >= 5  # class histogram and one log-log ROC per attack
    order = [html.index(h) for h in ("The request and the model", "The verdict", "Utility against retraining",
                                     "Membership attacks", "Per-record answers", "What this audit cannot show", "Signature")]
    assert order == sorted(order)
    evidence = json.loads(result.evidence.read_text())
    assert set(evidence["models"]) == {"original", "unlearned", "retrained"}
    for role, info in evidence["models"].items():
        assert info["sha256"] == case.entry(role)["sha256"]
        assert info["weights_sha256"] == weights_digest(case.file(role)) != info["sha256"]
    assert evidence["forget_request"]["count"] == 40 and evidence["forget_request"]["sha256"] == case.entry("forget")["sha256"]
    assert len(evidence["dataset"]["split_sha256"]) == 64 and evidence["dataset"]["n_train"] == 1437
    assert evidence["audit"]["settings"]["attacks"] == ["loss", "confidence", "entropy", "modified_entropy"]
    assert evidence["audit"]["settings"]["bootstrap"] == 50
    assert evidence["signature"]["fingerprint"] == result.fingerprint and evidence["trail"]["intact"]
    assert {"torch", "cryptography", "plotly"} <= set(evidence["versions"])
    actions = [json.loads(line)["action"] for line in case.path(LOG_FILE).read_bytes().splitlines()]
    assert actions == ["train", "forget", "unlearn", "unlearn", "audit", "report"]
    assert check_chain(case.path(LOG_FILE).read_bytes())[0] is None


@needs_chromium
def test_pdf_has_pages_and_selectable_text(built) -> None:
    from pypdf import PdfReader

    reader = PdfReader(built["result"].pdf)
    text = " ".join(page.extract_text() for page in reader.pages)
    assert len(reader.pages) >= 3
    for phrase in ("The verdict", "Per-record answers", built["result"].fingerprint[:20]):
        assert phrase in text


def test_weights_digest_ignores_metadata(built, tmp_path: Path) -> None:
    import torch

    from mu_core.models import load_model, save_model

    model, record = load_model(built["case"].file("original"))
    other = save_model(model, record.with_updates(metrics={**record.metrics, "train_seconds": 123.0}), tmp_path / "same.safetensors")
    assert weights_digest(other) == weights_digest(built["case"].file("original"))
    with torch.no_grad():
        next(model.parameters())[0] += 1.0
    changed = save_model(model, record, tmp_path / "changed.safetensors")
    assert weights_digest(changed) != weights_digest(built["case"].file("original"))


def test_verify_passes_then_names_each_altered_missing_or_added_file(built, tmp_path: Path, capsys) -> None:
    bundle = built["result"].bundle
    assert main(["verify", str(bundle)]) == 0
    assert capsys.readouterr().out.strip().startswith(f"intact, signed by {built['result'].fingerprint}")
    with zipfile.ZipFile(bundle) as archive:
        members = [n for n in archive.namelist() if n not in BUNDLE_EXTRA]
    kinds = {Path(n).suffix for n in members}
    assert {".html", ".json", ".csv", ".safetensors", ".jsonl"} <= kinds
    for name in members:
        result = verify_bundle(_rewrite(bundle, tmp_path / "changed.zip", change=name))
        assert not result.ok and result.message.startswith(f"altered: {name}"), (name, result.message)
    assert main(["verify", str(_rewrite(bundle, tmp_path / "dropped.zip", drop="models/unlearned.safetensors"))]) == 1
    assert "missing: models/unlearned.safetensors" in capsys.readouterr().err
    assert verify_bundle(_rewrite(bundle, tmp_path / "added.zip", add="models/extra.safetensors")).message == "added: models/extra.safetensors"
    manifest = verify_bundle(_rewrite(bundle, tmp_path / "manifest.zip", change=MANIFEST_NAME))
    assert not manifest.ok and ("bad signature" in manifest.message or "altered: manifest.json" in manifest.message)
    raw = bytearray(bundle.read_bytes())  # a byte flipped inside the zip itself: the member's CRC fails
    with zipfile.ZipFile(bundle) as archive:
        info = archive.getinfo("evidence.json")
    raw[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0x01
    (tmp_path / "raw.zip").write_bytes(bytes(raw))
    assert verify_bundle(tmp_path / "raw.zip").message.startswith("altered: evidence.json")


def test_signature_verifies_with_the_key_and_fails_with_another(built, tmp_path: Path, capsys) -> None:
    bundle, alice_pub, mallory_pub = built["result"].bundle, built["alice"][1], built["mallory"][1]
    assert main(["verify", str(bundle), "--public-key", str(alice_pub)]) == 0
    assert built["result"].fingerprint in capsys.readouterr().out
    assert main(["verify", str(bundle), "--public-key", str(mallory_pub)]) == 1
    assert "bad signature" in capsys.readouterr().err
    unsigned = build_report(case=built["case"], out=tmp_path / "unsigned", pdf=False).bundle
    assert verify_bundle(unsigned).message.startswith("intact, unsigned")
    assert not verify_bundle(unsigned, alice_pub).ok


def test_verify_checks_the_trail_chain_even_when_the_manifest_was_remade(built, tmp_path: Path) -> None:
    """An attacker who edits log.jsonl and rebuilds an unsigned manifest still breaks the chain."""
    with zipfile.ZipFile(built["result"].bundle) as archive:
        files = {n: archive.read(n) for n in archive.namelist() if n not in BUNDLE_EXTRA}
    lines = files[LOG_FILE].splitlines()
    entry = json.loads(lines[1])
    entry["details"]["count"] = 39
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    files[LOG_FILE] = b"\n".join(lines) + b"\n"
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(forged, "w") as out:
        out.writestr(MANIFEST_NAME, manifest_for({n: (sha256_bytes(d), len(d)) for n, d in files.items()}, created="now"))
        for name, data in files.items():
            out.writestr(name, data)
    result = verify_bundle(forged)
    assert not result.ok and result.message.startswith("altered: log.jsonl (entry 3 does not link")


def test_replay_is_identical_and_a_changed_number_is_found(built, tmp_path: Path, capsys) -> None:
    assert main(["replay", str(built["result"].bundle), "--out", str(tmp_path / "replay")]) == 0
    out = capsys.readouterr().out
    assert "replay identical" in out and "largest difference 0" in out
    recorded = json.loads((tmp_path / "replay" / "bundle" / "audit" / "report.json").read_text())
    replayed = json.loads((tmp_path / "replay" / "audit" / "report.json").read_text())
    replayed["attacks"]["loss"]["unlearned"]["auc"] += 0.001
    outcome = compare_reports(recorded, replayed)
    assert not outcome.identical and outcome.where == "attacks.loss.unlearned.auc"
    assert outcome.max_difference == pytest.approx(0.001)


def test_redacted_report_names_records_by_a_key_the_subject_can_check(built, tmp_path: Path) -> None:
    case = built["case"]
    result = build_report(case=case, out=tmp_path / "red", redact=True, pdf=False)
    with zipfile.ZipFile(result.bundle) as archive:
        names = archive.namelist()
        report = json.loads(archive.read("audit/report.json"))
        body = archive.read("report.html").decode().split("</head>", 1)[1]  # Plotly's own code, in the head, holds data URIs
    assert not any(n.startswith(("models/", "references/")) or n in ("forget.json", "audit/scores.csv", "audit/records.csv") for n in names)
    assert all("index" not in r and r["record"].startswith("r-") for r in report["records"])
    assert "<img" not in body and "data:image" not in body and "training index" not in body
    forget = json.loads(result.evidence.read_text())["forget_request"]
    assert "seed" not in forget["params"] and "sha256" not in forget and len(forget["hmac_sha256"]) == 64
    with zipfile.ZipFile(result.bundle) as archive:
        trail = archive.read(LOG_FILE)
    assert b'"details"' not in trail and check_chain(trail)[0] is None
    assert verify_bundle(result.bundle).ok
    from mu_core.workflow import case_forget_request

    index = int(case_forget_request(case).indices[0])
    secret = bytes.fromhex(result.secret.read_text().strip())
    answer = check_record(result.bundle, index, secret=secret)
    assert answer["found"] and answer["verdict"] in ("forgotten", "inconclusive", "not_forgotten")
    assert check_record(result.bundle, index, key=answer["subject_key"])["record"] == record_name(answer["subject_key"], index)
    assert not check_record(result.bundle, index + 1, key=answer["subject_key"])["found"]
    with pytest.raises(Exception, match="redacted"):
        from mu_core.report import replay_bundle

        replay_bundle(result.bundle, tmp_path / "no-replay")


def test_purge_leaves_nothing_of_the_case_and_keeps_a_receipt(built, tmp_path: Path, capsys) -> None:
    store = CaseStore(tmp_path / "home")
    case = store.create("to purge")
    shutil.copytree(built["root"] / "pristine", case.dir, dirs_exist_ok=True)
    case.update(id=case.id, name="to purge")
    reports = tmp_path / "elsewhere" / "reports"
    build_report(case=case, out=reports, pdf=False)
    other = store.create("kept")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MU_AUDIT_HOME", str(store.home))
        assert main(["purge", "--case", case.id]) == 0
    assert "purged case" in capsys.readouterr().out
    assert not case.dir.exists() and not reports.exists()
    leftovers = [p for p in store.home.rglob("*") if case.id in p.name or (p.is_file() and p.name != "purge-log.jsonl"
                                                                           and case.id.encode() in p.read_bytes())]
    assert leftovers == []
    assert [c.id for c in store.list()] == [other.id]
    raw = (store.home / "purge-log.jsonl").read_bytes()
    assert check_chain(raw)[0] is None
    receipt = json.loads(raw.splitlines()[-1])
    assert receipt["action"] == "purge" and receipt["details"]["case"] == case.id
    assert receipt["details"]["counts"]["case"] > 5 and receipt["details"]["counts"]["reports"] == 3
    assert {"original.safetensors", "forget.json", "audit/report.json"} <= {f["path"] for f in receipt["details"]["deleted"]["case"]}
    assert b"indices" not in raw and b"to purge" not in raw


def test_report_from_an_audit_folder_on_the_command_line(built, tmp_path: Path, capsys) -> None:
    case = built["case"]
    files = {role: str(case.file(role)) for role in ("original", "unlearned", "retrained")}
    assert main(["audit", "--original", files["original"], "--unlearned", files["unlearned"], "--retrained", files["retrained"],
                 "--forget", str(case.file("forget")), "--attacks", "loss", "--bootstrap", "20", "--retrains", "1",
                 "--out", str(tmp_path / "audit")]) == 0
    assert main(["report", "--audit", str(tmp_path / "audit"), "--out", str(tmp_path / "out"), "--no-pdf"]) == 0
    assert "bundle.zip" in capsys.readouterr().out
    evidence = json.loads((tmp_path / "out" / "evidence.json").read_text())
    assert evidence["source"]["kind"] == "audit" and evidence["forget_request"]["count"] == 40
    assert evidence["audit"]["settings"]["attacks"] == ["loss"] and evidence["trail"] is None
    assert verify_bundle(tmp_path / "out" / "bundle.zip").ok
    # the request read from the audit folder travels in the bundle, so the bundle replays
    assert main(["replay", str(tmp_path / "out" / "bundle.zip"), "--out", str(tmp_path / "replay")]) == 0
    assert "replay identical" in capsys.readouterr().out
    assert main(["report", "--audit", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2


def test_trail_chains_every_action_and_names_the_first_broken_entry(built, tmp_path: Path) -> None:
    from mu_core.workflow import case_import_model

    store = CaseStore(tmp_path / "home")
    case = store.create("imported")
    case_import_model(case, built["case"].file("original").read_bytes(), "model.safetensors")
    case.log("note", detail="x")
    raw = case.path(LOG_FILE).read_bytes()
    assert [json.loads(line)["action"] for line in raw.splitlines()] == ["import", "note"]
    problem, head = check_chain(raw)
    assert problem is None and len(head) == 64
    redacted = redact_chain(raw)
    assert check_chain(redacted) == (None, head) and b"sha256" in raw and b'"details"' not in redacted
    lines = raw.splitlines()
    assert check_chain(b"\n".join([lines[0].replace(b"import", b"train"), lines[1]]))[0].startswith("entry 2 does not link")
    assert check_chain(lines[1])[0].startswith("entry 1 does not link")  # the first entry removed


def test_purge_removes_an_image_folder_zips_extracted_copy_unless_shared(tmp_path: Path) -> None:
    from mu_core.report.evidence import sha256_file

    store = CaseStore(tmp_path / "home")
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("a/1.png", b"x")
    extracted = store.home / "datasets" / sha256_file(archive)[:16]
    extracted.mkdir(parents=True)
    (extracted / "a.png").write_bytes(b"pixels")
    spec = {"name": "imagefolder", "root": str(archive)}
    first, second = store.create("one", dataset=spec), store.create("two", dataset=spec)
    purge_case(first.id, store)
    assert extracted.is_dir()  # the other case still uses it
    receipt = purge_case(second.id, store)
    assert not extracted.exists() and receipt["details"]["counts"]["extracted_dataset"] == 1


def test_report_renders_the_verdict_helpers_keys_when_present(built) -> None:
    """The verdict issue adds power, reference (several retrains), has_power and epsilon_lower: all rendered."""
    from mu_core.report.render import render_html

    case, result = built["case"], built["result"]
    report = json.loads(case.path("audit", "report.json").read_text())
    report["power"] = {"loss": {"d": 0.123, "d_ci": [0.051, 0.2]}}
    report["has_power"] = True
    report["reference"] = {"retrains": 2, "seeds": [0, 1], "auc_spread": {"loss": {"aucs": [0.51, 0.53], "range": 0.02, "sd": 0.014}}}
    report["attacks"]["loss"]["unlearned"]["epsilon_lower"] = 0.456
    threats = {"threats/relearn/threat.json": {"name": "Relearning", "verdict": "inconclusive", "recovered": 0.25}}
    html = render_html(report, result.data, {"threats": threats})
    for text in (">0.123<", "[0.051, 0.200]", "Power: <b>yes</b>", "2 exact retrain(s)", "0.510, 0.530", "0.456", "Relearning", "0.250"):
        assert text in html, text
