"""A simulation whose every client fails stops with their error and exits non-zero (issue 13)."""

from simulations import cli


def test_a_simulation_whose_clients_all_fail_exits_non_zero_with_their_error(
    tmp_path, capsys, tiny, ray_cluster
):
    argv = ["run", "--num-clients", "2", "--fraction-train", "1.0", "--rounds", "3",
            "--out", str(tmp_path), "--set=fault-plan=0:raise,1:raise",
            "--ray-address", ray_cluster.address, *tiny.flags(local_epochs=1)]  # fmt: skip
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("fedaso run: error: round 1: all 2 training replies failed")
    assert "fault-plan: partition raises" in err
    assert not (tmp_path / "metrics.json").exists()
