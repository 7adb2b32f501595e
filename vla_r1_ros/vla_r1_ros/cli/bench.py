"""`vla-r1 bench NAME`: benchmarks. Each lives in `vla_r1_ros.bench.<module>` with configure/run."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS: dict[str, tuple[str, str]] = {
    "rewards": ("vla_r1_ros.bench.rewards", "reward and metric throughput (samples/s)"),
    "inference": ("vla_r1_ros.bench.inference", "Qwen2.5-VL-3B architecture: prefill, decode, memory; bf16 vs nf4"),
    "pipeline": ("vla_r1_ros.bench.pipeline", "per-stage latency of the node graph outside the model"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, (module, help_text) in BENCHMARKS.items():
        bench_parser = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).configure(bench_parser)


def run(args: argparse.Namespace) -> int:
    return int(importlib.import_module(BENCHMARKS[args.benchmark][0]).run(args) or 0)
