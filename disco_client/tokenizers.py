"""Tokenizers that ship with the project (nothing is downloaded).

``bytes``: a byte-level tokenizer. Text is encoded as UTF-8 and each byte is one token
(ids 0..255); id 256 is the padding / end-of-text token, so the vocabulary has 257 ids.
The browser client implements the same scheme (``TextEncoder`` + left padding).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class ByteTokenizer:
    """UTF-8 byte-level tokenizer: 256 byte ids plus one pad / end-of-text id."""

    name = "bytes"
    pad_id = 256
    vocab_size = 257

    def encode(self, text: str) -> list[int]:
        """The UTF-8 bytes of ``text`` as token ids."""
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        """Text from token ids; pad ids are dropped and invalid UTF-8 becomes U+FFFD."""
        data = bytes(i for i in ids if 0 <= i < 256)
        return data.decode("utf-8", errors="replace")

    def left_pad(self, ids: Sequence[int], length: int) -> list[int]:
        """Keep the last ``length`` ids and left-pad with ``pad_id`` up to ``length``."""
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}.")
        kept = list(ids[-length:]) if length else []
        return [self.pad_id] * (length - len(kept)) + kept


_TOKENIZERS: dict[str, type[ByteTokenizer]] = {ByteTokenizer.name: ByteTokenizer}


def get_tokenizer(name: str) -> ByteTokenizer:
    """The tokenizer called ``name`` (see ``tasks.choices.Tokenizer``); ``KeyError`` if unknown."""
    try:
        return _TOKENIZERS[name]()
    except KeyError:
        raise KeyError(f"Unknown tokenizer {name!r}; known: {', '.join(sorted(_TOKENIZERS))}.") from None
