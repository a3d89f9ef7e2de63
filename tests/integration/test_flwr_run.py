"""`flwr run .` end to end: a real SuperLink (simulation runtime) started and stopped here.

The test starts its own ``flower-superlink`` on a free localhost port with runtime
dependency installation disabled, points an isolated ``FLWR_HOME`` at it, submits the app in
this repository with ``flwr run``, waits for the run (``--stream``), checks the run's status
(``flwr run`` exits 0 even when a run fails) and reads the metrics the ServerApp wrote.
"""

import json
import shutil

import pytest

from tests.deployment import BIN, json_of, start_superlink
from tests.hf_helpers import tiny_hf_model


@pytest.fixture(scope="module")
def superlink(tmp_path_factory):
    """A SuperLink for simulations on a free port, stopped by its pid afterwards."""
    if shutil.which("flower-superlink", path=str(BIN)) is None:
        pytest.fail("flower-superlink is not installed next to this Python")
    federation = start_superlink(tmp_path_factory.mktemp("federation"), simulation=True)
    try:
        yield federation
    finally:
        federation.stop_all()


@pytest.mark.parametrize("model", ["tinylm", "hf-lora"])
def test_flwr_run_completes_and_writes_metrics(superlink, tmp_path, tiny, model):
    out = tmp_path / "out"
    overrides = tiny.run_config(num_server_rounds=2, fraction_train=0.5, out_dir=str(out))
    if model == "hf-lora":
        overrides += f" model='hf:{tiny_hf_model('llama')}' peft='lora' lora-r=2 lr=0.01"
    started = superlink.flwr(
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
    run_id = json_of(started.stdout)["run-id"]
    listed = superlink.flwr("ls", "--run-id", str(run_id), "--format", "json")
    status = json_of(listed.stdout)["runs"][0]["status"]
    if status != "finished:completed":
        logs = superlink.flwr("log", str(run_id), "--show")
        pytest.fail(f"run {run_id} ended {status}:\n{logs.stdout[-6000:]}{logs.stderr[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["num-server-rounds"] == 2
    rounds = metrics["rounds"]
    assert rounds[-1]["central"]["loss"] < rounds[0]["central"]["loss"]
    assert 0 < rounds[-1]["train"]["mean-relevance"] < 1
    if model == "hf-lora":
        assert (out / "adapter" / "adapter_config.json").exists()
