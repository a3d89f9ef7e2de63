"""What leaves a client, seen in the real ClientApp's replies to real Flower messages."""

import math

import numpy as np
import pytest
import torch
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM
from opacus.accountants import RDPAccountant

from clients.client_app import app, client_seed
from fedaso.aso.anchors import local_centroids
from fedaso.data import load_partition
from fedaso.models.arrays import load_model_arrays, model_to_arrays
from fedaso.privacy import RELEVANCE_FLOOR, clip_frobenius
from fedaso.training.evaluate import embed
from fedaso.training.trainer import train_local
from fedaso.wire import ANCHORS_KEY, split_payload
from flower_wire.records import record_to_arrays
from tests.unit.clients.test_client_app import RUN as BASE_RUN
from tests.unit.clients.test_client_app import context, instruction, kept_anchors

RUN = BASE_RUN.replace(max_steps=2)  # a few local steps show everything that leaves

GLOBAL = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)


def sent_and_kept(run, ctx, global_anchors=GLOBAL, server_round=1):
    """Train through the real ClientApp; return (reply, sent anchors, the client's own set)."""
    reply = app(instruction(run, global_anchors, server_round=server_round), ctx)
    sent = record_to_arrays(reply.content["arrays"])[ANCHORS_KEY]
    return reply, sent, kept_anchors(ctx, before_round=server_round + 1)


def test_without_anchor_dp_the_anchor_change_is_never_clipped():
    # A bound that would cut any change (C = 0.01 sqrt(8)) applies only under anchor DP.
    reply, sent, kept = sent_and_kept(RUN.replace(anchor_clip=0.01), context())
    np.testing.assert_allclose(sent, kept, atol=1e-6)
    assert np.linalg.norm(sent.astype(np.float64) - GLOBAL) > 0.01 * math.sqrt(8)
    assert "anchor-epsilon" not in reply.content["metrics"]


def test_an_honest_first_round_change_of_512_anchors_passes_whole_without_anchor_dp():
    # Issue 18: at M = 512, d = 128 the old Frobenius clip of 8 kept a fraction of a first
    # round's change. Now the report is the client's own set, whatever its norm.
    run = RUN.replace(num_anchors=512, subspace_rank=16, model_width=128, aso_alpha=0.2)
    start = np.random.default_rng(0).standard_normal((512, 128)).astype(np.float32)
    _, sent, kept = sent_and_kept(run, context(), start)
    assert np.linalg.norm(sent.astype(np.float64) - start) > 8.0  # the old bound cut it
    np.testing.assert_allclose(sent, kept, atol=1e-6)


def test_local_mode_clips_to_the_per_row_bound_times_sqrt_m():
    run = RUN.replace(anchor_dp="local", anchor_clip=0.01, anchor_noise_multiplier=0.0)
    reply, sent, kept = sent_and_kept(run, context())
    change = sent.astype(np.float64) - GLOBAL
    bound = 0.01 * math.sqrt(8)  # C = anchor-clip * sqrt(M), M = 8
    assert np.linalg.norm(change) == pytest.approx(bound, rel=1e-3)  # it moved more than C
    expected = clip_frobenius(kept.astype(np.float64) - GLOBAL, bound)
    np.testing.assert_allclose(change, expected, atol=1e-6)
    assert reply.content["metrics"]["anchor-epsilon"] == math.inf  # no noise: no guarantee


def test_local_mode_never_sends_the_un_noised_report():
    run = RUN.replace(anchor_dp="local", anchor_clip=0.5, anchor_noise_multiplier=2.0)
    ctx = context()
    reply, sent, kept = sent_and_kept(run, ctx)
    bound = 0.5 * math.sqrt(8)  # C = anchor-clip * sqrt(M)
    clean = GLOBAL + clip_frobenius(kept.astype(np.float64) - GLOBAL, bound)
    noise = sent - clean
    # 128 entries of N(0, (sigma 2C)^2) (replace-one sensitivity 2C): the std estimate is
    # within ~20%.
    assert noise.std() == pytest.approx(2.0 * 2 * bound, rel=0.25)
    # No array of the reply equals the clipped report or the raw set; the model is unchanged.
    model_arrays, anchors = split_payload(record_to_arrays(reply.content["arrays"]))
    assert not np.allclose(anchors, clean, atol=0.1) and not np.allclose(anchors, kept, atol=0.1)
    assert set(model_arrays) == set(model_to_arrays(run.build_model()))
    # The noise is fresh: the same message and state give another report.
    again = app(instruction(run, GLOBAL), context())
    assert not np.allclose(record_to_arrays(again.content["arrays"])[ANCHORS_KEY], sent)


def test_local_mode_reports_the_clients_opacus_epsilon_growing_per_round():
    run = RUN.replace(anchor_dp="local", anchor_noise_multiplier=1.5)
    ctx = context()
    first = sent_and_kept(run, ctx, server_round=1)[0].content["metrics"]["anchor-epsilon"]
    second = sent_and_kept(run, ctx, server_round=2)[0].content["metrics"]["anchor-epsilon"]
    reference = RDPAccountant()
    reference.step(noise_multiplier=1.5, sample_rate=1.0)
    assert first == pytest.approx(reference.get_epsilon(delta=1e-5))
    reference.step(noise_multiplier=1.5, sample_rate=1.0)
    assert second == pytest.approx(reference.get_epsilon(delta=1e-5))
    assert first < second < math.inf


def test_relevance_noise_replaces_the_raw_mean_relevance():
    # Noise of std 1e6 lands inside (floor, 1) with probability about 4e-7 (std 100: 0.8%).
    reply = app(instruction(RUN.replace(relevance_noise=1e6), GLOBAL), context())
    metrics = reply.content["metrics"]
    assert metrics["mean-relevance"] in (RELEVANCE_FLOOR, 1.0)  # N(0, 1e12) then clipped
    assert 0 < metrics["relevance-epsilon"] < math.inf


def test_dp_sgd_client_reports_its_cumulative_epsilon():
    run = RUN.replace(dp_sgd=True, dp_noise_multiplier=1.0)
    ctx = context()
    first = app(instruction(run, GLOBAL, server_round=1), ctx).content["metrics"]
    second = app(instruction(run, GLOBAL, server_round=2), ctx).content["metrics"]
    assert first["num-steps"] == 2
    assert 0 < first["dp-sgd-epsilon"] < second["dp-sgd-epsilon"] < math.inf


def test_query_answers_centroids_noised_in_local_mode():
    run = RUN.replace(anchor_dp="local", anchor_init_clip=1000.0, anchor_noise_multiplier=0.01)
    query = instruction(run, None, message_type="query", server_round=0)
    reply = app(query, context())
    arrays = record_to_arrays(reply.content["centroids"])
    data = load_partition(run.data_config(num_partitions=4), 1)
    model = run.build_model()
    load_model_arrays(model, split_payload(record_to_arrays(query.content["arrays"]))[0])
    clean, fractions = local_centroids(
        embeddings=embed(model, data.train), num_clusters=8, seed=client_seed(run, 0, 1)
    )
    noise = arrays["centroids"] - clean
    # Replace-one sensitivity of (Z, C f): sqrt(6) C.
    assert noise.std() == pytest.approx(0.01 * math.sqrt(6) * 1000.0, rel=0.25)
    assert arrays["fractions"].shape == fractions.shape
    assert reply.content["metrics"]["anchor-epsilon"] > 0


def test_query_in_central_mode_sends_the_raw_summary_to_the_trusted_server():
    reply = app(
        instruction(RUN.replace(anchor_dp="central"), None, message_type="query"), context()
    )
    arrays = record_to_arrays(reply.content["centroids"])
    assert arrays["centroids"].shape == (8, 16)
    assert arrays["fractions"].sum() == pytest.approx(1.0, rel=1e-5)


def test_client_side_update_clipping_mod_clips_model_and_anchors_together():
    message = instruction(RUN, GLOBAL)
    message.content["config"][KEY_CLIPPING_NORM] = 0.1
    sent = record_to_arrays(message.content["arrays"])
    reply = app(message, context())
    received = record_to_arrays(reply.content["arrays"])
    update = np.sqrt(sum(((received[k] - sent[k]) ** 2).sum() for k in sent))
    assert update == pytest.approx(0.1, rel=1e-3)
    assert not np.allclose(received[ANCHORS_KEY], GLOBAL)
    # Without the key, the reply passes untouched (its update is far above 0.1).
    plain = record_to_arrays(app(instruction(RUN, GLOBAL), context()).content["arrays"])
    assert np.sqrt(sum(((plain[k] - sent[k]) ** 2).sum() for k in sent)) > 1.0


def test_relevance_noise_reply_carries_only_privatized_relevance_statistics():
    # Issue 12, defect 5: with relevance-noise > 0 no un-noised relevance statistic leaves.
    run = RUN.replace(relevance_noise=0.05)
    reply = app(instruction(run, GLOBAL), context())
    metrics = dict(reply.content["metrics"])
    assert "high-relevance-fraction" not in metrics
    data = load_partition(run.data_config(num_partitions=4), 1)
    model = run.build_model()
    load_model_arrays(
        model, split_payload(record_to_arrays(instruction(run, None).content["arrays"]))[0]
    )
    raw = train_local(
        model,
        data.train,
        anchors=torch.from_numpy(GLOBAL.copy()),
        aso=run.aso,
        train=run.training,
        seed=client_seed(run, 1, 1),
    ).mean_relevance
    assert raw not in metrics.values()
    assert metrics["mean-relevance"] != raw
