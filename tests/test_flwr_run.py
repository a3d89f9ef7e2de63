"""`flwr run .` end to end: a real SuperLink (simulation runtime) started and stopped here.

The test starts its own ``flower-superlink`` on a free localhost port with runtime
dependency installation disabled, points an isolated ``FLWR_HOME`` at it, submits the app in
this repository with ``flwr run``, waits for the run (``--stream``), checks the run's status
(``flwr run`` exits 0 even when a run fails) and reads the metrics the ServerApp wrote.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"flower-superlink exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"flower-superlink on port {port} not healthy after {timeout}s")


@pytest.fixture
def superlink(tmp_path):
    """A SuperLink for simulations on a free port, stopped by its pid afterwards."""
    if shutil.which("flower-superlink", path=str(BIN)) is None:
        pytest.fail("flower-superlink is not installed next to this Python")
    home = tmp_path / "flwr-home"
    home.mkdir()
    port = free_port()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "test"\n\n[superlink.test]\n'
        f'address = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    env = os.environ | {
        # The SuperLink starts `flower-superexec` (and Ray) by name: use this environment's.
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLWR_HOME": str(home),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
    }
    log = (tmp_path / "superlink.log").open("w")
    process = subprocess.Popen(
        [
            str(BIN / "flower-superlink"),
            "--insecure",
            "--simulation",
            "--disable-runtime-dependency-installation",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database",
            str(home / "state.db"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_healthy(port, process)
        yield env
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def flwr(env, *args, timeout=600):
    return subprocess.run(
        [str(BIN / "flwr"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_flwr_run_completes_and_writes_metrics(superlink, tmp_path):
    out = tmp_path / "out"
    overrides = (
        f"num-server-rounds=2 fraction-train=0.5 facts-entities=12 model-width=32 "
        f"model-heads=2 num-anchors=16 seq-len=32 out-dir='{out}'"
    )
    started = flwr(
        superlink,
        "run",
        ".",
        "--stream",
        "--format",
        "json",
        "--federation-config",
        "num-supernodes=4 client-resources-num-cpus=1",
        "--run-config",
        overrides,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    run_id = json.loads(started.stdout[started.stdout.index("{") :])["run-id"]
    listed = flwr(superlink, "ls", "--run-id", str(run_id), "--format", "json")
    status = json.loads(listed.stdout)["runs"][0]["status"]
    if status != "finished:completed":
        logs = flwr(superlink, "log", str(run_id), "--show")
        pytest.fail(f"run {run_id} ended {status}:\n{logs.stdout[-6000:]}{logs.stderr[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["num-server-rounds"] == 2
    rounds = metrics["rounds"]
    assert rounds[-1]["central"]["loss"] < rounds[0]["central"]["loss"]
    assert 0 < rounds[-1]["train"]["mean-relevance"] < 1
