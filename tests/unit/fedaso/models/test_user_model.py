"""``model = py:MODULE:FACTORY``: a user's own nn.Module, from docs/MODELS.md's worked example."""

import pytest
import torch

from custom_models.user_model import ByteGRU
from fedaso.config import RunConfig
from fedaso.data import load_partition
from fedaso.training.trainer import train_local


def test_user_factory_model_trains_with_aso():
    run = RunConfig.of(
        model="py:custom_models.user_model:build", model_width=16, num_anchors=8, subspace_rank=4,
        seq_len=32, facts_entities=8, max_steps=3,
    )  # fmt: skip
    model = run.build_model()
    assert isinstance(model.net, ByteGRU) and model.embedding_width == 16
    assert model.embedding_point is model.net.norm
    data = load_partition(run.data_config(num_partitions=2), 0)
    anchors = torch.randn(8, 16)
    result = train_local(
        model, data.train, anchors=anchors, aso=run.aso, train=run.training, seed=0
    )
    assert result.num_steps == 3 and 0 < result.mean_relevance < 1


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("py:custom_models.user_model", "use py:MODULE:FACTORY"),
        ("py:no_such_module_x:build", "cannot import 'no_such_module_x'"),
        ("py:custom_models.user_model:nope", "has no callable 'nope'"),
        ("py:custom_models.user_model:ByteGRU", "model='py:custom_models.user_model:ByteGRU'"),
    ],
)
def test_bad_factories_are_named(model, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.of(model=model, model_width=16).build_model()
