"""One Ray cluster for the whole integration session.

Flower's simulation engine starts a local Ray instance for each federation and shuts it down
afterwards, several seconds of each small test. The federations that do not test that
start-up join this session's cluster instead (``simulate(..., ray_address=...)`` or the
commands' ``--ray-address``), as a user with a Ray cluster does; ``tests/integration/
test_simulation.py`` keeps the engine's own start-up under test.
"""

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deployment import free_port, stop

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class RayCluster:
    """A running Ray head: its address and the temp dir holding its sessions' logs."""

    address: str
    temp_dir: Path

    def worker_logs(self) -> dict[Path, str]:
        """``{path: text}`` of every worker log of the cluster's current session."""
        logs = (self.temp_dir / "session_latest" / "logs").glob("worker-*")
        return {path: path.read_text(errors="replace") for path in logs}


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """``ray start --head --block`` on a free port with 2 CPUs, stopped by its pid."""
    port = free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # socket paths must be short
    log_path = temp_dir / "head.log"
    with log_path.open("w") as log:
        head = subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", f"--port={port}", "--block", "--num-cpus=2",
             "--include-dashboard=false", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log_path.read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log_path.read_text())
            time.sleep(0.5)
        yield RayCluster(f"127.0.0.1:{port}", temp_dir)
    finally:
        stop(head, timeout=60)  # the head and every Ray process it started, by pid
