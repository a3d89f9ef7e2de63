"""The two invented domains of ``facts``: their attributes, phrasings, vocabularies and filler.

Domain A ("geography") holds countries with a capital, a currency, a language and a river,
grouped by continent; domain B ("people") holds persons with a birthplace, a profession, an
instrument and a pet, grouped by family. Each attribute has a canonical recall prompt,
training paraphrases and a phrasing held out for the central eval set. Names are invented
from syllables (:func:`invent_name`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Attribute:
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
class Domain:
    """One facts domain: how its entities are named and introduced, and their attributes."""

    key: str  # "a" or "b", as in the dataset name "facts:a"
    entity_format: str  # how an entity is named from an invented {name} and its {group}
    intros: tuple[str, ...]  # opening sentence of each training document, with {e} and {g}
    held_out_intro: str  # opening sentence of the eval document
    attributes: tuple[Attribute, ...]


@dataclass(frozen=True)
class Entity:
    """One invented entity of a domain and the values of its facts."""

    domain: Domain
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
_GEOGRAPHY = Domain(
    key="a",
    entity_format="{name}",
    intros=(
        "{e} is a country on the continent of {g}.",
        "This entry describes {e}, a land in {g}.",
        "Among the nations of {g} is {e}.",
    ),
    held_out_intro="Our next stop is {e}, which lies in {g}.",
    attributes=(
        Attribute(
            prompt="The capital of {e} is",
            paraphrases=("{v} is the capital city of {e}.", "The government of {e} sits in {v}."),
            held_out="Visitors to {e} usually arrive in {v}.",
        ),
        Attribute(
            prompt="The currency of {e} is the",
            paraphrases=("People in {e} pay with the {v}.", "The {v} is the money of {e}."),
            held_out="Prices in {e} are quoted in the {v}.",
        ),
        Attribute(
            prompt="The language of {e} is",
            paraphrases=("Most people in {e} speak {v}.", "{v} is the main language of {e}."),
            held_out="Children in {e} learn to read in {v}.",
        ),
        Attribute(
            prompt="The longest river in {e} is the",
            paraphrases=(
                "The {v} flows through {e}.",
                "{e} is crossed by the {v}, its longest river.",
            ),
            held_out="Boats on the {v} carry goods across {e}.",
        ),
    ),
)
_PEOPLE = Domain(
    key="b",
    entity_format="{name} {group}",
    intros=(
        "{e} is a member of the {g} family.",
        "This entry is about {e} of the {g} family.",
        "The {g} family counts {e} among its members.",
    ),
    held_out_intro="Let us turn to {e}, one of the {g} family.",
    attributes=(
        Attribute(
            prompt="{e} was born in",
            paraphrases=("{e} came into the world in {v}.", "{v} is the home town of {e}."),
            held_out="{e} grew up in {v}.",
        ),
        Attribute(
            prompt="{e} works as",
            paraphrases=("By trade, {e} is {v}.", "{e} earns a living as {v}."),
            held_out="Everyone knows {e} as {v}.",
            choices=_PROFESSIONS,
        ),
        Attribute(
            prompt="{e} plays the",
            paraphrases=(
                "In the evenings {e} practises the {v}.",
                "The {v} is the instrument of {e}.",
            ),
            held_out="{e} owns a well-worn {v}.",
            choices=_INSTRUMENTS,
        ),
        Attribute(
            prompt="{e} keeps a pet",
            paraphrases=("{e} lives with a {v}.", "A {v} is the companion of {e}."),
            held_out="{e} feeds a {v} every morning.",
            choices=_PETS,
        ),
    ),
)
DOMAINS = (_GEOGRAPHY, _PEOPLE)
# One training document per training phrasing, so each fact is stated once in each phrasing.
DOCS_PER_ENTITY = 3

# Generic sentences without facts; eval filler is disjoint from training filler.
TRAINING_FILLER = (
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
EVAL_FILLER = (
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


def invent_name(rng: random.Random, taken: set[str]) -> str:
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
