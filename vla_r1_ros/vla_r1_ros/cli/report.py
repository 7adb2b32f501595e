"""`vla-r1 report LOG [LOG …]`: the self-contained HTML report of an episode log (with its runs by
checkpoint and adapter), or, for several logs, one page comparing their runs by checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

COMPARISON_FILE = "comparison.html"  # several logs: written in the first one unless --out says where


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "logs", type=Path, nargs="+", help="episode log(s) (index.jsonl + episodes/), or one `vla-r1 sweep` folder"
    )
    parser.add_argument(
        "--out", type=Path, help=f"HTML file to write (default LOG/report.html; several logs: LOG/{COMPARISON_FILE})"
    )


def run(args: argparse.Namespace) -> int:
    from vla_r1_ros.core.episodes import EpisodeStoreError
    from vla_r1_ros.core.labels import outcomes_by_checkpoint
    from vla_r1_ros.core.trials import compare_checkpoints, format_comparison
    from vla_r1_ros.report import write_comparison_report, write_report, write_sweep_report

    if len(args.logs) == 1 and (args.logs[0] / "sweep.json").is_file():
        print(write_sweep_report(args.logs[0], args.out))
        return 0
    for log in args.logs:
        if not (log / "index.jsonl").is_file():
            print(f"vla-r1 report: {log} has no index.jsonl (not an episode log) and no sweep.json")
            return 2
    first = args.logs[0]
    try:  # recounted from the log: judgements given since the run (vla-r1 label) count
        print(format_comparison(compare_checkpoints(outcomes_by_checkpoint(args.logs))))
        if len(args.logs) == 1:
            print(write_report(first, args.out or first / "report.html"))
        else:
            print(write_comparison_report(args.logs, args.out or first / COMPARISON_FILE))
    except EpisodeStoreError as exc:  # a damaged index, or a name in it that leaves the log
        print(f"vla-r1 report: {exc}", file=sys.stderr)
        return 1
    return 0
