"""simulations.central: Table A's one-site training, without Flower, on the tiny config."""

import json
import math

import pytest

from simulations.central import central_run, main
from simulations.experiment.variants import ASO_VARIANTS, chosen_variants

ROUNDS = 2


@pytest.mark.parametrize("variant", ["plain", "aso", "aso-refit", "aso-probe", "aso-oracle"])
def test_central_run_records_every_round_as_a_federation_does(variant, tiny):
    settings = dict(ASO_VARIANTS[variant].settings)
    run = tiny.config(
        num_server_rounds=ROUNDS, local_epochs=1, dataset="facts", facts_entities=2
    ).replace(**{key.replace("-", "_"): value for key, value in settings.items()})
    metrics = central_run(run)
    rounds = metrics["rounds"]
    assert [record["round"] for record in rounds] == list(range(ROUNDS + 1))
    assert rounds[-1]["central"]["loss"] < rounds[0]["central"]["loss"]  # it trains
    assert all(record["traffic"]["local-steps"] > 0 for record in rounds[1:])
    assert metrics["config"] == run.to_flat() and metrics["num-clients"] == 1
    relevance_scored = variant not in ("plain", "aso-oracle")  # the oracle's AUROC is 1
    assert ("relevance-auroc" in rounds[-1]["central"]) == relevance_scored
    assert ("mean-relevance" in rounds[-1]["train"]) == (variant != "plain")
    assert rounds[-1]["central"]["fact-answer-loss"] >= 0 and math.isfinite(metrics["wall-seconds"])


def test_prox_pulls_towards_the_round_start_and_plain_does_not(tiny):
    run = tiny.config(num_server_rounds=1, local_epochs=1, dataset="facts", facts_entities=2)
    settings = {key.replace("-", "_"): v for key, v in ASO_VARIANTS["prox"].settings}
    prox = run.replace(**settings, proximal_mu=10.0)
    assert prox.federation.applied_proximal_mu == 10.0 and run.federation.applied_proximal_mu == 0
    plain_loss = central_run(run)["rounds"][-1]["central"]["loss"]
    prox_loss = central_run(prox)["rounds"][-1]["central"]["loss"]
    assert prox_loss != plain_loss  # same seed and batches: only the proximal term differs


def test_central_is_reproducible_per_seed(tiny):
    run = tiny.config(
        num_server_rounds=1, local_epochs=1, dataset="facts", facts_entities=2, strategy="fedaso"
    )
    first, second = central_run(run), central_run(run)
    drop_seconds = [
        {k: v for k, v in record["central"].items() if not k.endswith("seconds")}
        for record in first["rounds"] + second["rounds"]
    ]
    assert drop_seconds[:2] == drop_seconds[2:]  # same seed, same figures


def test_command_writes_the_speedup_table(tmp_path, tiny, capsys):
    out = tmp_path / "central"
    argv = ["--variants", "plain,aso", "--seeds", "0,1", "--rounds", "2", "--out", str(out)]
    assert main([*argv, *tiny.flags(local_epochs=1, dataset="facts", facts_entities=2)]) == 0
    summary = (out / "summary.md").read_text()
    assert "Central training (Table A)" in summary and "| speed-up vs plain [95% CI] |" in summary
    written = json.loads((out / "aso" / "seed-1" / "metrics.json").read_text())
    assert len(written["rounds"]) == 3
    # --resume reads the four runs back instead of training them again.
    assert (
        main([*argv, "--resume", *tiny.flags(local_epochs=1, dataset="facts", facts_entities=2)])
        == 0
    )
    assert capsys.readouterr().err.count("reused from") == 4


def test_bad_variants_and_reference_are_named(tmp_path, capsys):
    with pytest.raises(ValueError, match="nope not in plain, prox, aso,"):
        chosen_variants("plain,aso+nope")
    (joined,) = chosen_variants("aso-oracle+no-projection")
    assert joined.label == "aso-oracle+no-projection"
    assert dict(joined.settings) == {
        "strategy": "fedaso",
        "relevance-source": "oracle",
        "project-gradients": False,
    }
    with pytest.raises(SystemExit):
        main(["--variants", "aso", "--reference", "plain", "--out", str(tmp_path)])
    assert "--reference='plain' is not among --variants" in capsys.readouterr().err
