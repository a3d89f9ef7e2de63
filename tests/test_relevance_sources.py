"""Relevance sources as named variants (spec section 13): anchors-refit, oracle."""

import json

import numpy as np
import pytest

from fedaso.anchors import refit_anchors
from fedaso.payload import ANCHORS_KEY
from fedaso.privacy import PrivacyConfig
from fedaso.run_config import RunConfig
from flower_wire.records import record_to_arrays
from simulations.engine import simulate
from strategies.refit import AnchorRefitFedASO
from tests.flower_helpers import metrics, payload, train_reply
from tests.test_simulation import SMALL


def test_refit_is_warm_started_so_anchor_rows_keep_their_places():
    rng = np.random.default_rng(0)
    centers = np.array([[8.0, 0.0], [0.0, 8.0], [-8.0, 0.0], [0.0, -8.0]])
    points = np.concatenate([c + rng.normal(0, 0.5, size=(50, 2)) for c in centers])
    # The last anchors sit near the clusters in a shuffled order; the refit keeps that order.
    order = [2, 0, 3, 1]
    previous = (centers[order] + 1.5).astype(np.float32)
    refitted = refit_anchors(embeddings=points, previous=previous, seed=0)
    np.testing.assert_allclose(refitted, centers[order], atol=0.3)
    with pytest.raises(ValueError, match="num-anchors=4"):
        refit_anchors(embeddings=points[:3], previous=previous, seed=0)


def refit_strategy(refitted):
    """A strategy whose re-fit returns ``refitted`` and records what it was given."""
    seen = []

    def refit(model_arrays, previous):
        seen.append((model_arrays, previous))
        return refitted

    strategy = AnchorRefitFedASO(refit=refit, anchor_staleness_decay=0.0)
    strategy.global_arrays = payload(0.0, 1.0)
    return strategy, seen


def test_refit_strategy_takes_models_only_and_sends_the_refitted_anchors():
    refitted = np.full((4, 3), 5.0, dtype=np.float32)
    strategy, seen = refit_strategy(refitted)
    model_only = {"w": np.full((2, 3), 2.0, dtype=np.float32)}
    replies = [
        train_reply(1, model_only, metrics(relevance=0.25)),
        train_reply(2, {"w": np.full((2, 3), 6.0, dtype=np.float32)}, metrics(relevance=0.75)),
        train_reply(3, payload(9.0, 9.0), metrics(relevance=0.5)),  # anchors up: refused
    ]
    arrays, agg = strategy.aggregate_train(1, replies)
    sent = record_to_arrays(arrays)
    np.testing.assert_allclose(sent["w"], 0.25 * 2.0 + 0.75 * 6.0)  # Eq. 7's weights
    np.testing.assert_array_equal(sent[ANCHORS_KEY], refitted)
    assert agg["num-replies"] == 2 and agg["num-rejected"] == 1
    assert agg["anchor-drift"] == pytest.approx(np.sqrt(3 * 4.0**2))  # 1 -> 5 in 3 columns
    (model_arrays, previous), = seen  # fmt: skip
    assert set(model_arrays) == {"w"} and np.all(previous == 1.0)
    assert not strategy.anchor_store.reports  # nothing merged


def test_refit_refuses_anchor_dp_by_name():
    with pytest.raises(ValueError, match="anchor_dp='local'"):
        AnchorRefitFedASO(refit=lambda m, a: a, privacy=PrivacyConfig(anchor_dp="local"))
    with pytest.raises(ValueError, match=r"relevance-source='anchors-refit'.*anchor-dp='central'"):
        RunConfig(relevance_source="anchors-refit", anchor_dp="central")


def test_anchors_refit_federation_sends_anchors_down_only_and_moves_them(tmp_path):
    run = RunConfig(
        out_dir=str(tmp_path), relevance_source="anchors-refit", **SMALL | {"num_server_rounds": 1}
    )
    simulate(run, num_clients=2)
    rounds = json.loads((tmp_path / "metrics.json").read_text())["rounds"]
    trained = rounds[1]
    assert trained["train"]["num-replies"] == 2
    assert trained["traffic"]["anchor-bytes-up"] == 0 < trained["traffic"]["anchor-bytes-down"]
    assert trained["train"]["anchor-drift"] > 0  # re-fitted under the new model
    assert 0 < trained["train"]["mean-relevance"] < 1
    assert 0 <= trained["central"]["relevance-auroc"] <= 1
