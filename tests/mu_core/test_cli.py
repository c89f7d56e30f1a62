"""The command line, run in-process: the train -> forget -> unlearn -> audit chain, and bad input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mu_core.cli import main
from mu_core.forget import random_request as draw_random
from mu_core.forget import read_request, write_request
from mu_core.models import save_model
from mu_core.models.io import read_record

REPO_ROOT = Path(__file__).parents[2]
HEADINGS = ["datasets:", "architectures:", "methods:", "attacks:", "threats:"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def saved_mlp(digits_mlp, tmp_path_factory) -> dict[str, Path]:
    """The shared mlp as a file, with a request to forget 20 of its samples."""
    folder = tmp_path_factory.mktemp("cli")
    model_path = save_model(*digits_mlp, folder / "mlp.safetensors")
    forget_path = write_request(draw_random(digits_mlp[1].train_indices, 20, seed=0), folder / "forget.txt")
    return {"model": model_path, "forget": forget_path}


def test_train_forget_unlearn_audit_chain_writes_a_full_report(tmp_path, capsys):
    original, forget = tmp_path / "original.safetensors", tmp_path / "forget.txt"
    unlearned, report_dir = tmp_path / "unlearned.safetensors", tmp_path / "audit"

    code, out, err = run_cli(capsys, "train", "--dataset", "digits", "--arch", "mlp", "--epochs", 3, "--out", original)
    assert code == 0 and "train: 100%|" in err and "Training: epoch 3/3" in err  # the progress bar, drawn to the end
    assert out.startswith(f"wrote {original}: mlp on digits, 1437 training samples")
    assert read_record(original).recipe["epochs"] == 3

    code, out, _ = run_cli(capsys, "forget", "--model", original, "--random", 20, "--seed", 1, "--out", forget)
    assert code == 0 and "20 random training samples (seed 1)" in out
    assert len(read_request(forget)) == 20

    code, out, _ = run_cli(
        capsys,
        "unlearn",
        "--model",
        original,
        "--forget",
        forget,
        "--method",
        "neggrad",
        "--param",
        "epochs=2",
        "--out",
        unlearned,
    )
    assert code == 0 and "neggrad on 20 samples" in out
    record = read_record(unlearned)
    assert record.unlearning["method"] == "neggrad" and record.unlearning["params"]["epochs"] == 2
    assert record.unlearning["source_sha256"] == hashlib.sha256(original.read_bytes()).hexdigest()
    assert record.forget_indices.tolist() == read_request(forget).indices.tolist()

    code, out, _ = run_cli(
        capsys, "audit", "--original", original, "--unlearned", unlearned, "--forget", forget, "--out", report_dir
    )
    assert code == 0
    assert out.splitlines()[0] == f"wrote {report_dir / 'report.json'}"
    report = json.loads((report_dir / "report.json").read_text())
    assert set(report["attacks"]["loss"]) == {"original", "unlearned", "retrained"}  # 4 exact retrains by default
    assert report["reference"]["retrains"] == 4 and report["reference"]["trained"] == 4
    for role in ("original", "unlearned"):
        attack = report["attacks"]["loss"][role]
        assert 0.0 <= attack["auc"] <= 1.0 and attack["n_members"] == 20
        assert {"tpr_at_1pct_fpr", "tpr_at_0p1pct_fpr", "tpr_at_0p01pct_fpr", "roc"} <= set(attack)
        assert set(report["utility"][role]) == {"forget_acc", "retain_acc", "test_acc"}
    assert report["provenance"]["models"]["unlearned"]["sha256"] == hashlib.sha256(unlearned.read_bytes()).hexdigest()
    assert report["forget"]["count"] == 20
    assert (report_dir / "scores.csv").is_file()


def test_forget_by_class_name_writes_json(tmp_path, capsys):
    out_path = tmp_path / "sevens.json"
    code, out, _ = run_cli(capsys, "forget", "--dataset", "digits", "--class", "7", "--share", 0.5, "--out", out_path)
    assert code == 0 and "50% of class 7 (72 samples)" in out  # class 7 has 143 training samples
    data = json.loads(out_path.read_text())
    assert (data["kind"], data["count"], data["params"]["class_name"]) == ("class", 72, "7")


def test_forget_from_an_index_file_validates_it(tmp_path, capsys):
    (tmp_path / "mine.csv").write_text("index,why\n5,asked\n3,asked\n")
    code, _, _ = run_cli(
        capsys, "forget", "--dataset", "digits", "--indices", tmp_path / "mine.csv", "--out", tmp_path / "out.txt"
    )
    assert code == 0
    assert read_request(tmp_path / "out.txt").indices.tolist() == [3, 5]


def test_list_prints_the_five_registries(capsys):
    code, out, err = run_cli(capsys, "list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert [line for line in lines if not line.startswith("  ")] == HEADINGS
    assert "  digits" in lines and "  resnet18" in lines and "  neggrad" in lines and "  loss" in lines and "  backdoor_verify" in lines


def test_list_names_exactly_what_the_registries_hold():
    """``list`` prints :mod:`mu_core.catalog` (no torch import); it must not drift from the registries."""
    from mu_core.attacks import list_attacks
    from mu_core.catalog import CATALOG
    from mu_core.data import list_datasets
    from mu_core.models import list_archs
    from mu_core.threats import list_threats
    from mu_core.unlearn import list_methods

    live = {"datasets": list_datasets(), "architectures": list_archs(), "methods": list_methods(), "attacks": list_attacks(),
            "threats": list_threats()}
    assert {heading: list(names) for heading, names in CATALOG.items()} == live


def test_quick_commands_start_without_torch(tmp_path):
    """``list`` and a random or explicit forget request drawn from a model file import neither torch nor scikit-learn."""
    from mu_core.forget import read_request

    model = tmp_path / "m.safetensors"
    assert main(["train", "--dataset", "digits", "--arch", "mlp", "--epochs", "1", "--train-size", "200", "--out", str(model)]) == 0
    probe = ("import sys, runpy; sys.argv = ['mu_core'] + sys.argv[1:]\n"
             "try:\n    runpy.run_module('mu_core', run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "print('heavy:', sorted(m for m in ('torch', 'sklearn', 'torchvision') if m in sys.modules)); sys.exit(code)")
    for args in (["list"], ["forget", "--model", str(model), "--random", "5", "--out", str(tmp_path / "r.json")],
                 ["forget", "--model", str(model), "--indices", str(tmp_path / "r.json"), "--out", str(tmp_path / "e.json")]):
        done = subprocess.run([sys.executable, "-c", probe, *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert "heavy: []" in done.stdout, (args, done.stdout)
    assert len(read_request(tmp_path / "e.json").indices) == 5


BAD_INPUT = {
    "missing-model": (["unlearn", "--model", "{missing}", "--forget", "{forget}", "--method", "neggrad"], "does not exist"),
    "unknown-method": (
        ["unlearn", "--model", "{model}", "--forget", "{forget}", "--method", "magic"],
        "Unknown unlearning method 'magic'",
    ),
    "random-zero": (["forget", "--dataset", "digits", "--random", "0"], "--random must be between 1 and 1436"),
    "param-without-equals": (
        ["unlearn", "--model", "{model}", "--forget", "{forget}", "--method", "neggrad", "--param", "epochs"],
        "'epochs' is not KEY=VALUE",
    ),
    "param-of-wrong-type": (
        ["unlearn", "--model", "{model}", "--forget", "{forget}", "--method", "neggrad", "--param", "lr=fast"],
        "must be a float",
    ),
    "unknown-param": (
        ["unlearn", "--model", "{model}", "--forget", "{forget}", "--method", "retrain", "--param", "epochs=3"],
        "has no parameter 'epochs'",
    ),
    "missing-argument": (["train", "--dataset", "digits"], "the following arguments are required: --arch"),
    "non-integer-option": (["forget", "--dataset", "digits", "--random", "ten"], "invalid int value: 'ten'"),
    "wrong-out-suffix": (["train", "--dataset", "digits", "--arch", "mlp"], "--out must end in .safetensors"),
}


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_bad_input_exits_2_with_one_error_line(name, saved_mlp, tmp_path, capsys):
    argv, message = BAD_INPUT[name]
    paths = {"model": saved_mlp["model"], "forget": saved_mlp["forget"], "missing": tmp_path / "absent.safetensors"}
    argv = [arg.format(**paths) for arg in argv]
    if name != "missing-argument":
        argv += ["--out", str(tmp_path / ("out.pt" if name == "wrong-out-suffix" else "out.safetensors"))]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert message in err
    assert "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == []


def test_no_command_is_bad_input(capsys):
    code, _, err = run_cli(capsys)
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1


def test_python_dash_m_mu_core_list_runs_from_the_repo_root():
    done = subprocess.run(
        [sys.executable, "-m", "mu_core", "list"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stdout.splitlines() if not line.startswith("  ")] == HEADINGS
    assert "Traceback" not in done.stderr
