"""How a run-config section declares its keys, and the checks every section shares.

A section is a frozen dataclass whose fields are run-config keys: field ``a_b`` is key
``a-b``. :func:`setting` declares one with its default, a one-line help (the text of
docs/CONFIG.md and of pyproject's generated table), its choices if it has a fixed set, and
whether only the server reads it. The declaration is the single source: parsing, the
client/server split, the generated files and the choice checks all read it.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fedaso.checks import require

HELP = "help"
CHOICES = "choices"
SERVER_ONLY = "server_only"


def setting(
    default: bool | int | float | str,
    help: str,
    *,
    choices: tuple[str, ...] = (),
    server_only: bool = False,
) -> Any:
    """Declare a run-config key: its default, help text, fixed choices and audience."""
    return dataclasses.field(
        default=default, metadata={HELP: help, CHOICES: choices, SERVER_ONLY: server_only}
    )


def kebab(field_name: str) -> str:
    """The run-config key of a dataclass field: ``aso_lambda`` -> ``aso-lambda``."""
    return field_name.replace("_", "-")


@dataclass(frozen=True)
class Key:
    """One declared run-config key, as read from its section's field."""

    name: str  # the kebab-case key
    field_name: str  # the section's field
    section: str  # the RunConfig attribute that holds the section
    default: bool | int | float | str
    help: str
    choices: tuple[str, ...]
    server_only: bool

    @property
    def kind(self) -> type:
        """The value's type: bool, int, float or str (that of the default)."""
        return type(self.default)


def keys_of(section_type: type, section_name: str) -> Iterator[Key]:
    """The keys a section declares, in declaration order."""
    for field in dataclasses.fields(section_type):
        if HELP not in field.metadata:
            continue
        yield Key(
            name=kebab(field.name),
            field_name=field.name,
            section=section_name,
            default=field.default,  # type: ignore[arg-type]
            help=field.metadata[HELP],
            choices=field.metadata[CHOICES],
            server_only=field.metadata[SERVER_ONLY],
        )


class Section:
    """Base of every section: checks declared choices, then the section's own ``check``."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            choices = field.metadata.get(CHOICES, ())
            value = getattr(self, field.name)
            require(
                not choices or value in choices,
                kebab(field.name),
                value,
                f"must be one of {', '.join(choices)}",
            )
        self.check()

    def check(self) -> None:
        """Raise ``ValueError`` naming the key if a value is out of range (per section)."""


def coerce(key: str, value: Any, kind: type) -> Any:
    """Return ``value`` as ``kind`` (int, float, bool or str) or raise naming the key."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind is str and isinstance(value, str):
        return value
    raise ValueError(f"{key}={value!r} is invalid: must be of type {kind.__name__}")


def unknown_key_message(key: str, known: Mapping[str, Any]) -> str:
    """Explain an unknown run-config key and suggest the closest known ones."""
    close = difflib.get_close_matches(key, list(known), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown run-config key {key!r}{hint} (known keys: {', '.join(sorted(known))})"
