"""The README's command-line quick start runs as written, with progress bars on stderr."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_block(heading: str) -> str:
    """The first ```bash block after ``heading`` in README.md."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(f"\n{heading}\n"):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_command_line_quick_start_runs_verbatim(tmp_path: Path) -> None:
    """As a user after ``make run`` and ``source .venv/bin/activate``: ``python`` is the
    environment's, and ``mu_core`` is importable from any folder (the set-up's ``mu_audit.pth``;
    here ``PYTHONPATH``, since the test cannot rely on how this environment was made)."""
    script = readme_block("## Command line")
    assert "python -m mu_core audit" in script
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(ROOT),
           "MU_AUDIT_HOME": str(tmp_path / "home")}
    done = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "methods:" in done.stdout and "wrote original.safetensors" in done.stdout
    for label in ("train", "neggrad", "retrain", "audit"):  # each long command drew its bar to the end
        assert re.search(rf"{label}: 100%\|", done.stderr), f"no finished '{label}' bar on stderr"
    report = json.loads((tmp_path / "audit" / "report.json").read_text())
    assert report["verdict"] in {"forgotten", "not_forgotten", "inconclusive"}
    assert {"original", "unlearned", "retrained"} <= set(report["utility"])
