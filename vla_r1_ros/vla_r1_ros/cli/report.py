"""`vla-r1 report LOGDIR`: write the self-contained HTML report of an episode log."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logdir", type=Path, help="episode log (index.jsonl + episodes/) or a `vla-r1 sweep` folder")
    parser.add_argument("--out", type=Path, help="HTML file to write (default LOGDIR/report.html)")


def run(args: argparse.Namespace) -> int:
    from vla_r1_ros.core.episodes import EpisodeStoreError
    from vla_r1_ros.report import write_report, write_sweep_report

    if (args.logdir / "sweep.json").is_file():
        print(write_sweep_report(args.logdir, args.out))
        return 0
    if not (args.logdir / "index.jsonl").is_file():
        print(f"vla-r1 report: {args.logdir} has no index.jsonl (not an episode log) and no sweep.json")
        return 2
    try:  # recounted from the log: judgements given since the run (vla-r1 label) count
        print(write_report(args.logdir, args.out or args.logdir / "report.html"))
    except EpisodeStoreError as exc:  # a damaged index, or a name in it that leaves the log
        print(f"vla-r1 report: {exc}", file=sys.stderr)
        return 1
    return 0
