"""Adversarial input fuzzing (hypothesis): random and extreme replies, metrics and configs.

Properties:
- FedASO's ``aggregate_train`` never raises, whatever the replies hold, and any global
  payload it returns has the global names, shapes and dtypes and only finite values;
- against replies that lie but are well-formed (huge relevance and counts, lists where a
  number belongs, stolen and invented partition ids, huge updates), no reply holds more
  than ``max-client-share`` of the new model and the anchor store stays within the
  federation's size;
- ``aggregate_evaluate`` never raises and returns only finite metrics;
- the ClientApp's message parsing (``load_job``) either succeeds or raises ``ValueError``;
- the run-config parser (``RunConfig.from_flat``) either returns a valid config or raises
  ``ValueError``, and so does a client's parser (``ClientConfig.from_message``);
- a site policy (``clients.policy``) either accepts a hostile config that lies within all
  its bounds, or refuses it with one line naming a policy key, without building anything.
Example counts are modest so that the file runs in seconds; ``python -m tests.fuzz_at_scale``
runs the same properties with ``FEDASO_FUZZ_EXAMPLES`` (10,000 by default) examples each.
"""

import dataclasses
import math
import os
import time

import numpy as np
from flwr.app import Array, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.app.metadata import Metadata
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from clients.client_app import load_job
from clients.policy import PolicyRefusalError, SitePolicy, count_parameters, data_path
from fedaso.aso.aggregation import AGGREGATION_WEIGHTS
from fedaso.aso.robust import MAX_REPORTED_COUNT, ReplyBounds
from fedaso.config import RunConfig
from fedaso.config.client import ClientConfig
from fedaso.models.arrays import model_to_arrays
from fedaso.wire import ANCHORS_KEY, join_payload
from flower_wire.records import arrays_to_record, record_to_arrays
from strategies.fedaso import FedASO
from tests.config_helpers import micro_run
from tests.flower_helpers import payload, reply_metadata, train_reply
from tests.unit.clients.test_client_app import client_config

GLOBAL = payload(0.5, 0.25)
SCALE = int(os.environ.get("FEDASO_FUZZ_EXAMPLES", "0"))  # tests.fuzz_at_scale sets it


def fuzz_settings(examples: int) -> settings:
    """``examples`` per property in CI; ``FEDASO_FUZZ_EXAMPLES`` each when set."""
    return settings(
        max_examples=SCALE or examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )


SETTINGS = fuzz_settings(60)
EXTREME_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, -0.0, 1e-45, 3.4e38, -3.4e38, 1e30]),
)
METRIC_VALUES = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=3),
)
METRIC_KEYS = st.sampled_from(
    ["num-examples", "num-tokens", "mean-relevance", "train-loss", "partition-id", "num-steps"]
)


@st.composite
def arrays_like_global(draw):
    """Mostly the global names; random shapes, dtypes and extreme values."""
    arrays = {}
    for name, reference in GLOBAL.items():
        if draw(st.integers(0, 9)) == 0:
            continue  # a missing array
        dtype = draw(st.sampled_from([np.float32] * 4 + [np.float16, np.float64, np.int32]))
        shape = reference.shape if draw(st.integers(0, 4)) else draw(hnp.array_shapes(max_dims=2))
        elements = EXTREME_FLOATS if dtype != np.int32 else st.integers(-5, 5)
        arrays[name] = draw(hnp.arrays(dtype, shape, elements=elements))
    if draw(st.integers(0, 9)) == 0:
        arrays["extra"] = np.zeros(2, np.float32)
    return arrays


@st.composite
def good_metrics(draw):
    return {
        "num-examples": draw(st.integers(1, 100)),
        "num-tokens": draw(st.integers(1, 1000)),
        "mean-relevance": draw(st.floats(0.01, 1.0)),
        "train-loss": 1.0,
        "partition-id": draw(st.integers(0, 3)),
    }


@st.composite
def replies(draw):
    """A round's replies: arrays and metrics each drawn plausible or hostile, independently."""
    out = []
    for node in range(draw(st.integers(0, 5))):
        if draw(st.integers(0, 9)) == 0:
            out.append(Message(content=RecordDict({}), metadata=reply_metadata(node)))
            continue
        if draw(st.booleans()):
            arrays = payload(draw(st.floats(-3, 3)), draw(st.floats(-3, 3)))
        else:
            arrays = draw(arrays_like_global())
        if draw(st.booleans()):
            metrics = draw(good_metrics())
        else:
            metrics = draw(good_metrics()) | draw(
                st.dictionaries(METRIC_KEYS, METRIC_VALUES, max_size=3)
            )
        content = RecordDict({"arrays": arrays_to_record(arrays), "metrics": MetricRecord(metrics)})
        out.append(Message(content=content, metadata=reply_metadata(node)))
    return out


def fresh_strategy(ratio: float) -> FedASO:
    strategy = FedASO(
        bounds=ReplyBounds.off(max_update_norm_ratio=ratio), anchor_staleness_decay=0.5
    )
    strategy.global_arrays = {k: v.copy() for k, v in GLOBAL.items()}
    return strategy


@SETTINGS
@given(rounds=st.lists(replies(), min_size=1, max_size=3), ratio=st.sampled_from([0.0, 3.0]))
def test_aggregate_train_never_raises_and_keeps_the_global_model_finite(rounds, ratio):
    strategy = fresh_strategy(ratio)
    for server_round, round_replies in enumerate(rounds, start=1):
        arrays, metrics = strategy.aggregate_train(server_round, round_replies)
        assert metrics["num-replies"] + metrics["num-rejected"] + metrics["num-failures"] == len(
            round_replies
        )
        if arrays is None:
            assert metrics["num-replies"] == 0
            continue
        result = record_to_arrays(arrays)
        assert list(result) == list(GLOBAL)
        for name, array in result.items():
            assert array.shape == GLOBAL[name].shape and array.dtype == GLOBAL[name].dtype
            assert np.isfinite(array).all(), name
        strategy.global_arrays = result


FEDERATION = 4  # nodes 0..3 hold partitions 0..3
ZERO = payload(0.0, 0.0)


@st.composite
def lying_replies(draw):
    """A round of well-formed replies from nodes 0..5, each claiming whatever it likes.

    Reply ``slot`` moves only entry ``slot`` of the model (by ``values[slot]``), so each
    reply's share of the new model can be read off the aggregate.
    """
    replies, values = [], []
    for slot in range(draw(st.integers(1, ZERO["w"].size))):
        node = draw(st.integers(0, FEDERATION + 1))
        value = draw(st.sampled_from([1.0, -2.0, 1e30]))
        arrays = {k: v.copy() for k, v in ZERO.items()}
        arrays["w"].flat[slot] = value
        arrays[ANCHORS_KEY].flat[slot] = value
        claims = {
            "mean-relevance": draw(st.one_of(st.floats(-1e308, 1e308), st.sampled_from([1e6]))),
            "num-examples": draw(st.one_of(st.integers(1, 100), st.sampled_from([1e308]))),
            "num-tokens": draw(st.one_of(st.integers(1, 100), st.sampled_from([2**63 - 1]))),
            "train-loss": 1.0,
            "high-relevance-fraction": draw(
                st.one_of(st.floats(0, 1), st.lists(st.floats(0, 1), min_size=1, max_size=3))
            ),
        }
        lie = draw(st.sampled_from(["own", "stolen", "fresh", "none"]))
        if lie != "none":
            claims["partition-id"] = {
                "own": node,
                "stolen": draw(st.integers(0, FEDERATION - 1)),
                "fresh": draw(st.integers(FEDERATION, 2**53)),
            }[lie]
        replies.append(train_reply(node, arrays, claims))
        values.append(value)
    return replies, values


@SETTINGS
@given(
    rounds=st.lists(lying_replies(), min_size=1, max_size=3),
    bounds=st.builds(
        ReplyBounds,
        max_update_norm_ratio=st.sampled_from([0.0, 3.0]),
        max_update_norm=st.sampled_from([0.0, 100.0]),
        max_client_share=st.sampled_from([1.0, 0.5, 1 / 3, 0.3, 0.1]),
        max_reported_count=st.sampled_from([1000, MAX_REPORTED_COUNT]),
    ),
    weight=st.sampled_from(AGGREGATION_WEIGHTS),
)
def test_lying_replies_never_take_more_than_the_cap_nor_grow_the_store(rounds, bounds, weight):
    strategy = FedASO(bounds=bounds, aggregation_weight=weight, anchor_staleness_decay=0.5)
    for server_round, (round_replies, values) in enumerate(rounds, start=1):
        strategy.global_arrays = {k: v.copy() for k, v in ZERO.items()}
        strategy.partitions.observe(range(FEDERATION))
        arrays, metrics = strategy.aggregate_train(server_round, round_replies)
        assert len(strategy.anchor_store.reports) <= 2 * FEDERATION  # partitions + node keys
        if arrays is None:
            continue
        assert metrics["client-weight-share-max"] <= bounds.max_client_share
        model = record_to_arrays(arrays)["w"].astype(np.float64)
        assert np.isfinite(model).all()
        for slot, value in enumerate(values):
            share = model.flat[slot] / value  # the share this reply holds of the new model
            assert share <= bounds.max_client_share * (1 + 1e-6)


@SETTINGS
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["num-examples", "loss", "accuracy"]), METRIC_VALUES),
        max_size=5,
    )
)
def test_aggregate_evaluate_never_raises_and_reports_finite_metrics(metric_dicts):
    messages = [
        Message(content=RecordDict({"metrics": MetricRecord(m)}), metadata=reply_metadata(i))
        for i, m in enumerate(metric_dicts)
    ]
    aggregated = fresh_strategy(0.0).aggregate_evaluate(1, messages)
    for value in (aggregated or {}).values():
        values = value if isinstance(value, list) else [value]
        assert all(math.isfinite(v) for v in values)


RUN = micro_run()
MODEL_ARRAYS = model_to_arrays(RUN.build_model())
# Keys left alone: those that select other data (the partition cache keeps the test fast).
DATA_KEYS = (
    "dataset",
    "seed",
    "seq-len",
    "facts-entities",
    "facts-prose-sentences",
    "test-fraction",
    "window-stride",
    "partitioner",
)
# The model's size is fuzzed too: the node config names no site policy, so the client runs
# under the strict default, which refuses a hostile size (e.g. model-layers=2**62) before it
# builds anything (clients.policy). Without a policy such a size exhausts memory or time
# (found by tests.fuzz_at_scale; docs/RELIABILITY.md).
CONFIG_VALUES = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
    st.binary(max_size=8),
    st.lists(st.integers(-3, 3), max_size=3),
)


def instruction(content: RecordDict) -> Message:
    metadata = Metadata(
        run_id=1,
        message_id="m",
        src_node_id=0,
        dst_node_id=3,
        reply_to_message_id="",
        group_id="1",
        created_at=0.0,
        ttl=60.0,
        message_type="train",
    )
    return Message(content=content, metadata=metadata)


@st.composite
def instructions(draw):
    """Messages a corrupt or hostile server could send to the ClientApp."""
    config = client_config(RUN)
    overrides = draw(
        st.dictionaries(st.sampled_from([*config, "out-dir", "junk"]), CONFIG_VALUES, max_size=3)
    )
    config |= {k: v for k, v in overrides.items() if k not in DATA_KEYS}
    for key in draw(st.sets(st.sampled_from(sorted(config)), max_size=1)):
        del config[key]  # a missing key is a ValueError naming it
    arrays = dict(MODEL_ARRAYS)
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(arrays)))
        arrays[name] = draw(
            hnp.arrays(
                draw(st.sampled_from([np.float32, np.float16, np.int64])),
                hnp.array_shapes(max_dims=2, max_side=4),
                elements=st.integers(-3, 3),
            )
        )
    anchors = draw(
        st.sampled_from([None, np.zeros((8, 16)), np.zeros((3, 2)), np.full((8, 16), np.nan)])
    )
    record = arrays_to_record(join_payload(arrays, anchors))
    if draw(st.integers(0, 7)) == 0:
        record["junk"] = Array(dtype="float32", shape=(9,), stype="numpy.ndarray", data=b"xx")
    content = RecordDict({"arrays": record, "config": ConfigRecord(config)})
    if draw(st.integers(0, 7)) == 0:
        content = RecordDict({"arrays": record})
    return instruction(content)


@fuzz_settings(40)
@given(
    instructions(),
    st.dictionaries(st.sampled_from(["partition-id", "num-partitions"]), st.integers(-2, 3)),
)
def test_client_message_parsing_succeeds_or_raises_a_value_error(msg, node_config):
    context = Context(
        run_id=1,
        node_id=3,
        node_config={"partition-id": 0, "num-partitions": 2} | node_config,
        state=RecordDict(),
        run_config={},
    )
    try:
        job = load_job(msg, context)
    except ValueError:
        return
    assert job.global_anchors is None or job.global_anchors.shape[0] >= 1
    assert ANCHORS_KEY not in job.model.state_dict()


FLAT_KEYS = st.sampled_from([*RunConfig().to_flat(), "junk", "num_anchors", ""])


@fuzz_settings(60)
@given(st.dictionaries(FLAT_KEYS, CONFIG_VALUES, max_size=6), st.booleans())
def test_run_config_parsing_returns_a_valid_config_or_raises_a_value_error(flat, as_client):
    try:
        if as_client:
            parsed = ClientConfig.from_message(client_config(RUN) | flat).run
        else:
            parsed = RunConfig.from_flat(flat)
    except ValueError:
        return
    assert RunConfig.from_flat(parsed.to_flat()) == parsed  # valid: it round-trips
    assert parsed.aso.subspace_rank < parsed.aso.num_anchors


# -- the site policy (clients.policy) against hostile configs ------------------------------
POLICY_ROOT = "/srv/fedaso-fuzz-site"  # need not exist: the check never reads the data
POLICY = SitePolicy.from_toml(
    f"""
[models]
py-factories = ["py:custom_models.user_model:build"]
[data]
data-roots = ["{POLICY_ROOT}"]
[limits]
max-parameters = 2_000_000
max-seq-len = 256
max-batch-size = 64
max-local-epochs = 4
max-local-steps = 500
max-anchors = 128
max-subspace-rank = 32
max-facts-entities = 100
[privacy]
anchor-dp = ["none", "local"]
min-anchor-noise-multiplier = 0.5
max-anchor-clip = 20.0
min-dp-noise-multiplier = 0.5
max-dp-grad-norm = 5.0
"""
)
POLICY_KEYS = {
    f.name.replace("_", "-")
    for section in (POLICY.models, POLICY.data, POLICY.limits, POLICY.privacy)
    for f in dataclasses.fields(section)
}
SIZES = st.sampled_from([1, 2, 3, 8, 64, 1024, 65_536, 2**20, 10_000_000, 2**31, 2**62])
SIZE_KEYS = ("model-width", "model-layers", "model-heads", "seq-len", "num-anchors")
SIZE_KEYS += ("subspace-rank", "batch-size", "local-epochs", "max-steps", "facts-entities")
HOSTILE_MODELS = ("tinylm", "py:custom_models.user_model:build", "py:os:system")
HOSTILE_MODELS += ("py:evil:build", "hf:gpt2", "hf:/etc", f"hf:{POLICY_ROOT}/m", "hf:../m")
HOSTILE_DATASETS = ("facts", "facts:a", "digits", "pydoc", "text:/etc", "text:relative")
HOSTILE_DATASETS += (f"text:{POLICY_ROOT}/a", f"text:{POLICY_ROOT}/../..")
HOSTILE_DATASETS += (f"file:{POLICY_ROOT}/x.csv",)
HOSTILE_POLICY_VALUES = {
    **dict.fromkeys(SIZE_KEYS, SIZES),
    "model": st.sampled_from(HOSTILE_MODELS),
    "dataset": st.sampled_from(HOSTILE_DATASETS),
    "anchor-dp": st.sampled_from(["none", "local", "central"]),
    "dp-sgd": st.booleans(),
    "anchor-noise-multiplier": st.sampled_from([0.0, 0.1, 0.5, 1.0, 1e9]),
    "dp-noise-multiplier": st.sampled_from([0.0, 0.3, 1.0]),
    "anchor-clip": st.sampled_from([1e-3, 1.0, 20.0, 1e9]),
    "dp-max-grad-norm": st.sampled_from([0.1, 5.0, 1e9]),
}


@fuzz_settings(60)
@given(st.fixed_dictionaries({}, optional=HOSTILE_POLICY_VALUES))
def test_site_policy_accepts_within_bounds_or_refuses_with_a_generic_line(overrides):
    try:
        run = ClientConfig.from_message(client_config(RUN) | overrides).run
    except ValueError:
        event("not a valid config")  # the parser's property above
        return
    started = time.perf_counter()
    try:
        POLICY.check(run)
    except PolicyRefusalError as refusal:
        line = str(refusal)
        assert line.startswith("refused by site policy: ") and refusal.key in POLICY_KEYS
        assert line == f"refused by site policy: {refusal.key}"  # no path, no value
        assert time.perf_counter() - started < 5.0  # never built: nothing to wait for
        event(f"refused: {refusal.key}")
        return
    event("accepted")
    limits = POLICY.limits
    assert run.model.model in ("tinylm", "py:custom_models.user_model:build")
    inside = (f"text:{POLICY_ROOT}/a", f"file:{POLICY_ROOT}/x.csv")
    assert data_path(run.data.dataset) is None or run.data.dataset in inside
    assert (
        run.data.seq_len <= limits.max_seq_len and run.training.batch_size <= limits.max_batch_size
    )
    assert run.training.local_epochs <= limits.max_local_epochs and run.training.max_steps <= 500
    assert run.aso.num_anchors <= limits.max_anchors and run.privacy.anchor_dp != "central"
    assert count_parameters(run, limits.max_parameters) <= limits.max_parameters
    assert run.privacy.anchor_dp != "local" or run.privacy.anchor_noise_multiplier >= 0.5
    assert not run.privacy.dp_sgd or run.privacy.dp_noise_multiplier >= 0.5
