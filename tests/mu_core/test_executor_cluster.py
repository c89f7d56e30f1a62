"""A two-node Ray cluster on this machine: ``ray start --head`` plus one ``ray start --address``
worker, on their own ports and the loopback only, with a token of their own; torn down afterwards.

Ray 2.60 replaces a loopback node address by the machine's network address; the nodes here are
started through a launcher that keeps 127.0.0.1 (as :mod:`mu_core.executor` does for the driver).
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 180
LAUNCHER = ("import sys; from ray._private import services; services.resolve_ip_for_localhost = lambda host: host; "
            "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()")


def node_job(job: dict, shared, ctx) -> dict:
    """Marks that it started, waits (at most ``WAIT_S``) until every job has, then says where it ran."""
    import ray

    folder = Path(job["dir"])
    (folder / f"started_{ctx.index}").write_text("")
    deadline = time.monotonic() + WAIT_S
    while len(list(folder.glob("started_*"))) < job["jobs"] and time.monotonic() < deadline:
        time.sleep(0.05)
    ctx.progress(1.0, "met the others")
    return {"node": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address(), "value": job["value"] * 2}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """``ray start ... --block`` in a process group of its own (stopped by that group's id)."""
    return subprocess.Popen([sys.executable, "-c", LAUNCHER, "start", *args, "--block"], env=env, cwd=ROOT,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _stop(nodes: list[subprocess.Popen]) -> None:
    """SIGTERM to each node's process group, SIGKILL to what is left after 5 s (a test cluster holds nothing to drain)."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        for node in nodes:
            try:
                os.killpg(node.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(_group_alive(node) for node in nodes):
            time.sleep(0.2)


def _group_alive(node: subprocess.Popen) -> bool:
    node.poll()
    try:
        os.killpg(node.pid, 0)
    except ProcessLookupError:
        return False
    return True


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(condition, nodes: list[subprocess.Popen], folder: Path) -> None:
    """Wait (at most ``WAIT_S``) until ``condition()``; fail with the nodes' logs if one stopped."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        logs = "".join(p.read_text()[-1500:] for p in sorted(folder.glob("*.log")))
        assert all(node.poll() is None for node in nodes), f"a Ray node stopped:\n{logs}"
        assert time.monotonic() < deadline, f"the cluster did not come up:\n{logs}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """``(env, folder)``: a head and a worker node, 1 CPU each; ``env`` reaches them (address, token)."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed")
    folder = tmp_path_factory.mktemp("cluster")
    temp_dir = Path(f"/tmp/mu_rc_{os.getpid()}")  # short: Ray's socket paths must stay under 108 bytes
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "mu_core")])}
    env.pop("RAY_ADDRESS", None)
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", str(80 * 2**20),
              "--disable-usage-stats"]
    nodes = []
    try:
        nodes.append(_start(["--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", str(temp_dir),
                             "--dashboard-agent-listen-port", str(_free_port()), *common], env, folder / "head.log"))
        _wait_for(lambda: _listening(port) and "Ray runtime started" in (folder / "head.log").read_text(), nodes, folder)
        nodes.append(_start(["--address", f"127.0.0.1:{port}", "--dashboard-agent-listen-port", str(_free_port()), *common],
                            env, folder / "worker.log"))
        _wait_for(lambda: "Ray runtime started" in (folder / "worker.log").read_text(), nodes, folder)
        yield {**env, "RAY_ADDRESS": f"127.0.0.1:{port}", "MU_AUDIT_EXECUTOR": "ray", "MU_AUDIT_JOB_CPUS": "1"}, folder
    finally:
        _stop(nodes)


#: The driver: a fresh Python (Ray reads its token settings at import) that waits for both nodes,
#: runs two jobs there and prints what ``python -m mu_core cluster`` says.
DRIVER = """
import json, sys, time
from mu_core.cli import main
from mu_core.executor import cluster_resources, run_jobs
from test_executor_cluster import WAIT_S, node_job
deadline = time.monotonic() + WAIT_S
while cluster_resources()["nodes"] < 2 and time.monotonic() < deadline:
    time.sleep(0.5)
messages = []
results = run_jobs(node_job, [{"dir": sys.argv[1], "jobs": 2, "value": v} for v in (3, 5)],
                   progress=lambda f, m: messages.append(m), label="Node job")
print(json.dumps({"results": results, "last_message": messages[-1]}))
main(["cluster"])
"""


def test_jobs_run_on_both_nodes_of_a_two_node_cluster(two_nodes) -> None:
    env, folder = two_nodes
    done = subprocess.run([sys.executable, "-c", DRIVER, str(folder)], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=2 * WAIT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    first, _, rest = done.stdout.partition("\n")
    jobs, cluster = json.loads(first), json.loads(rest)
    results = jobs["results"]
    assert [r["value"] for r in results] == [6, 10]
    assert len({r["node"] for r in results}) == 2  # one CPU each: the two jobs met on different nodes
    assert {r["ip"] for r in results} == {"127.0.0.1"}
    assert "on Ray" in jobs["last_message"]
    assert (cluster["executor"], cluster["nodes"], cluster["cpus"], cluster["address"]) == ("ray", 2, 2.0, env["RAY_ADDRESS"])
