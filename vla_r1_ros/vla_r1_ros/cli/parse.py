"""`vla-r1 parse`: raw VLA-R1 text on stdin → one JSON object on stdout (the `ParsedAnswer` contract).

Exit code 0 whether or not the text parsed (`ok` says which); 2 only for usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys

from vla_r1_ros.core.prompts import TASKS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=TASKS, help="which prompt the text answers")
    parser.add_argument("--width", type=int, metavar="W", help="image width in pixels (for box_px, waypoints_px)")
    parser.add_argument("--height", type=int, metavar="H", help="image height in pixels (with --width)")
    parser.epilog = (
        "example: echo '<think>…</think> so, the answer is <output>[[0.1, 0.2], [0.4, 0.5]]</output>' | "
        "vla-r1 parse --task trajectory --width 640 --height 480"
    )


def run(args: argparse.Namespace) -> int:
    from vla_r1_ros.core.parsing import parse_answer

    if (args.width is None) != (args.height is None) or any(
        v is not None and v <= 0 for v in (args.width, args.height)
    ):
        print("vla-r1 parse: error: --width and --height go together and must be positive", file=sys.stderr)
        return 2
    # Bytes that are not UTF-8 must not crash the parser: they become U+FFFD and the text still parses.
    text = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    parsed = parse_answer(text, args.task)
    print(json.dumps(parsed.to_json(args.width, args.height), ensure_ascii=False))
    return 0
