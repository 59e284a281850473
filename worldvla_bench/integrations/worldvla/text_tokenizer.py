"""Byte-level text tokenizer: one token per UTF-8 byte (no vocabulary file, no downloads)."""

from __future__ import annotations

from collections.abc import Iterable

from worldvla_bench.integrations.worldvla.vocab import N_TEXT_TOKENS, Vocab


class ByteTokenizer:
    """Maps text to `vocab.text_offset + byte` ids and back (exact for any Unicode string)."""

    def __init__(self, vocab: Vocab) -> None:
        self.offset = vocab.text_offset

    def encode(self, text: str) -> list[int]:
        return [self.offset + b for b in text.encode("utf-8")]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the text tokens in `ids`; other tokens are skipped."""
        data = bytes(i - self.offset for i in ids if 0 <= i - self.offset < N_TEXT_TOKENS)
        return data.decode("utf-8", errors="replace")
