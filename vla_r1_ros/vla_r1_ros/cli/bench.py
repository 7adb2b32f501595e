"""`vla-r1 bench NAME [options]`: benchmarks, each in `vla_r1_ros.bench.<module>` with configure/run.

Only the chosen benchmark's module is imported (they pull in torch, rclpy, …), so one benchmark's
dependencies never break another.
"""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS: dict[str, tuple[str, str]] = {
    "rewards": ("vla_r1_ros.bench.rewards", "reward and metric throughput (samples/s)"),
    "inference": (
        "vla_r1_ros.bench.inference",
        "Qwen2.5-VL-3B architecture: the official path against the default and each lever; memory per precision",
    ),
    "pipeline": ("vla_r1_ros.bench.pipeline", "per-stage latency of the node graph outside the model"),
    "autonomy": (
        "vla_r1_ros.bench.autonomy",
        "unattended sim trials with the camera judge and the self-reset: agreement with the physics, false "
        "successes, self-reset success, operator calls, trials per hour, memory",
    ),
    "learning": (
        "vla_r1_ros.bench.learning",
        "held-out rewards of the tiny model: base, after train-sft, after train-grpo from the SFT adapter",
    ),
    "soak": (
        "vla_r1_ros.bench.soak",
        "back-to-back sim trials: sim process memory per trial, camera frame gaps, trial times",
    ),
    "recording": (
        "vla_r1_ros.bench.recording",
        "sim trials with and without --record, alternating graphs: trial time ratios, bag size and rate",
    ),
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "benchmarks: " + "; ".join(f"{name}: {text}" for name, (_m, text) in BENCHMARKS.items())
    parser.add_argument("benchmark", choices=BENCHMARKS, help="which benchmark (then its own options; -h lists them)")
    parser.add_argument("options", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    module_name, help_text = BENCHMARKS[args.benchmark]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"vla-r1 bench {args.benchmark}", description=help_text)
    module.configure(parser)
    return int(module.run(parser.parse_args(args.options)) or 0)
