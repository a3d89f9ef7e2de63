"""The knowledge density of facts (facts-prose-sentences): pydoc prose among the facts."""

import hashlib
import re

import pytest
import torch

from fedaso.config import RunConfig
from fedaso.config.data import MAX_FACTS_PROSE_SENTENCES
from fedaso.data import corpora, load_central, partition
from fedaso.data.corpora import text_corpus_of
from fedaso.data.fact_domains import DOMAINS
from fedaso.data.texts import pydoc_sentences
from tests.config_helpers import data_config

# Every rendered sentence ends in a full stop before a capital; no sentence holds one inside.
SENTENCE_BREAK = re.compile(r"(?<=\.) (?=[A-Z])")


def documents(corpus):
    """The corpus's training and public documents, as ``(text, value spans)``."""
    return [(d.text, d.fact_spans) for d in corpus.pool] + list(corpus.knowledge)


def prose_of(text):
    """The sentences of ``text`` drawn from the pydoc pool, in order."""
    pool = set(pydoc_sentences())
    return [sentence for sentence in SENTENCE_BREAK.split(text) if sentence in pool]


def test_the_pydoc_sentences_are_plain_one_line_prose():
    sentences = pydoc_sentences()
    assert len(set(sentences)) == len(sentences)
    most_facts = max(len(domain.attributes) for domain in DOMAINS)
    assert len(sentences) >= MAX_FACTS_PROSE_SENTENCES * most_facts  # one document's draw
    for sentence in sentences:
        assert 40 <= len(sentence) <= 200, sentence
        assert re.fullmatch(r"[A-Z][A-Za-z0-9 ,;'\"()-]*\.", sentence), sentence
        assert SENTENCE_BREAK.split(sentence) == [sentence]


def test_zero_prose_leaves_the_documents_as_they_were():
    dense = text_corpus_of("facts", 0, 4)
    assert text_corpus_of("facts", 0, 4, facts_prose_sentences=0) == dense
    parts = [d.text for d in dense.pool] + [repr(d.fact_spans) for d in dense.pool]
    parts += [repr(document) for document in dense.knowledge]
    # The documents of commit d631cb3, before the key existed.
    assert hashlib.sha256("\n".join(parts).encode()).hexdigest() == (
        "94d5d878a7fc9d7d01d127f28e18b04c34f57f8f59876a9913531d4e97d88476"
    )


def test_prose_follows_every_fact_and_the_value_spans_stay_exact():
    dense = text_corpus_of("facts", 0, 4)
    sparse = text_corpus_of("facts", 0, 4, facts_prose_sentences=3)
    pool = set(pydoc_sentences())
    for (text, spans), (dense_text, dense_spans) in zip(
        documents(sparse), documents(dense), strict=True
    ):
        # The same facts, each value at its span, in the same order.
        assert [text[a:b] for a, b in spans] == [dense_text[a:b] for a, b in dense_spans]
        sentences = SENTENCE_BREAK.split(text)
        # Intro, each fact followed by three pydoc sentences, closing filler.
        expected = [False, *[False, True, True, True] * len(spans), False]
        assert [sentence in pool for sentence in sentences] == expected
        assert " ".join(s for s in sentences if s not in pool) == dense_text
        fact_sentences = [s for s in sentences[1:-1] if s not in pool]
        for (a, b), fact in zip(spans, fact_sentences, strict=True):
            assert text[a:b] in fact
    # The eval documents, recall prompts and seed texts, and the partitioned rows' groups
    # and labels, do not depend on the density.
    assert sparse.eval_texts == dense.eval_texts
    assert sparse.eval_fact_spans == dense.eval_fact_spans
    assert sparse.recall_prompts == dense.recall_prompts
    assert sparse.seed_texts == dense.seed_texts
    assert [(d.group, d.label) for d in sparse.pool] == [(d.group, d.label) for d in dense.pool]


def test_the_prose_draw_is_deterministic_per_seed_and_differs_across_seeds():
    def draws(corpus):
        return [prose_of(text) for text, _ in documents(corpus)]

    first = text_corpus_of("facts", 0, 3, facts_prose_sentences=2)
    again = text_corpus_of("facts", 0, 3, facts_prose_sentences=2)
    other = text_corpus_of("facts", 1, 3, facts_prose_sentences=2)
    assert draws(again) == draws(first) and again == first
    assert draws(other) != draws(first)
    assert [len(draw) for draw in draws(first)] == [2 * len(s) for _, s in documents(first)]
    assert len({tuple(draw) for draw in draws(first)}) == len(draws(first))  # one per document
    # facts:a is the first half of facts at every density.
    half = text_corpus_of("facts:a", 0, 3, facts_prose_sentences=2)
    assert half.pool == again.pool[: len(half.pool)]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"facts_prose_sentences": 21}, r"facts-prose-sentences=21 .*\[0, 20\]"),
        ({"facts_prose_sentences": -1}, r"facts-prose-sentences=-1 .*\[0, 20\]"),
        ({"facts_prose_sentences": 2.5}, r"facts-prose-sentences=2.5 "),
        ({"facts_prose_sentences": True}, r"facts-prose-sentences=True "),
        ({"facts_prose_sentences": 3, "dataset": "pydoc"}, r"facts-prose-sentences=3 .*'pydoc'"),
    ],
)
def test_a_bad_density_is_named(settings, message):
    with pytest.raises(ValueError, match=message):
        data_config(**settings)


def test_the_density_reaches_the_loaded_corpus_and_the_server_probe(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDASO_CACHE_DIR", str(tmp_path))
    run = RunConfig.from_flat({"facts-prose-sentences": 3, "facts-entities": 4})
    sparse = run.data_config(num_partitions=2)
    assert sparse.facts_prose_sentences == 3
    dense = data_config(num_partitions=2, facts_entities=4)
    assert sparse.replace(facts_prose_sentences=0) == dense
    sparse_corpus, dense_corpus = corpora.corpus_of(sparse), corpora.corpus_of(dense)
    assert len(sparse_corpus.rows_to_split([0], 65)) > len(dense_corpus.rows_to_split([0], 65))
    central = {
        config.facts_prose_sentences: load_central(config.replace(anchor_seed="knowledge"))
        for config in (sparse, dense)
    }
    assert torch.equal(central[3].eval.inputs, central[0].eval.inputs)
    assert len(central[3].seed_corpus) > len(central[0].seed_corpus)  # the public documents
    assert len(central[3].public_fact_probe.fact) > len(central[0].public_fact_probe.fact)
    # Partition rows depend on the pool's labels and groups only, which the density leaves
    # alone: both densities share one cached partition, so each client holds the same
    # entities at either density.
    assert partition.partition_cache_path(sparse, sparse_corpus) == partition.partition_cache_path(
        dense, dense_corpus
    )
