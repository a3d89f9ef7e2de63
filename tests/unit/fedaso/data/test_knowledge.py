"""The knowledge setting: public entities, fact-value spans, the fact probe, its relevance."""

import math

import numpy as np
import pytest
import torch

from fedaso.aso.relevance import relevance_scores
from fedaso.config import RunConfig, server_only_keys
from fedaso.data import load_central
from fedaso.data.corpora import text_corpus_of
from fedaso.data.facts import client_and_public_entities, facts_world
from fedaso.data.tokens import BYTES, IGNORE_INDEX, load_codec, token_spans
from fedaso.data.windows import eval_fact_probe, lm_corpus
from fedaso.models import build_model
from fedaso.training.evaluate import embed
from fedaso.training.fact_relevance import auroc, relevance_by_token_kind
from tests.config_helpers import data_config
from tests.hf_helpers import tiny_hf_model


def test_public_entities_share_nothing_with_the_clients_and_leave_them_unchanged():
    private, public = client_and_public_entities(3, 6)
    assert facts_world(3, 6) == private
    assert len(public) == len(private)
    private_words = {e.name for e in private} | {v for e in private for v in e.values}
    invented = {e.name for e in public} | {v for e in public for v in e.values}
    # Invented values never repeat; choice values (professions, pets, ...) may.
    assert not {e.name for e in public} & private_words
    assert not (invented - {v for e in public for v in e.values}) & private_words
    corpus = text_corpus_of("facts", 3, 6)
    for text, _ in corpus.knowledge:
        assert not any(entity.name in text for entity in private)


def test_eval_fact_spans_cover_exactly_the_values():
    corpus = text_corpus_of("facts:b", 1, 5)
    answers = sorted(p.answer.strip(" .") for p in corpus.recall_prompts)
    stated = sorted(
        text[a:b]
        for text, spans in zip(corpus.eval_texts, corpus.eval_fact_spans, strict=True)
        for a, b in spans
    )
    assert stated == answers


def _reference_fact_mask(texts, spans_per_text, seq_len, stride=None):
    """Byte codec only (ASCII text): which windowed targets fall inside a value span."""
    flags = []
    for index, (text, spans) in enumerate(zip(texts, spans_per_text, strict=True)):
        if index:
            flags.append(False)  # the joining newline
        flags += [any(a <= c < b for a, b in spans) for c in range(len(text))]
    starts = range(0, len(flags) - seq_len, stride or seq_len + 1)
    return torch.tensor([flags[start + 1 : start + seq_len + 1] for start in starts])


def test_fact_probe_splits_targets_like_a_character_reference():
    corpus = text_corpus_of("facts", 0, 4)
    probe = eval_fact_probe(corpus, 32, BYTES)
    expected = _reference_fact_mask(corpus.eval_texts, corpus.eval_fact_spans, 32)
    assert torch.equal(probe.fact.targets != IGNORE_INDEX, expected)
    assert torch.equal(probe.filler.targets != IGNORE_INDEX, ~expected)
    assert torch.equal(probe.fact.inputs, probe.filler.inputs)
    central = load_central(data_config(facts_entities=4, seq_len=32))
    assert torch.equal(probe.fact.inputs, central.eval.inputs)


@pytest.mark.parametrize("stride", [8, 33])
def test_training_windows_carry_fact_targets_like_a_character_reference(stride):
    corpus = text_corpus_of("facts", 0, 4)
    rows = [1, 4, 5, 9]
    train = lm_corpus(corpus, 32, BYTES).rows_to_split(rows, stride)
    documents = [corpus.pool[row] for row in rows]
    expected = _reference_fact_mask(
        [d.text for d in documents], [d.fact_spans for d in documents], 32, stride
    )
    assert torch.equal(train.fact_targets, expected)
    values = "".join(chr(t) for t in train.targets[train.fact_targets].tolist())
    assert expected.any() and values.isalpha()  # value letters only, never a space or a dot


def test_relevance_source_oracle_needs_facts():
    assert RunConfig.of(relevance_source="oracle").aso.relevance_source == "oracle"
    with pytest.raises(ValueError, match=r"relevance-source='oracle'.*dataset='pydoc'"):
        RunConfig.of(relevance_source="oracle", dataset="pydoc")
    with pytest.raises(ValueError, match="relevance-source='labels'"):
        RunConfig.of(relevance_source="labels")


def test_fact_probe_with_a_bpe_tokenizer_marks_the_value_words():
    source = tiny_hf_model("llama")
    codec = load_codec(source)
    corpus = text_corpus_of("facts", 0, 12)
    probe = eval_fact_probe(corpus, 48, codec)
    values = {word for p in corpus.recall_prompts for word in p.answer.strip(" .").split()}
    fact_ids = probe.fact.targets[probe.fact.targets != IGNORE_INDEX].tolist()
    assert fact_ids
    for token in fact_ids:
        piece = codec.decode([token]).strip()
        assert piece and any(piece in value for value in values), piece
    ids, spans = token_spans(codec, corpus.eval_texts[0])
    assert ids == codec.encode(corpus.eval_texts[0]) and len(spans) == len(ids)


def _relevance_reference(embeddings, anchors, tau):
    """docs/SPEC.md section 2, one token at a time in plain Python."""
    scores = []
    for e in embeddings.tolist():
        cos = [
            sum(x * y for x, y in zip(e, a, strict=True)) / (math.hypot(*e) * math.hypot(*a))
            for a in anchors.tolist()
        ]
        z = [c / tau for c in cos]
        top = max(z)
        p_max = 1 / sum(math.exp(v - top) for v in z)
        scores.append((len(z) * p_max - 1) / (len(z) - 1))
    return sum(scores) / len(scores)


def test_relevance_by_token_kind_matches_a_per_token_reference():
    central = load_central(data_config(facts_entities=4, seq_len=32))
    model = build_model(RunConfig.of(model_width=16, model_heads=2, seq_len=32).model_spec())
    anchors = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
    result = relevance_by_token_kind(model, central.fact_probe, anchors, tau=0.3)
    assert result.fact == pytest.approx(
        _relevance_reference(embed(model, central.fact_probe.fact), anchors, 0.3), rel=1e-4
    )
    assert result.filler == pytest.approx(
        _relevance_reference(embed(model, central.fact_probe.filler), anchors, 0.3), rel=1e-4
    )
    fact_scores, other_scores = (
        relevance_scores(embeddings=torch.from_numpy(embed(model, split)),
                         anchors=torch.from_numpy(anchors), tau=0.3).numpy()
        for split in (central.fact_probe.fact, central.fact_probe.filler)
    )  # fmt: skip
    assert result.auroc == pytest.approx(_pairwise_auroc(fact_scores, other_scores), abs=1e-9)
    assert result.weight_ratio(2.0) == pytest.approx(
        (1 + 2 * result.fact) / (1 + 2 * result.filler)
    )


def _pairwise_auroc(positive, negative):
    """The AUROC by definition: fact > other pairs over all pairs, a tie counting half."""
    wins = sum((p > q) + 0.5 * (p == q) for p in positive.tolist() for q in negative.tolist())
    return wins / (len(positive) * len(negative))


@pytest.mark.parametrize("levels", [None, 4])  # continuous scores, or few values: many ties
def test_auroc_matches_pairwise_counting_and_scikit_learn(levels):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(levels or 0)
    positive, negative = rng.normal(0.3, 1.0, size=37), rng.normal(0.0, 1.0, size=53)
    if levels:
        positive, negative = np.round(positive * levels), np.round(negative * levels)
    expected = _pairwise_auroc(positive, negative)
    assert auroc(positive, negative) == pytest.approx(expected, abs=1e-12)
    labels = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    sklearn = roc_auc_score(labels, np.r_[positive, negative])
    assert auroc(positive, negative) == pytest.approx(sklearn, abs=1e-12)
    assert auroc(np.ones(3), np.zeros(2)) == 1.0 and auroc(np.ones(3), np.ones(2)) == 0.5
    with pytest.raises(ValueError, match="0 positive"):
        auroc(np.array([]), negative)


def test_anchor_seed_knowledge_uses_public_documents():
    generic = load_central(data_config(facts_entities=4))
    knowledge = load_central(data_config(facts_entities=4, anchor_seed="knowledge"))
    assert torch.equal(generic.eval.inputs, knowledge.eval.inputs)
    assert not torch.equal(generic.seed_corpus.inputs[:1], knowledge.seed_corpus.inputs[:1])
    values = load_central(data_config(facts_entities=4, anchor_seed="knowledge-values"))
    scored = values.seed_corpus.targets != IGNORE_INDEX
    assert torch.equal(values.seed_corpus.inputs, knowledge.seed_corpus.inputs)
    assert 0 < scored.sum() < scored.numel() / 4  # the values only
    assert torch.equal(knowledge.seed_corpus.targets[scored], values.seed_corpus.targets[scored])
    run = RunConfig.from_flat({"anchor-seed": "knowledge", "facts-entities": 4})
    assert run.data_config(num_partitions=2).anchor_seed == "knowledge"
    assert "anchor-seed" in server_only_keys()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"anchor_seed": "public"}, "anchor-seed='public'"),
        ({"anchor_seed": "knowledge", "dataset": "pydoc"}, "dataset='pydoc'"),
    ],
)
def test_bad_anchor_seed_is_named(settings, message):
    with pytest.raises(ValueError, match=message):
        data_config(**settings)


def test_probe_command_prints_and_writes_the_grid(tmp_path, capsys):
    from simulations.probe import main

    out = tmp_path / "probe.md"
    argv = ["--set", f"model=hf:{tiny_hf_model('llama')}", "--set", "facts-entities=4",
            "--anchor-seeds", "generic,knowledge-values", "--num-anchors", "4",
            "--taus", "0.1,0.5", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "fact / filler" in printed and "weight ratio" in printed and "AUROC" in printed
    rows = out.read_text().splitlines()[2:]
    assert [row.split(" | ")[:3] for row in rows] == [
        ["| generic", "4", "0.100"], ["| generic", "4", "0.500"],
        ["| knowledge-values", "4", "0.100"], ["| knowledge-values", "4", "0.500"],
    ]  # fmt: skip
    with pytest.raises(SystemExit):
        main(["--set", "dataset=pydoc", "--anchor-seeds", "knowledge"])


def test_probe_command_adds_the_logistic_probe_row(tmp_path):
    from simulations.probe import main

    out = tmp_path / "probe.md"
    argv = ["--set", "relevance-source=probe", "--set", "facts-entities=4",
            "--set", "model-width=16", "--set", "model-heads=2", "--set", "seq-len=32",
            "--anchor-seeds", "generic", "--num-anchors", "16", "--taus", "0.1",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    rows = [row.strip("| ").split(" | ") for row in out.read_text().splitlines()[2:]]
    assert [row[0] for row in rows] == ["generic", "(probe)"]
    assert all(0 <= float(row[-1]) <= 1 for row in rows)  # the AUROC column
