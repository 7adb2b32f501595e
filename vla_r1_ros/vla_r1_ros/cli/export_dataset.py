"""`vla-r1 export-dataset LOGDIR OUT`: logged episodes -> VLA-R1 ShareGPT JSON + a `datasets` dataset.

vla-r1 export-dataset runs/latest data/sim --only-success --min-reward 0.5
vla-r1 train-grpo --data data/sim --model GigaAI-Research/vla-r1 --output runs/grpo
"""

from __future__ import annotations

import argparse
import json
import sys

from vla_r1_ros.core.prompts import TASKS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logdir", help="episode log directory (holds index.jsonl), e.g. runs/latest")
    parser.add_argument("out", help="output directory: vla_r1_sharegpt.json, images/, hf/, export.json")
    parser.add_argument(
        "--min-reward",
        type=float,
        default=None,
        metavar="R",
        help="keep a task's record only if the logged answer scored at least R (total, 0..1) against the reference",
    )
    parser.add_argument("--only-success", action="store_true", help="keep only trials that succeeded")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="tasks to export")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args: argparse.Namespace) -> int:
    from vla_r1_ros.core.dataset import ExportError, export_dataset
    from vla_r1_ros.core.episodes import EpisodeStoreError

    try:
        summary = export_dataset(
            args.logdir,
            args.out,
            min_reward=args.min_reward,
            only_success=args.only_success,
            tasks=args.tasks,
            overwrite=args.overwrite,
        )
    except (ExportError, EpisodeStoreError) as exc:
        print(f"vla-r1 export-dataset: {exc}", file=sys.stderr)
        return 1
    for warning in summary.warnings:
        print(f"vla-r1 export-dataset: warning: {warning}", file=sys.stderr)
    print(json.dumps(summary.to_json(), indent=2))
    return 0
