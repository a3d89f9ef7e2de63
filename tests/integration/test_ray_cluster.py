"""The simulation on an existing Ray cluster (``--ray-address``): the session's Ray head
(tests/integration/conftest.py), started on a free port and stopped by its pid."""

from simulations import cli


def test_a_federation_runs_on_an_existing_ray_cluster(ray_cluster, tiny, tmp_path):
    before = ray_cluster.worker_logs()
    argv = ["run", "--num-clients", "2", "--fraction-train", "1.0", "--rounds", "1",
            "--out", str(tmp_path), "--ray-address", ray_cluster.address,
            *tiny.flags(local_epochs=1)]  # fmt: skip
    assert cli.main(argv) == 0
    assert (tmp_path / "metrics.json").is_file()
    # This federation's actors ran in the cluster's workers: their logs (new ones, or idle
    # workers' that an actor took over) name ClientAppActor afresh.
    after = ray_cluster.worker_logs()
    grew = [
        path for path, text in after.items()
        if text.count("ClientAppActor") > before.get(path, "").count("ClientAppActor")
    ]  # fmt: skip
    assert grew, sorted(after)
