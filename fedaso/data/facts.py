"""The ``facts`` corpus: invented entities and their facts, rendered as documents.

The entities of both domains (``fedaso.data.fact_domains``) are drawn from the seed. Every
fact is stated in three training documents, the central eval set is a separate rendering
with other phrasings and filler, and recall prompts ask for every fact in its canonical
form.

Knowledge density (``facts-prose-sentences``, docs/SPEC.md section 9): by default a
document is dense, almost all fact sentences. With N > 0, N sentences of generic public
prose (:func:`fedaso.data.texts.pydoc_sentences`) follow each fact sentence of every
training document and of the public entities' documents (the server's knowledge seed and
probe), so that one fact sentence sits among N prose sentences; the values' spans are
counted after the insertion. The prose is drawn by each document's own seeded generator,
so the facts' phrasings, the held-out eval documents, recall prompts and seed texts are the
same at every density, and N = 0 renders the dense documents unchanged.
"""

from __future__ import annotations

import functools
import random

from fedaso.data.config import FACTS_GROUPS, seeded_rng
from fedaso.data.fact_domains import (
    DOCS_PER_ENTITY,
    DOMAINS,
    EVAL_FILLER,
    TRAINING_FILLER,
    Entity,
    invent_name,
)
from fedaso.data.splits import Document, RecallPrompt, Span, TextCorpus
from fedaso.data.texts import pydoc_sentences


@functools.lru_cache(maxsize=8)
def facts_world(seed: int, entities_per_domain: int) -> tuple[Entity, ...]:
    """Both domains' entities; facts:a and facts:b are slices of the same world."""
    return client_and_public_entities(seed, entities_per_domain)[0]


@functools.lru_cache(maxsize=8)
def client_and_public_entities(
    seed: int, entities_per_domain: int
) -> tuple[tuple[Entity, ...], tuple[Entity, ...]]:
    """The clients' entities, then as many public ones that no client holds (knowledge seed).

    Public entities are drawn after the clients' from the same generator and name set, so
    adding them changes no client entity and reuses none of their names.
    """
    rng = seeded_rng(seed, "facts-world")
    taken: set[str] = set()  # all invented names, so that no name is reused across domains
    num_groups = min(FACTS_GROUPS, entities_per_domain)
    private, groups = _invent_entities(rng, taken, entities_per_domain, num_groups=num_groups)
    public, _ = _invent_entities(rng, taken, entities_per_domain, groups=groups)
    return private, public


def _invent_entities(
    rng: random.Random,
    taken: set[str],
    per_domain: int,
    *,
    num_groups: int = 0,
    groups: tuple[tuple[str, ...], ...] = (),
) -> tuple[tuple[Entity, ...], tuple[tuple[str, ...], ...]]:
    """``per_domain`` entities per domain, in ``groups`` or in ``num_groups`` new ones each."""
    entities = []
    domain_groups = []
    for domain_index, domain in enumerate(DOMAINS):
        names = (
            groups[domain_index] if groups else [invent_name(rng, taken) for _ in range(num_groups)]
        )
        domain_groups.append(tuple(names))
        for index in range(per_domain):
            group_index = index % len(names)
            values = tuple(
                rng.choice(attribute.choices) if attribute.choices else invent_name(rng, taken)
                for attribute in domain.attributes
            )
            name = domain.entity_format.format(
                name=invent_name(rng, taken), group=names[group_index]
            )
            entities.append(
                Entity(
                    domain=domain,
                    name=name,
                    group=names[group_index],
                    label=domain_index * len(names) + group_index,
                    values=values,
                )
            )
    return tuple(entities), tuple(domain_groups)


def _training_document_spans(
    entity: Entity, index: int, rng: random.Random, prose: tuple[tuple[str, ...], ...]
) -> tuple[str, tuple[Span, ...]]:
    """Training document ``index`` (each fact in phrasing ``index + attribute``, rotating)
    and the character spans of its facts' values; ``prose[k]`` follows the k-th fact."""
    facts = [
        (a, attribute.training_templates[(index + a) % DOCS_PER_ENTITY])
        for a, attribute in enumerate(entity.domain.attributes)
    ]
    rng.shuffle(facts)
    intro = entity.domain.intros[index].format(e=entity.name, g=entity.group)
    # Closing with filler keeps every fact away from the cut-off tail of a byte stream.
    return _render(entity, intro, facts, rng.choice(TRAINING_FILLER), prose)


def _prose(entity: Entity, count: int, *salt: object) -> tuple[tuple[str, ...], ...]:
    """``count`` distinct pydoc sentences to follow each of ``entity``'s facts in a document.

    They are drawn from a generator of their own (seeded by ``salt``, which names the
    document), not from the document's rendering generator, so that the facts' phrasings
    and order and every later document of the entity are the same at every density.
    """
    num_facts = len(entity.domain.attributes)
    if count == 0:
        return ((),) * num_facts
    drawn = seeded_rng(*salt).sample(pydoc_sentences(), count * num_facts)
    return tuple(tuple(drawn[k * count : (k + 1) * count]) for k in range(num_facts))


def _eval_document(entity: Entity, rng: random.Random) -> tuple[str, tuple[Span, ...]]:
    """The held-out document of ``entity`` and the character spans of its facts' values."""
    facts = [
        (a, rng.choice(attribute.eval_templates))
        for a, attribute in enumerate(entity.domain.attributes)
    ]
    rng.shuffle(facts)
    intro = entity.domain.held_out_intro.format(e=entity.name, g=entity.group)
    # The eval documents stay dense at every density: recall is measured on the same text.
    return _render(entity, intro, facts, rng.choice(EVAL_FILLER), ((),) * len(facts))


def _render(
    entity: Entity,
    intro: str,
    facts: list[tuple[int, str]],
    closing: str,
    prose: tuple[tuple[str, ...], ...],
) -> tuple[str, tuple[Span, ...]]:
    """``intro``, the ``(attribute, template)`` facts, each followed by its ``prose``
    sentences, and ``closing``, joined by spaces; and the character span of each fact's
    value in that text."""
    parts, spans, offset = [intro], [], len(intro) + 1
    for (attribute_index, template), after in zip(facts, prose, strict=True):
        start = offset + len(template[: template.index("{v}")].format(e=entity.name))
        spans.append((start, start + len(entity.values[attribute_index])))
        for sentence in (entity.state(attribute_index, template), *after):
            parts.append(sentence)
            offset += len(sentence) + 1
    parts.append(closing)
    return " ".join(parts), tuple(spans)


def _canonical_sentences(entity: Entity) -> list[str]:
    return [
        entity.state(a, attribute.canonical) for a, attribute in enumerate(entity.domain.attributes)
    ]


def _recall_prompts(entity: Entity) -> list[RecallPrompt]:
    return [
        RecallPrompt(attribute.prompt.format(e=entity.name), f" {value}.")
        for attribute, value in zip(entity.domain.attributes, entity.values, strict=True)
    ]


def facts_corpus(
    domains: tuple[str, ...], seed: int, entities_per_domain: int, prose_sentences: int
) -> TextCorpus:
    """The ``domains``' documents; ``prose_sentences`` pydoc sentences follow each fact of
    the training and public documents (0: the dense documents)."""
    entities = [
        entity for entity in facts_world(seed, entities_per_domain) if entity.domain.key in domains
    ]
    # One generator per entity, so that facts:a and facts:b are exactly the halves of facts.
    rngs = {entity.name: seeded_rng(seed, "facts-render", entity.name) for entity in entities}
    pool = [
        Document(text, entity.group, entity.label, spans)
        for entity in entities
        for index in range(DOCS_PER_ENTITY)
        for text, spans in [
            _training_document_spans(
                entity,
                index,
                rngs[entity.name],
                _prose(entity, prose_sentences, seed, "facts-prose", entity.name, index),
            )
        ]
    ]
    evals = [_eval_document(entity, rngs[entity.name]) for entity in entities]
    public = [
        e
        for e in client_and_public_entities(seed, entities_per_domain)[1]
        if e.domain.key in domains
    ]
    return TextCorpus(
        pool=tuple(pool),
        eval_texts=tuple(text for text, _ in evals),
        seed_texts=tuple(" ".join(_canonical_sentences(entity)) for entity in entities),
        recall_prompts=tuple(p for entity in entities for p in _recall_prompts(entity)),
        eval_fact_spans=tuple(spans for _, spans in evals),
        knowledge=tuple(_public_documents(public, seed, prose_sentences)),
    )


def _public_documents(
    entities: list[Entity], seed: int, prose_sentences: int
) -> list[tuple[str, tuple[Span, ...]]]:
    """Training documents about entities no client holds, with their values' spans, at the
    clients' density (the server's probe and knowledge seed see what the clients train on)."""
    documents = []
    for entity in entities:
        rng = seeded_rng(seed, "facts-public", entity.name)
        documents += [
            _training_document_spans(
                entity,
                i,
                rng,
                _prose(entity, prose_sentences, seed, "facts-public-prose", entity.name, i),
            )
            for i in range(DOCS_PER_ENTITY)
        ]
    return documents
