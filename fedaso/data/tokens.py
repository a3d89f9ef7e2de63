"""Text to token ids and back: UTF-8 bytes for the reference model, a tokenizer for ``hf:``.

Every text dataset is encoded by one :class:`TextCodec`. The reference TinyLM reads bytes
(256 ids); a Hugging Face model reads the ids of its own tokenizer, loaded with
``AutoTokenizer.from_pretrained`` from the same name or path as the model, so that
``seq-len`` counts that model's tokens. Targets that carry no loss (padding, and the prompt
of an instruction record) are ``IGNORE_INDEX``, PyTorch's and Hugging Face's convention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from fedaso.models.cache import cached

IGNORE_INDEX = -100  # target id of a position without loss (F.cross_entropy's default)
BYTE_VOCAB_SIZE = 256


class TextCodec(Protocol):
    """What the data and evaluation code needs from a tokenizer."""

    @property
    def vocab_size(self) -> int:
        """Ids are in ``[0, vocab_size)``."""
        ...

    @property
    def pad_id(self) -> int:
        """Id of right padding (never scored: its targets are ``IGNORE_INDEX``)."""
        ...

    @property
    def eos_id(self) -> int | None:
        """Appended to instruction responses; None for bytes."""
        ...

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without special tokens."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``."""
        ...


@dataclass(frozen=True)
class ByteCodec:
    """UTF-8 bytes as ids; invalid UTF-8 decodes to U+FFFD."""

    vocab_size: int = BYTE_VOCAB_SIZE
    pad_id: int = 0
    eos_id: int | None = None

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(value) for value in ids).decode("utf-8", errors="replace")


class TokenizerCodec:
    """A Hugging Face tokenizer as a :class:`TextCodec`."""

    def __init__(self, tokenizer: Any, source: str) -> None:
        self.tokenizer = tokenizer
        self.source = source
        self.vocab_size = len(tokenizer)
        self.eos_id = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        # Padding only fills positions whose targets are ignored, so any id will do.
        self.pad_id = 0 if pad is None else int(pad)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode([int(value) for value in ids]))


BYTES = ByteCodec()


def load_codec(tokenizer: str) -> TextCodec:
    """The codec named by a data config's ``tokenizer``: bytes for ``""``, else a tokenizer."""
    return BYTES if not tokenizer else _load_tokenizer(tokenizer)


def _read_tokenizer(source: str) -> TokenizerCodec:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"model='hf:{source}' has no loadable tokenizer: {error}".splitlines()[0]
        ) from None
    return TokenizerCodec(tokenizer, source)


# Keyed by the tokenizer files' identity: a folder rewritten in place is read again.
_load_tokenizer = cached(_read_tokenizer, size=4)


def token_spans(codec: TextCodec, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of ``text`` and each token's ``[start, end)`` character span in it.

    Raises ``ValueError`` for a tokenizer that cannot report offsets (a slow tokenizer).
    """
    if isinstance(codec, ByteCodec):
        ids, spans = [], []
        for index, char in enumerate(text):
            encoded = char.encode("utf-8")
            ids += list(encoded)
            spans += [(index, index + 1)] * len(encoded)
        return ids, spans
    if isinstance(codec, TokenizerCodec) and codec.tokenizer.is_fast:
        encoded = codec.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(encoded["input_ids"]), [tuple(span) for span in encoded["offset_mapping"]]
    raise ValueError(
        f"{type(codec).__name__} cannot map tokens to characters (needs a fast tokenizer)"
    )


def encode(codec: TextCodec, text: str) -> torch.Tensor:
    """``codec.encode(text)`` as an int64 tensor ``(n,)``."""
    return torch.tensor(codec.encode(text), dtype=torch.int64)  # (n,)
