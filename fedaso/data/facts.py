"""The ``facts`` corpus: invented entities and their facts, rendered as documents.

Domain A ("geography") holds countries with a capital, a currency, a language and a river,
grouped by continent; domain B ("people") holds persons with a birthplace, a profession, an
instrument and a pet, grouped by family. Every fact is stated in three training documents,
the central eval set is a separate rendering with other phrasings and filler, and recall
prompts ask for every fact in its canonical form.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

from fedaso.data.config import _FACTS_GROUPS, _rng
from fedaso.data.splits import RecallPrompt, Span, _Document, _TextCorpus

# ---------------------------------------------------------------------------------------
# facts


@dataclass(frozen=True)
class _Attribute:
    """One kind of fact of a facts domain and the sentences that state it."""

    prompt: str  # canonical recall prompt, with {e} for the entity, e.g. "The capital of {e} is"
    paraphrases: tuple[str, ...]  # other training phrasings, with {e} and {v} (the value)
    held_out: str  # a phrasing used only in the central eval set
    choices: tuple[str, ...] = ()  # vocabulary of values; empty: invent a name per entity

    @property
    def canonical(self) -> str:
        return self.prompt + " {v}."

    @property
    def training_templates(self) -> tuple[str, ...]:
        return (self.canonical, *self.paraphrases)

    @property
    def eval_templates(self) -> tuple[str, ...]:
        return (self.held_out, *self.paraphrases)


@dataclass(frozen=True)
class _Domain:
    key: str  # "a" or "b", as in the dataset name "facts:a"
    entity_format: str  # how an entity is named from an invented {name} and its {group}
    intros: tuple[str, ...]  # opening sentence of each training document, with {e} and {g}
    held_out_intro: str  # opening sentence of the eval document
    attributes: tuple[_Attribute, ...]


@dataclass(frozen=True)
class _Entity:
    domain: _Domain
    name: str  # as written in sentences, e.g. "Veltria" or "Talia Brenhollow"
    group: str  # continent or family
    label: int  # group index, unique across domains
    values: tuple[str, ...]  # one per attribute

    def state(self, attribute_index: int, template: str) -> str:
        """The sentence ``template`` stating one of this entity's facts."""
        return template.format(e=self.name, v=self.values[attribute_index])


# Vocabularies of the people facts that are not invented names.
# fmt: off
_PROFESSIONS = (
    "a glassblower", "a cartographer", "a beekeeper", "a clockmaker", "a ferryman",
    "an archivist", "an astronomer", "a potter", "a weaver", "a baker", "a bookbinder",
    "a stonemason",
)
_INSTRUMENTS = (
    "lute", "oboe", "harp", "fiddle", "cello", "zither", "flute", "drum", "bagpipe",
    "dulcimer", "trumpet", "banjo",
)
_PETS = (
    "heron", "ferret", "tortoise", "parrot", "goat", "hedgehog", "lizard", "rabbit", "canary",
    "magpie", "snail", "toad",
)
# fmt: on
_GEOGRAPHY = _Domain(
    key="a",
    entity_format="{name}",
    intros=(
        "{e} is a country on the continent of {g}.",
        "This entry describes {e}, a land in {g}.",
        "Among the nations of {g} is {e}.",
    ),
    held_out_intro="Our next stop is {e}, which lies in {g}.",
    attributes=(
        _Attribute(
            prompt="The capital of {e} is",
            paraphrases=("{v} is the capital city of {e}.", "The government of {e} sits in {v}."),
            held_out="Visitors to {e} usually arrive in {v}.",
        ),
        _Attribute(
            prompt="The currency of {e} is the",
            paraphrases=("People in {e} pay with the {v}.", "The {v} is the money of {e}."),
            held_out="Prices in {e} are quoted in the {v}.",
        ),
        _Attribute(
            prompt="The language of {e} is",
            paraphrases=("Most people in {e} speak {v}.", "{v} is the main language of {e}."),
            held_out="Children in {e} learn to read in {v}.",
        ),
        _Attribute(
            prompt="The longest river in {e} is the",
            paraphrases=(
                "The {v} flows through {e}.",
                "{e} is crossed by the {v}, its longest river.",
            ),
            held_out="Boats on the {v} carry goods across {e}.",
        ),
    ),
)
_PEOPLE = _Domain(
    key="b",
    entity_format="{name} {group}",
    intros=(
        "{e} is a member of the {g} family.",
        "This entry is about {e} of the {g} family.",
        "The {g} family counts {e} among its members.",
    ),
    held_out_intro="Let us turn to {e}, one of the {g} family.",
    attributes=(
        _Attribute(
            prompt="{e} was born in",
            paraphrases=("{e} came into the world in {v}.", "{v} is the home town of {e}."),
            held_out="{e} grew up in {v}.",
        ),
        _Attribute(
            prompt="{e} works as",
            paraphrases=("By trade, {e} is {v}.", "{e} earns a living as {v}."),
            held_out="Everyone knows {e} as {v}.",
            choices=_PROFESSIONS,
        ),
        _Attribute(
            prompt="{e} plays the",
            paraphrases=(
                "In the evenings {e} practises the {v}.",
                "The {v} is the instrument of {e}.",
            ),
            held_out="{e} owns a well-worn {v}.",
            choices=_INSTRUMENTS,
        ),
        _Attribute(
            prompt="{e} keeps a pet",
            paraphrases=("{e} lives with a {v}.", "A {v} is the companion of {e}."),
            held_out="{e} feeds a {v} every morning.",
            choices=_PETS,
        ),
    ),
)
_DOMAINS = (_GEOGRAPHY, _PEOPLE)
# One training document per training phrasing, so each fact is stated once in each phrasing.
_DOCS_PER_ENTITY = 3

# Generic sentences without facts; eval filler is disjoint from training filler.
_TRAINING_FILLER = (
    "The weather stayed mild for most of the year.",
    "Many stories are told about the old roads.",
    "Some records from that time have been lost.",
    "Local markets open early in the morning.",
    "Travel was slow before the railways came.",
    "Scholars still argue about the details.",
    "Winters there can be long and quiet.",
    "Festivals mark the turning of the seasons.",
    "Most towns have a small library.",
    "Letters were often carried by boat.",
    "The hills are covered in tall grass.",
    "Children play games in the village square.",
    "Old maps show many forgotten paths.",
    "Bread is baked fresh every day.",
    "Few people keep written diaries.",
    "Rain falls mostly in the autumn months.",
    "Bridges of stone cross the smaller streams.",
    "The night sky is very clear in summer.",
    "Music is played at every wedding.",
    "Visitors often remark on the friendly welcome.",
    "Tea is served with honey and lemon.",
    "Lanterns light the streets after dark.",
    "Many houses have gardens full of herbs.",
    "News travels quickly between neighbours.",
)
_EVAL_FILLER = (
    "Historians disagree about the oldest records.",
    "Snow rarely settles near the coast.",
    "Most families gather for a long evening meal.",
    "The roads were repaved a few years ago.",
    "Fishing boats return before sunset.",
    "A small museum keeps old tools and coins.",
    "Autumn brings strong winds from the west.",
    "Many songs are passed down without being written.",
    "Pottery from the region is simple and sturdy.",
    "The spring fair draws crowds from far away.",
    "Clocks in the town square chime every hour.",
    "Bees are kept in many orchards.",
)
# Syllables of invented names; short names keep documents and recall answers short.
_NAME_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "tr")
_NAME_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ei")
_NAME_CODAS = ("", "", "", "", "n", "r", "l", "s")


def _invent_name(rng: random.Random, taken: set[str]) -> str:
    """A new capitalized name of 2 (mostly) or 3 syllables, not in ``taken``; adds it there."""
    while True:
        syllables = [
            rng.choice(_NAME_ONSETS) + rng.choice(_NAME_VOWELS) + rng.choice(_NAME_CODAS)
            for _ in range(rng.choice((2, 2, 2, 3)))
        ]
        name = "".join(syllables).capitalize()
        if name not in taken:
            taken.add(name)
            return name


@functools.lru_cache(maxsize=8)
def _facts_world(seed: int, entities_per_domain: int) -> tuple[_Entity, ...]:
    """Both domains' entities; facts:a and facts:b are slices of the same world."""
    return _world(seed, entities_per_domain)[0]


@functools.lru_cache(maxsize=8)
def _world(seed: int, entities_per_domain: int) -> tuple[tuple[_Entity, ...], tuple[_Entity, ...]]:
    """The clients' entities, then as many public ones that no client holds (knowledge seed).

    Public entities are drawn after the clients' from the same generator and name set, so
    adding them changes no client entity and reuses none of their names.
    """
    rng = _rng(seed, "facts-world")
    taken: set[str] = set()  # all invented names, so that no name is reused across domains
    num_groups = min(_FACTS_GROUPS, entities_per_domain)
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
) -> tuple[tuple[_Entity, ...], tuple[tuple[str, ...], ...]]:
    """``per_domain`` entities per domain, in ``groups`` or in ``num_groups`` new ones each."""
    entities = []
    domain_groups = []
    for domain_index, domain in enumerate(_DOMAINS):
        names = (
            groups[domain_index]
            if groups
            else [_invent_name(rng, taken) for _ in range(num_groups)]
        )
        domain_groups.append(tuple(names))
        for index in range(per_domain):
            group_index = index % len(names)
            values = tuple(
                rng.choice(attribute.choices) if attribute.choices else _invent_name(rng, taken)
                for attribute in domain.attributes
            )
            name = domain.entity_format.format(
                name=_invent_name(rng, taken), group=names[group_index]
            )
            entities.append(
                _Entity(
                    domain=domain,
                    name=name,
                    group=names[group_index],
                    label=domain_index * len(names) + group_index,
                    values=values,
                )
            )
    return tuple(entities), tuple(domain_groups)


def _training_document_spans(
    entity: _Entity, index: int, rng: random.Random
) -> tuple[str, tuple[Span, ...]]:
    """Training document ``index`` (each fact in phrasing ``index + attribute``, rotating)
    and the character spans of its facts' values."""
    facts = [
        (a, attribute.training_templates[(index + a) % _DOCS_PER_ENTITY])
        for a, attribute in enumerate(entity.domain.attributes)
    ]
    rng.shuffle(facts)
    intro = entity.domain.intros[index].format(e=entity.name, g=entity.group)
    # Closing with filler keeps every fact away from the cut-off tail of a byte stream.
    return _render(entity, intro, facts, rng.choice(_TRAINING_FILLER))


def _eval_document(entity: _Entity, rng: random.Random) -> tuple[str, tuple[Span, ...]]:
    """The held-out document of ``entity`` and the character spans of its facts' values."""
    facts = [
        (a, rng.choice(attribute.eval_templates))
        for a, attribute in enumerate(entity.domain.attributes)
    ]
    rng.shuffle(facts)
    intro = entity.domain.held_out_intro.format(e=entity.name, g=entity.group)
    return _render(entity, intro, facts, rng.choice(_EVAL_FILLER))


def _render(
    entity: _Entity, intro: str, facts: list[tuple[int, str]], closing: str
) -> tuple[str, tuple[Span, ...]]:
    """``intro``, the ``(attribute, template)`` facts and ``closing`` joined by spaces, and
    the character span of each fact's value in that text."""
    parts, spans, offset = [intro], [], len(intro) + 1
    for attribute_index, template in facts:
        start = offset + len(template[: template.index("{v}")].format(e=entity.name))
        spans.append((start, start + len(entity.values[attribute_index])))
        sentence = entity.state(attribute_index, template)
        parts.append(sentence)
        offset += len(sentence) + 1
    parts.append(closing)
    return " ".join(parts), tuple(spans)


def _canonical_sentences(entity: _Entity) -> list[str]:
    return [
        entity.state(a, attribute.canonical) for a, attribute in enumerate(entity.domain.attributes)
    ]


def _recall_prompts(entity: _Entity) -> list[RecallPrompt]:
    return [
        RecallPrompt(attribute.prompt.format(e=entity.name), f" {value}.")
        for attribute, value in zip(entity.domain.attributes, entity.values, strict=True)
    ]


def _facts_corpus(domains: tuple[str, ...], seed: int, entities_per_domain: int) -> _TextCorpus:
    entities = [
        entity for entity in _facts_world(seed, entities_per_domain) if entity.domain.key in domains
    ]
    # One generator per entity, so that facts:a and facts:b are exactly the halves of facts.
    rngs = {entity.name: _rng(seed, "facts-render", entity.name) for entity in entities}
    pool = [
        _Document(text, entity.group, entity.label, spans)
        for entity in entities
        for index in range(_DOCS_PER_ENTITY)
        for text, spans in [_training_document_spans(entity, index, rngs[entity.name])]
    ]
    evals = [_eval_document(entity, rngs[entity.name]) for entity in entities]
    public = [e for e in _world(seed, entities_per_domain)[1] if e.domain.key in domains]
    return _TextCorpus(
        pool=tuple(pool),
        eval_texts=tuple(text for text, _ in evals),
        seed_texts=tuple(" ".join(_canonical_sentences(entity)) for entity in entities),
        recall_prompts=tuple(p for entity in entities for p in _recall_prompts(entity)),
        eval_fact_spans=tuple(spans for _, spans in evals),
        knowledge=tuple(_public_documents(public, seed)),
    )


def _public_documents(entities: list[_Entity], seed: int) -> list[tuple[str, tuple[Span, ...]]]:
    """Training documents about entities no client holds, with their values' spans."""
    documents = []
    for entity in entities:
        rng = _rng(seed, "facts-public", entity.name)
        documents += [_training_document_spans(entity, i, rng) for i in range(_DOCS_PER_ENTITY)]
    return documents
