"""Real federations on Flower's simulation engine (Ray), a few clients, two rounds."""

import json

import pytest

from fedaso.config import RunConfig
from simulations.engine import simulate
from simulations.probe import probe_run

SMALL = {
    "num_server_rounds": 2,
    "fraction_train": 1.0,
    "local_epochs": 2,
    "facts_entities": 12,
    "model_width": 32,
    "model_heads": 2,
    "num_anchors": 16,
    "seq_len": 32,
}


@pytest.mark.parametrize("strategy", ["fedaso", "fedavg"])
def test_simulation_trains_and_writes_metrics(tmp_path, strategy):
    run = RunConfig.of(strategy=strategy, out_dir=str(tmp_path), **SMALL)
    metrics = simulate(run, num_clients=3)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["config"]["strategy"] == strategy
    rounds = written["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    losses = [r["central"]["loss"] for r in rounds]
    assert losses[2] < losses[0], losses
    assert "fact-recall" in rounds[2]["central"]
    assert (tmp_path / "model.pt").exists()
    if strategy == "fedaso":
        train = rounds[2]["train"]
        assert train["num-replies"] == 3
        assert 0 < train["mean-relevance"] < 1
        assert abs(train["mean-relevance"] - 1 / 16) > 1e-3
        assert train["client-relevance-max"] > train["client-relevance-min"]
        assert (tmp_path / "anchors.npy").exists()
        # The knowledge diagnostic: fact-value vs filler tokens under the global anchors.
        central = rounds[2]["central"]
        assert 0 <= central["relevance-fact"] <= 1 and 0 <= central["relevance-filler"] <= 1
        assert 0 <= central["relevance-auroc"] <= 1
        # `fedaso probe --run` rebuilds round 0's figures and reads the final ones back.
        rows = {
            (model, anchors): (fact, filler)
            for model, anchors, fact, filler, *_ in probe_run(tmp_path)
        }
        initial = rounds[0]["central"]
        assert rows["initial", "initial"] == pytest.approx(
            (initial["relevance-fact"], initial["relevance-filler"]), rel=1e-4
        )
        assert rows["final", "final"] == pytest.approx(
            (central["relevance-fact"], central["relevance-filler"]), rel=1e-4
        )
    else:
        assert "relevance-fact" not in rounds[2]["central"]  # no anchors to score against
    assert metrics["wall-seconds"] > 0
