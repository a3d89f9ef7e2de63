"""FedASO on Flower's Deployment Engine: a real SuperLink and two SuperNodes on localhost.

Plain (insecure) and TLS with SuperNode authentication. Each test starts ``flower-superlink``
(not ``--simulation``) and one ``flower-supernode`` per partition with its own
``--node-config``, submits this repository's app with ``flwr run . site``, reads the run's
status and the metrics the ServerApp wrote, and stops every process by pid afterwards.
The recipe is the one in docs/DEPLOY.md ("Deploy across sites"), on one machine.
"""

import json

import pytest

from tests.deployment import (
    make_supernode_keys,
    run_log,
    start_superlink,
    start_supernode,
    submit,
)

TINY = (
    "num-server-rounds=2 fraction-train=1.0 min-train-nodes=2 local-epochs=1 max-steps=3 "
    "facts-entities=12 model-width=32 model-heads=2 num-anchors=16 seq-len=32"
)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """An insecure SuperLink with two SuperNodes (partitions 0 and 1 of 2)."""
    federation = start_superlink(tmp_path_factory.mktemp("plain"))
    try:
        for partition in (0, 1):
            start_supernode(federation, partition, 2)
        yield federation
    finally:
        federation.stop_all()


def check_completed_run(federation, out_dir):
    run_id, status = submit(federation, f"{TINY} out-dir='{out_dir}'")
    if status != "finished:completed":
        pytest.fail(f"run {run_id} ended {status}:\n{run_log(federation, run_id)[-6000:]}")
    rounds = json.loads((out_dir / "metrics.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    for record in rounds[1:]:
        assert record["train"]["num-replies"] == 2, federation.tail_logs()
        assert record["train"]["num-failures"] == record["train"]["num-timeouts"] == 0
        assert record["train"]["anchor-partitions"] == 2  # keyed by partition-id 0 and 1
    assert rounds[2]["central"]["loss"] < rounds[0]["central"]["loss"]
    assert (out_dir / "checkpoint" / "checkpoint.npz").exists()


def test_two_supernodes_train_two_rounds(plain, tmp_path):
    check_completed_run(plain, tmp_path / "out")


def test_a_bad_run_config_fails_with_one_clear_line(plain):
    run_id, status = submit(plain, "aso-tau=-1.0")
    assert status == "finished:failed"
    log_text = run_log(plain, run_id)
    # Exactly one line: Opacus' logging.basicConfig at import is undone (opacus_import),
    # so no root handler prints Flower's records a second time.
    messages = [
        line.split("FedASO stopped:", 1)[1].strip()
        for line in log_text.splitlines()
        if "FedASO stopped:" in line
    ]
    assert messages == ["aso-tau=-1.0 is invalid: must be a finite number > 0"], log_text


def test_tls_with_supernode_authentication(tmp_path):
    federation = start_superlink(tmp_path / "tls", tls=True, auth=True)
    try:
        for partition in (0, 1):
            private, public = make_supernode_keys(tmp_path / "keys", f"node{partition}")
            registered = federation.flwr("supernode", "register", str(public), "site")
            assert registered.returncode == 0, registered.stdout + registered.stderr
            start_supernode(federation, partition, 2, key=private)
        check_completed_run(federation, tmp_path / "out")
    finally:
        federation.stop_all()
