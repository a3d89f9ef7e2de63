"""ASO local training: plain equivalence, ASO effects, anchors, evaluation and fact recall."""

import math

import pytest
import torch

from fedaso.config import ASOConfig, TrainConfig
from fedaso.data import RecallPrompt, TensorSplit, decode_bytes, encode_text
from fedaso.data.corpora import text_corpus_of
from fedaso.data.tokens import BYTES
from fedaso.data.windows import lm_corpus
from fedaso.models import MLPClassifier, MLPConfig, TinyLM, TinyLMConfig
from fedaso.training.evaluate import evaluate, fact_recall
from fedaso.training.trainer import train_local

LM = TinyLMConfig(vocab_size=256, block_size=16, n_layer=1, n_head=2, n_embd=16)


def lm_split(n=24, seed=0):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 256, (n, LM.block_size + 1), generator=generator)
    return TensorSplit(inputs=tokens[:, :-1], targets=tokens[:, 1:])


def fresh_lm(seed=0):
    torch.manual_seed(seed)
    return TinyLM(LM)


def anchors_for(width, m=8, seed=1):
    return torch.randn(m, width, generator=torch.Generator().manual_seed(seed))


SEED = 3  # batch order of every round below
TRAIN = TrainConfig(local_epochs=2, batch_size=8, lr=0.01)


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_lambda_zero_without_projection_equals_plain_training_exactly():
    plain, aso_model = fresh_lm(), fresh_lm()
    data = lm_split()
    train_local(plain, data, anchors=None, aso=None, train=TRAIN, seed=SEED)
    aso = ASOConfig(num_anchors=8, subspace_rank=4, aso_lambda=0.0, project_gradients=False)
    result = train_local(aso_model, data, anchors=anchors_for(16), aso=aso, train=TRAIN, seed=SEED)
    for a, b in zip(params(plain), params(aso_model), strict=True):
        assert torch.equal(a, b)
    assert 0.0 <= result.mean_relevance <= 1.0


@pytest.mark.parametrize("change", [{"aso_lambda": 1.0}, {"project_gradients": True}])
def test_each_aso_mechanism_changes_training(change):
    base = {"num_anchors": 8, "subspace_rank": 4, "aso_lambda": 0.0, "project_gradients": False}
    data = lm_split()
    models = [fresh_lm(), fresh_lm()]
    for model, overrides in zip(models, [{}, change], strict=True):
        aso = ASOConfig(**{**base, **overrides})
        train_local(model, data, anchors=anchors_for(16), aso=aso, train=TRAIN, seed=SEED)
    assert not all(torch.equal(a, b) for a, b in zip(*map(params, models), strict=True))


def facts_split(seq_len=16):
    """Byte windows of a few facts training documents, with their fact targets."""
    return lm_corpus(text_corpus_of("facts", 0, 2), seq_len, BYTES).rows_to_split(range(6), 17)


def test_oracle_relevance_is_the_fact_indicator_in_eq4_and_the_reported_mean():
    data = facts_split()
    aso = ASOConfig(
        num_anchors=8, subspace_rank=4, aso_lambda=3.0, project_gradients=False,
        relevance_source="oracle",
    )  # fmt: skip
    one_step = TrainConfig(local_epochs=1, batch_size=len(data), lr=0.1, optimizer="sgd")
    model, reference = fresh_lm(), fresh_lm()
    result = train_local(model, data, anchors=anchors_for(16), aso=aso, train=one_step, seed=SEED)
    assert result.num_steps == 1
    assert result.mean_relevance == pytest.approx(data.fact_targets.float().mean().item())
    # Eq. 4 by hand: (1 + lambda 1[fact]) l_i, averaged over the batch's tokens; one SGD step.
    losses = torch.nn.functional.cross_entropy(
        reference(data.inputs).reshape(-1, 256), data.targets.reshape(-1), reduction="none"
    )
    weights = 1.0 + 3.0 * data.fact_targets.reshape(-1).float()
    (weights * losses).mean().backward()
    with torch.no_grad():
        for p in reference.parameters():
            p -= 0.1 * p.grad
    for a, b in zip(params(model), params(reference), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="relevance-source='oracle'"):
        train_local(
            fresh_lm(), lm_split(), anchors=anchors_for(16), aso=aso, train=one_step, seed=SEED
        )


def test_relevance_is_reported_and_is_not_one_over_m():
    result = train_local(
        fresh_lm(),
        lm_split(),
        anchors=anchors_for(16),
        aso=ASOConfig(num_anchors=8, subspace_rank=4),
        train=TRAIN,
        seed=SEED,
    )
    assert result.num_tokens == 2 * 24 * 16
    assert result.num_steps == 2 * 3
    assert 0.0 < result.mean_relevance < 1.0
    assert abs(result.mean_relevance - 1 / 8) > 1e-3
    assert 0.0 <= result.high_relevance_fraction <= 1.0


@pytest.mark.parametrize("update", [True, False])
def test_anchors_move_only_when_updates_are_on(update):
    anchors = anchors_for(16)
    aso = ASOConfig(num_anchors=8, subspace_rank=4, update_anchors=update)
    result = train_local(fresh_lm(), lm_split(), anchors=anchors, aso=aso, train=TRAIN, seed=SEED)
    assert torch.equal(result.anchors, anchors) is not update


def test_max_steps_caps_local_steps():
    train = TrainConfig(local_epochs=5, batch_size=4, max_steps=3)
    result = train_local(fresh_lm(), lm_split(), anchors=None, aso=None, train=train, seed=SEED)
    assert result.num_steps == 3 and math.isnan(result.mean_relevance)


def test_bad_anchors_are_named():
    aso = ASOConfig(num_anchors=8, subspace_rank=4)
    with pytest.raises(ValueError, match=r"shape \(8, 5\)"):
        train_local(
            fresh_lm(), lm_split(), anchors=torch.zeros(8, 5), aso=aso, train=TRAIN, seed=SEED
        )
    with pytest.raises(ValueError, match="subspace-rank=32"):
        ASOConfig(num_anchors=64, subspace_rank=32).check_width(16)


def test_classifier_trains_with_aso_and_learns():
    torch.manual_seed(0)
    features = torch.randn(64, 8)
    labels = (features[:, 0] > 0).long()
    data = TensorSplit(inputs=features, targets=labels)
    model = MLPClassifier(MLPConfig(num_features=8, hidden=16, num_classes=2))
    before = evaluate(model, data).loss
    train = TrainConfig(local_epochs=20, batch_size=16, lr=0.01)
    aso = ASOConfig(num_anchors=4, subspace_rank=2)
    train_local(model, data, anchors=anchors_for(16, m=4), aso=aso, train=train, seed=SEED)
    after = evaluate(model, data)
    assert after.loss < before and after.accuracy > 0.8


def greedy_ids(model, prompt, length):
    """Reference: generate ``length`` bytes one at a time, feeding each back in."""
    ids = encode_text(prompt).tolist()
    with torch.no_grad():
        for _ in range(length):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(ids) - length :]


def test_fact_recall_equals_greedy_decoding_exact_match():
    model = fresh_lm(seed=4)
    with torch.no_grad():  # favour ASCII outputs, so that answers are valid text
        model.lm_head.weight[128:] = 0.0
    prompts = []
    for i in range(40):
        prompt = f"Key {i} is"
        generated = greedy_ids(model, prompt, 2)
        # Every other prompt gets its greedy output as its answer.
        hit = i % 2 == 1 and all(b < 128 for b in generated)
        prompts.append(RecallPrompt(prompt, decode_bytes(generated) if hit else " v"))
    expected = sum(
        greedy_ids(model, p.prompt, len(encode_text(p.answer))) == encode_text(p.answer).tolist()
        for p in prompts
    ) / len(prompts)
    assert 0 < expected < 1
    recall = fact_recall(model, prompts)
    assert recall.exact_match == pytest.approx(expected)
    # The answer loss is the mean negative log-likelihood of the answer bytes.
    total, count = 0.0, 0
    with torch.no_grad():
        for p in prompts:
            ids = encode_text(p.prompt + p.answer)
            log_probs = torch.log_softmax(model(ids[None, :-1])[0], dim=-1)
            answer = encode_text(p.answer)
            for k in range(len(answer)):
                position = len(ids) - len(answer) + k
                total -= log_probs[position - 1, ids[position]].item()
                count += 1
    assert recall.answer_loss == pytest.approx(total / count, rel=1e-5)
