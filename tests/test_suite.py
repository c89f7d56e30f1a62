"""The test suite itself: Ctrl-C stops a run even while a non-daemon thread is still working."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

HANGING_TEST = '''
import threading
import time


def test_waits_forever():
    threading.Thread(target=time.sleep, args=(3600,)).start()  # non-daemon, like a page script under AppTest
    print("STARTED", flush=True)
    threading.Event().wait()
'''


def test_ctrl_c_stops_the_run_and_prints_the_summary(tmp_path: Path) -> None:
    (tmp_path / "test_hang.py").write_text(HANGING_TEST)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-s", "-q", "--rootdir", str(tmp_path),
         str(tmp_path / "test_hang.py")],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(TESTS)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "STARTED" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest = "".join(seen) + proc.stdout.read()
    assert proc.wait() == 2, rest  # pytest's "interrupted"
    assert "KeyboardInterrupt" in rest
