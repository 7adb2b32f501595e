"""The tiny model's locally trained tokenizers: `bpe` (the test model's) and `bpe_vla` (the learning bench's,
also trained on the answer layout). No model is built here."""

from __future__ import annotations

import pytest

from vla_r1_ros.core import prompts
from vla_r1_ros.testing.tiny_model import QWEN_ADDED_TOKENS, make_tokenizer

ANSWER = prompts.format_answer(
    "The end-effector goes to the orange sphere on the right, picks it up and carries it to the tray on the "
    "left in 4 steps.",
    [[0.625843, 0.563633], [0.487081, 0.591593], [0.347517, 0.619714], [0.207144, 0.647998]],
)


@pytest.fixture(scope="module")
def tokenizers():
    return {kind: make_tokenizer(kind) for kind in ("bpe", "bpe_vla")}


def test_bpe_vla_spells_the_answer_layout_in_words_and_keeps_digits_apart(tokenizers):
    bpe, vla = tokenizers["bpe"], tokenizers["bpe_vla"]
    pieces = [vla.decode([i]) for i in vla(ANSWER)["input_ids"]]
    assert vla.decode(vla(ANSWER)["input_ids"]) == ANSWER
    for word in (" orange", " sphere", " carries", " steps", " [[", "]]", " </"):
        assert word in pieces
    assert all(len(piece) == 1 for piece in pieces if any(c.isdigit() for c in piece))  # Qwen: one digit a token
    assert len(pieces) < 0.85 * len(bpe(ANSWER)["input_ids"])


def test_both_have_qwens_special_tokens_after_the_vocabulary(tokenizers):
    for tokenizer in tokenizers.values():
        ids = [tokenizer.convert_tokens_to_ids(text) for text, _special in QWEN_ADDED_TOKENS]
        assert ids == list(range(ids[0], ids[0] + len(ids))) and ids[-1] == len(tokenizer) - 1
        assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    with pytest.raises(ValueError, match="bpe_vla"):
        make_tokenizer("char")
