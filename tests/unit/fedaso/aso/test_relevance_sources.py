"""Relevance sources as named variants (docs/SPEC.md section 13): anchors-refit, probe, oracle."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from fedaso.aso.anchors import refit_anchors
from fedaso.aso.relevance import RelevanceProbe
from fedaso.config import ASOConfig, RunConfig, TrainConfig
from fedaso.data import load_central
from fedaso.privacy import PrivacyConfig
from fedaso.training.aso_state import ASOState
from fedaso.training.evaluate import embed
from fedaso.training.fact_relevance import auroc, fit_probe_on_public
from fedaso.training.trainer import train_local
from fedaso.wire import ANCHORS_KEY, PROBE_BIAS_KEY, PROBE_WEIGHT_KEY, probe_of, with_probe
from flower_wire.records import record_to_arrays
from strategies.refit import AnchorRefitFedASO, ProbeFedASO
from tests.flower_helpers import metrics, payload, train_reply


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
        RunConfig.of(relevance_source="anchors-refit", anchor_dp="central")


def tiny_probe_setting(tiny):
    """A tiny LM run on facts, its central data and model."""
    run = tiny.config(facts_entities=4)
    central = load_central(run.data_config(num_partitions=1))
    torch.manual_seed(0)
    return run, central, run.build_model()


def test_probe_fit_on_public_documents_tells_their_fact_tokens_apart(tiny):
    _, central, model = tiny_probe_setting(tiny)
    public = central.public_fact_probe
    probe = fit_probe_on_public(model, public, seed=0)
    fact, other = (embed(model, split) for split in (public.fact, public.filler))
    assert probe.weight.shape == (fact.shape[1],)
    # s = sigmoid(w . e + b), by hand.
    by_hand = 1 / (1 + np.exp(-(fact[:5].astype(np.float64) @ probe.weight + probe.bias)))
    np.testing.assert_allclose(probe.scores(torch.from_numpy(fact[:5])), by_hand, rtol=1e-5)
    scores = [probe.scores(torch.from_numpy(rows)).numpy() for rows in (fact, other)]
    # In-sample, on the documents it was fitted on. A fresh byte model's embedding point
    # barely tells a value's letters from others' (0.60 here), but the fit finds that.
    assert auroc(*scores) > 0.55
    flipped = RelevanceProbe(weight=-probe.weight, bias=-probe.bias)
    assert auroc(*(flipped.scores(torch.from_numpy(rows)).numpy() for rows in (fact, other))) < 0.45
    with pytest.raises(ValueError, match="finite"):
        RelevanceProbe(weight=np.array([np.nan], dtype=np.float32), bias=0.0)


def test_probe_travels_under_its_reserved_keys_and_only_down():
    weight = np.arange(3, dtype=np.float32)
    sent = with_probe(payload(0.0, 1.0), weight, -0.5)
    assert sent[PROBE_BIAS_KEY].tolist() == [-0.5]
    found_weight, found_bias = probe_of(sent)
    np.testing.assert_array_equal(found_weight, weight)
    assert found_bias == -0.5 and probe_of(payload(0.0, 1.0)) is None
    fitted = RelevanceProbe(weight=np.full(2, 0.5, dtype=np.float32), bias=0.25)
    strategy = ProbeFedASO(fit_probe=lambda model_arrays: fitted, anchor_staleness_decay=0.0)
    strategy.global_arrays = with_probe(payload(0.0, 1.0), weight, -0.5)
    replies = [
        train_reply(1, payload(2.0, 3.0), metrics(relevance=0.5)),
        train_reply(2, sent, metrics(relevance=0.5)),  # echoes the probe: not a reply's shape
    ]
    arrays, agg = strategy.aggregate_train(1, replies)
    out = record_to_arrays(arrays)
    assert agg["num-replies"] == 1 and agg["num-rejected"] == 1
    np.testing.assert_allclose(out["w"], 2.0)
    np.testing.assert_allclose(out[ANCHORS_KEY], 3.0)  # anchors merged as usual
    np.testing.assert_array_equal(out[PROBE_WEIGHT_KEY], fitted.weight)
    assert out[PROBE_BIAS_KEY].tolist() == [0.25]


def test_probe_without_eq5_sends_and_takes_no_anchors():
    fitted = RelevanceProbe(weight=np.full(2, 0.5, dtype=np.float32), bias=0.25)
    strategy = ProbeFedASO(
        fit_probe=lambda model_arrays: fitted, uses_anchors=False, anchor_staleness_decay=0.0
    )
    model_only = {"w": np.full((2, 3), 1.0, dtype=np.float32)}
    strategy.global_arrays = with_probe(model_only, fitted.weight, fitted.bias)
    strategy.check_global_payload()  # the model and the probe: all it needs
    replies = [
        train_reply(1, {"w": np.full((2, 3), 2.0, dtype=np.float32)}, metrics(relevance=0.25)),
        train_reply(2, {"w": np.full((2, 3), 6.0, dtype=np.float32)}, metrics(relevance=0.75)),
        train_reply(3, payload(9.0, 9.0), metrics(relevance=0.5)),  # anchors up: refused
    ]
    arrays, agg = strategy.aggregate_train(1, replies)
    out = record_to_arrays(arrays)
    assert agg["num-replies"] == 2 and agg["num-rejected"] == 1
    np.testing.assert_allclose(out["w"], 0.25 * 2.0 + 0.75 * 6.0)  # Eq. 7's weights
    assert ANCHORS_KEY not in out and "anchor-drift" not in agg
    np.testing.assert_array_equal(out[PROBE_WEIGHT_KEY], fitted.weight)
    assert not strategy.anchor_store.reports  # nothing merged
    strategy.global_arrays = with_probe(payload(0.0, 1.0), fitted.weight, fitted.bias)
    with pytest.raises(ValueError, match="uses no anchors, but the payload carries them"):
        strategy.check_global_payload()
    strategy.global_arrays = model_only
    with pytest.raises(ValueError, match="needs the probe"):
        strategy.check_global_payload()


@pytest.mark.parametrize(
    ("settings", "uses"),
    [
        ({}, True),  # the report's anchors
        ({"relevance_source": "anchors-refit", "project_gradients": False}, True),
        ({"relevance_source": "probe"}, True),  # Eq. 5's subspace
        ({"relevance_source": "probe", "project_gradients": False}, False),
        ({"relevance_source": "oracle", "project_gradients": False}, True),  # research only
    ],
)
def test_anchors_are_used_unless_the_probe_scores_and_nothing_projects(settings, uses):
    assert ASOConfig(**settings).uses_anchors is uses


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"anchor_dp": "local"}, r"anchor-dp='local'.*nothing to protect"),
        ({"initial_anchors": "a.npy"}, r"initial-anchors='a.npy'.*would be ignored"),
    ],
)
def test_anchor_settings_are_refused_where_no_anchors_exist(settings, message):
    unused = {"relevance_source": "probe", "project_gradients": False}
    with pytest.raises(ValueError, match=message):
        RunConfig.of(**unused, **settings)
    with pytest.raises(ValueError, match="anchor_dp='local'"):
        ProbeFedASO(
            fit_probe=lambda m: None, uses_anchors=False, privacy=PrivacyConfig(anchor_dp="local")
        )


def test_probe_without_eq5_trains_without_anchors(tiny):
    run, central, model = tiny_probe_setting(tiny)
    probe = fit_probe_on_public(model, central.public_fact_probe, seed=0)
    data = central.eval
    before = probe.scores(torch.from_numpy(embed(model, data))).mean().item()
    aso = ASOConfig(num_anchors=16, subspace_rank=4, relevance_source="probe",
                    project_gradients=False)  # fmt: skip
    one_step = TrainConfig(local_epochs=1, batch_size=len(data), lr=0.01)
    kept = train_local(copy.deepcopy(model), data, anchors=None, aso=aso, train=one_step,
                       seed=0, relevance_probe=probe)  # fmt: skip
    assert kept.anchors is None and kept.mean_relevance == pytest.approx(before, rel=1e-5)
    anchors = torch.randn(16, run.model.model_width)
    used = dataclasses.replace(aso, project_gradients=True)
    with pytest.raises(ValueError, match="needs anchors, but none were given"):
        train_local(model, data, anchors=None, aso=used, train=one_step, seed=0,
                    relevance_probe=probe)  # fmt: skip
    with pytest.raises(ValueError, match="uses no anchors, but some were given"):
        train_local(model, data, anchors=anchors, aso=aso, train=one_step, seed=0,
                    relevance_probe=probe)  # fmt: skip
    # A probe of another width (the server's message says d) is refused before any step.
    narrow = RelevanceProbe(weight=probe.weight[:-1], bias=probe.bias)
    with pytest.raises(ValueError, match=f"embedding width is d={run.model.model_width}"):
        train_local(model, data, anchors=None, aso=aso, train=one_step, seed=0,
                    relevance_probe=narrow)  # fmt: skip


def test_without_eq5_the_probes_weights_do_not_depend_on_anchors():
    torch.manual_seed(0)
    probe = RelevanceProbe(weight=np.linspace(-1, 1, 8).astype(np.float32), bias=0.1)
    aso = ASOConfig(num_anchors=4, subspace_rank=2, relevance_source="probe",
                    project_gradients=False)  # fmt: skip
    losses, scored = torch.rand(6), torch.tensor([True, True, False, True, True, True])
    embedding = torch.randn(2, 3, 8)  # (B, T, d)
    with_anchors = ASOState(torch.randn(4, 8), aso, probe)
    without = ASOState(None, aso, probe)
    weighted, relevance = with_anchors.weight_losses(embedding, losses, scored)
    weighted_alone, relevance_alone = without.weight_losses(embedding, losses, scored)
    torch.testing.assert_close(relevance_alone, relevance, rtol=0, atol=0)
    torch.testing.assert_close(weighted_alone, weighted, rtol=0, atol=0)
    without.after_step()  # no anchor to move
    assert without.anchors is None and without.basis is None
    with pytest.raises(ValueError, match="needs anchors"):
        ASOState(None, dataclasses.replace(aso, project_gradients=True), probe)


def test_probe_scores_are_the_relevance_of_local_training(tiny):
    run, central, model = tiny_probe_setting(tiny)
    probe = fit_probe_on_public(model, central.public_fact_probe, seed=0)
    data = central.eval
    before = probe.scores(torch.from_numpy(embed(model, data))).mean().item()
    aso = ASOConfig(num_anchors=16, subspace_rank=4, relevance_source="probe")
    one_step = TrainConfig(local_epochs=1, batch_size=len(data), lr=0.01)
    anchors = torch.randn(16, run.model.model_width)
    result = train_local(model, data, anchors=anchors, aso=aso, train=one_step, seed=0,
                         relevance_probe=probe)  # fmt: skip
    assert result.mean_relevance == pytest.approx(before, rel=1e-5)
    with pytest.raises(ValueError, match="relevance-source='probe'"):
        train_local(model, data, anchors=anchors, aso=aso, train=one_step, seed=0)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"dataset": "pydoc"}, r"relevance-source='probe'.*dataset='pydoc'"),
        ({"update_dp": "server-fixed"}, r"relevance-source='probe'.*update-dp='server-fixed'"),
    ],
)
def test_probe_source_is_refused_where_it_cannot_work(settings, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.of(relevance_source="probe", **settings)
