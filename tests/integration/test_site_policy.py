"""A simulation whose every site runs under a site policy: refused, then allowed."""

from simulations import cli
from tests.unit.clients.test_site_policy import write_policy


def test_a_simulation_under_a_site_policy_refuses_and_allows(tmp_path, capsys, tiny, ray_cluster):
    policy = write_policy(tmp_path, "[limits]\nmax-local-epochs = 1\n")
    argv = ["run", "--num-clients", "2", "--fraction-train", "1.0", "--rounds", "1",
            "--site-policy", policy, "--ray-address", ray_cluster.address,
            *tiny.flags()]  # fmt: skip
    assert cli.main([*argv, "--out", str(tmp_path / "a"), "--set=local-epochs=2"]) == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert "all 2 training replies failed" in err
    assert "refused by site policy: max-local-epochs" in err
    assert cli.main([*argv, "--out", str(tmp_path / "b"), "--set=local-epochs=1"]) == 0
    assert (tmp_path / "b" / "metrics.json").exists()
