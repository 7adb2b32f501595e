"""`vla-r1 eval FILE.jsonl`: the paper's metrics over predictions.

Each line: {"id", "task", "prediction": model text, "reference": answer text}. Prints the summary
{"affordance": {"n", "iou"}, "trajectory": {"n", "dfd", "hd", "rmse", "avg"}, "format_rate",
"parse_failures"}; `--per-sample OUT.jsonl` also writes one record per sample. A line that is not a
usable sample (bad JSON, unknown task, a reference that does not parse) is reported on stderr and left
out. Exit code 0; 2 for usage errors (including an unreadable FILE).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.jsonl", help="predictions with references; '-' reads stdin")
    parser.add_argument("--per-sample", metavar="OUT.jsonl", type=Path, help="write one record per sample")
    parser.epilog = "example: vla-r1 eval predictions.jsonl --per-sample scores.jsonl"


def run(args: argparse.Namespace) -> int:
    from vla_r1_ros.core.metrics import score_sample, summarize

    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        print(f"vla-r1 eval: error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    records = []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
            if not isinstance(sample, dict):
                raise ValueError("expected a JSON object")
            records.append(score_sample(sample))
        except (ValueError, RecursionError) as exc:
            print(f"vla-r1 eval: line {number} skipped: {exc}", file=sys.stderr)
    if args.per_sample is not None:
        args.per_sample.write_text("".join(json.dumps(record) + "\n" for record in records))
    print(json.dumps(summarize(records)))
    return 0
