"""The simulation on an existing Ray cluster (``--ray-address``): a real Ray head on this
machine, started by the test on a free port and stopped by its pid."""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from simulations import cli
from tests.deployment import free_port, stop

BIN = Path(sys.executable).parent


@pytest.fixture
def ray_head():
    """``ray start --head --block`` on a free port, with a temp dir of its own; its address."""
    port = free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # socket paths must be short
    log = (temp_dir / "head.log").open("w")
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", f"--port={port}", "--block", "--num-cpus=2",
         "--include-dashboard=false", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in (temp_dir / "head.log").read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((temp_dir / "head.log").read_text())
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", temp_dir
    finally:
        stop(head, timeout=60)  # the head and every Ray process it started, by pid
        log.close()


def test_a_federation_runs_on_an_existing_ray_cluster(ray_head, tmp_path):
    address, temp_dir = ray_head
    argv = ["run", "--num-clients", "2", "--fraction-train", "1.0", "--rounds", "1",
            "--out", str(tmp_path), "--ray-address", address,
            "--set=model-width=32", "--set=model-heads=2", "--set=num-anchors=16",
            "--set=seq-len=32", "--set=facts-entities=12", "--set=local-epochs=1"]  # fmt: skip
    assert cli.main(argv) == 0
    assert (tmp_path / "metrics.json").is_file()
    # The clients' actors ran in this cluster's workers, whose logs are in its temp dir.
    logs = list((temp_dir / "session_latest" / "logs").glob("worker-*"))
    assert any("ClientAppActor" in path.read_text(errors="replace") for path in logs), logs
