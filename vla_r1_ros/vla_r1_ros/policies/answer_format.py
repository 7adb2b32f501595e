"""The official answer format as an xgrammar structural tag: think budget and constrained answers.

`<think> reasoning </think> so, the answer is <output> JSON </output>` (docs/vla_r1_contract.md).
Both options are one structural tag (xgrammar's format, the one OpenAI-compatible servers take as
`response_format: {"type": "structural_tag", ...}` — vLLM and SGLang compile it with xgrammar too):
- the reasoning is free text that cannot contain `</think>` or `</output>`; with a think budget it may use at most
  N tokens, after which the grammar allows only the closing `</think> so, the answer is <output>`
  (xgrammar's `any_text.max_tokens`), so the model goes on with its answer;
- constrained: the text opens with `<think>`; after `</think>` it must be ` so, the answer is <output>`, a box or a
  trajectory in the official JSON with every number in [0, 1], and `</output>`; then only an end
  token. A constrained answer always parses.
The in-process backend applies it with xgrammar's transformers logits processor; the remote backend
sends it to the server. No logit mask is written here: xgrammar computes every token mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vla_r1_ros.core.prompts import AFFORDANCE, TASKS, TRAJECTORY

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ANSWER_LEAD = " so, the answer is <output>"
OUTPUT_CLOSE = "</output>"

# A number in [0, 1] with up to 6 decimals (the dataset's precision): 0, 0.5, 0.563749, 1, 1.0.
_NUMBER = 'num ::= "0" ("." [0-9]{1,6})? | "1" ("." "0"{1,6})?'
MAX_WAYPOINTS = 16  # the paper's trajectories have 4; a bound keeps a constrained answer finite
ANSWER_GRAMMARS: dict[str, str] = {
    AFFORDANCE: (
        'root ::= "{\\"x\\": " num ", \\"y\\": " num ", \\"width\\": " num ", \\"height\\": " num "}"\n' + _NUMBER
    ),
    # At least 2 waypoints: the parser (core/parsing) refuses a trajectory of one point.
    TRAJECTORY: (
        f'root ::= "[" pair (", " pair){{1,{MAX_WAYPOINTS - 1}}} "]"\npair ::= "[" num ", " num "]"\n' + _NUMBER
    ),
}


def structural_tag(task: str, think_budget: int, constrained: bool) -> dict[str, Any] | None:
    """The structural tag for one task's answer, or None when neither option is on (free text)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if not think_budget and not constrained:
        return None
    # Not `</output>` either: `stop_at_output`'s stop string would end the row inside the reasoning, the
    # answer would not parse, and xgrammar's transformers processor asserts on the padding `generate` then
    # writes into the finished row (a token its unfinished grammar refuses).
    reasoning: dict[str, Any] = {"type": "any_text", "excludes": [THINK_CLOSE, OUTPUT_CLOSE]}
    if think_budget:
        reasoning["max_tokens"] = int(think_budget)
    opening: list[dict[str, Any]] = []
    if constrained:
        # The official answer opens with <think> (the format reward needs it); the model was trained to.
        opening = [{"type": "const_string", "value": THINK_OPEN}]
        answer: list[dict[str, Any]] = [
            {"type": "const_string", "value": THINK_CLOSE + ANSWER_LEAD},
            {"type": "grammar", "grammar": ANSWER_GRAMMARS[task]},
            {"type": "const_string", "value": OUTPUT_CLOSE},
        ]
    else:  # a budget only: close the reasoning, then the model answers freely
        answer = [{"type": "const_string", "value": THINK_CLOSE + ANSWER_LEAD}, {"type": "any_text"}]
    return {"type": "structural_tag", "format": {"type": "sequence", "elements": [*opening, reasoning, *answer]}}


def make_compiler(tokenizer: Any, vocab_size: int):
    """An xgrammar compiler for `tokenizer` (building its token table takes a while on a 151k vocabulary:
    the policy builds one and keeps it). Stop tokens: the chat end and the padding token, which
    `generate` writes into rows that have finished."""
    import xgrammar

    stop = sorted({tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.pad_token_id} - {None})
    info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop)
    return xgrammar.GrammarCompiler(info)


FREE_TEXT = {"type": "structural_tag", "format": {"type": "any_text"}}


def logits_processor(compiler: Any, tags: Sequence[dict[str, Any] | None]):
    """xgrammar's transformers logits processor for one batch: one structural tag per row (None: free
    text). One instance serves ONE `generate` call (it keeps per-row matcher state)."""
    import xgrammar.contrib.hf

    return xgrammar.contrib.hf.LogitsProcessor([compiler.compile_structural_tag(tag or FREE_TEXT) for tag in tags])
