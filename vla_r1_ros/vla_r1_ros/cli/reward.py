"""`vla-r1 reward`: JSON lines {"task", "completion", "ground_truth"} on stdin → one JSON line each:
{"score", "format", "task_score"} (VLA-R1's verifiable rewards).

A line that cannot be scored (not JSON, a missing field, a ground truth without a valid `<output>`) gives
{"error": …, "line": N} for that line only; the other lines still run. Blank lines are skipped. Exit code
0; 2 only for usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        'example: echo \'{"task": "affordance", "completion": "<think>…</think> so, the answer is <output>'
        '{"x": 0.5, "y": 0.5, "width": 0.2, "height": 0.2}</output>", "ground_truth": "…"}\' | vla-r1 reward'
    )


def _score_line(line: str) -> dict:
    from vla_r1_ros.core.rewards import score_completion

    try:
        record = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object")
    missing = [key for key in ("task", "completion", "ground_truth") if key not in record]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    return score_completion(record["task"], record["completion"], record["ground_truth"]).to_json()


def run(args: argparse.Namespace) -> int:
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        line = raw.decode("utf-8", errors="replace").strip()
        if not line:
            continue
        try:
            result = _score_line(line)
        except (TypeError, ValueError, RecursionError) as exc:
            result = {"error": str(exc), "line": number}
        print(json.dumps(result), flush=True)
    return 0
