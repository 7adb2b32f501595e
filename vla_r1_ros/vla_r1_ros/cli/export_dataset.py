"""`vla-r1 export-dataset LOGDIR OUT`: logged episodes -> VLA-R1 ShareGPT JSON + a `datasets` dataset,
or (`--format lerobot`) a LeRobotDataset v3.0 with one episode per logged trial.

vla-r1 export-dataset runs/latest data/sim --only-success --min-reward 0.5
vla-r1 train-grpo --data data/sim --model GigaAI-Research/vla-r1 --output runs/grpo
vla-r1 export-dataset runs/latest data/lerobot --format lerobot
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vla_r1_ros.core.prompts import TASKS

FORMATS = ("sharegpt", "lerobot")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logdir", help="episode log directory (holds index.jsonl), e.g. runs/latest")
    parser.add_argument(
        "out", help="output directory: vla_r1_sharegpt.json, images/, hf/, export.json; or the LeRobot dataset"
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=FORMATS[0],
        help="sharegpt: VLA-R1 ShareGPT + HF datasets (training records); lerobot: LeRobotDataset v3.0, every "
        "logged trial, written by lerobot 0.4.4 in an isolated environment it creates once (docs/episodes.md)",
    )
    parser.add_argument("--repo-id", default="", help="lerobot: the dataset's repo_id (default vla_r1_ros/<OUT name>)")
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


def _say(message: str) -> None:
    print(f"vla-r1 export-dataset: {message}", file=sys.stderr)


def _run_lerobot(args: argparse.Namespace) -> dict:
    from vla_r1_ros.core.config import PackageConfig
    from vla_r1_ros.core.lerobot_export import LeRobotExportError, LeRobotSettings
    from vla_r1_ros.lerobot_writer import export_lerobot

    # Filters would drop trials: a LeRobot export holds every logged trial, so its success rate is honest.
    if args.min_reward is not None or args.only_success or args.tasks != list(TASKS):
        raise LeRobotExportError("--min-reward, --only-success and --tasks apply to --format sharegpt only")
    settings = LeRobotSettings.from_config(PackageConfig.load().dataset["lerobot"])
    return export_lerobot(
        Path(args.logdir), Path(args.out), settings, overwrite=args.overwrite, say=_say, repo_id=args.repo_id
    )


def run(args: argparse.Namespace) -> int:
    from vla_r1_ros.core.dataset import ExportError, export_dataset
    from vla_r1_ros.core.episodes import EpisodeStoreError
    from vla_r1_ros.core.lerobot_export import LeRobotExportError
    from vla_r1_ros.lerobot_writer import WriterEnvironmentError

    try:
        if args.format == "lerobot":
            result = _run_lerobot(args)
        else:
            result = export_dataset(
                args.logdir,
                args.out,
                min_reward=args.min_reward,
                only_success=args.only_success,
                tasks=args.tasks,
                overwrite=args.overwrite,
            ).to_json()
    except (ExportError, EpisodeStoreError, LeRobotExportError, WriterEnvironmentError) as exc:
        _say(str(exc))
        return 1
    for warning in result["warnings"]:
        _say(f"warning: {warning}")
    print(json.dumps(result, indent=2))
    return 0
