"""disco_client/tokenizers.py against the vectors that static/disco/tokenizer.js is also tested on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disco_client.tokenizers import ByteTokenizer, get_tokenizer

VECTORS = json.loads((Path(__file__).resolve().parent.parent / "vectors" / "tokenizer.json").read_text("utf-8"))


def test_constants_match_the_vectors() -> None:
    tokenizer = get_tokenizer("bytes")
    assert (tokenizer.pad_id, tokenizer.vocab_size) == (VECTORS["padId"], VECTORS["vocabSize"]) == (256, 257)


@pytest.mark.parametrize("case", VECTORS["encode"], ids=lambda c: repr(c["text"]))
def test_encode(case: dict) -> None:
    assert ByteTokenizer().encode(case["text"]) == case["ids"]
    assert ByteTokenizer().decode(case["ids"]) == case["text"]


@pytest.mark.parametrize("case", VECTORS["decode"], ids=lambda c: str(c["ids"]))
def test_decode(case: dict) -> None:
    assert ByteTokenizer().decode(case["ids"]) == case["text"]


@pytest.mark.parametrize("case", VECTORS["leftPad"], ids=lambda c: f"{c['ids']}-{c['length']}")
def test_left_pad(case: dict) -> None:
    padded = ByteTokenizer().left_pad(case["ids"], case["length"])
    assert padded == case["padded"]
    assert len(padded) == case["length"]
