"""`vla-r1 bench recording`: what recording (`--record`) costs a trial.

In one invocation it starts the graph `vla-r1 demo` starts (scripted expert, simulator) `--rounds` times
without the recorder and as often with it, alternating (without, with, with, without, …) so that a
machine getting slower or faster during the run weighs on both alike, runs `--trials` back-to-back
trials through each, and compares the trial wall times (goal sent to result): median and mean of each
and their ratios (recorded / not recorded). It also gives the bags' size and rate.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from vla_r1_ros.bench.figures import report_figures


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=10, help="trials per graph (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="graphs of each kind, alternating (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="first layout seed of every graph (the same trials)")
    parser.add_argument("--json", type=Path, help="write the figures (and every trial time) as JSON here")
    parser.add_argument("--logs", type=Path, default=Path("runs/bench-recording"), help="graph logs, episodes, bags")


def trial_seconds(out: Path, record: bool, trials: int, seed: int) -> tuple[list[float], float, int]:
    """The wall time of each trial through a graph started in `out`; with `record`, the bag's duration
    (its metadata.yaml's) and bytes (0, 0 without)."""
    import rclpy
    import yaml

    from vla_r1_ros.core.trials import TrialSettings
    from vla_r1_ros.graph import GraphArgs
    from vla_r1_ros.launcher import GraphLauncher
    from vla_r1_ros.nodes.trial_client import GraphClient
    from vla_r1_ros.scene_setup import SimReset
    from vla_r1_ros.trial_runner import TrialRunner

    launcher = GraphLauncher(GraphArgs(log_dir=str(out), seed=seed, record=record), out / "logs")
    launcher.start()
    rclpy.init()
    graph = GraphClient()
    try:
        graph.wait_for_graph(timeout_s=180.0)
        outcomes = TrialRunner(graph, SimReset(graph)).run(TrialSettings(n=trials, seed=seed))
    finally:
        graph.close()
        rclpy.try_shutdown()
        launcher.stop()
    if not record:
        return [o.wall_seconds for o in outcomes], 0.0, 0
    bag = Path(launcher.recording.bag_dir)
    duration_ns = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["duration"]
    size = sum(path.stat().st_size for path in bag.iterdir())
    return [o.wall_seconds for o in outcomes], duration_ns["nanoseconds"] / 1e9, size


def run(args: argparse.Namespace) -> int:
    if args.trials < 1 or args.rounds < 1:
        print("vla-r1 bench recording: --trials and --rounds must be ≥ 1")
        return 2
    out = args.logs.resolve()
    order = [
        record for round_ in range(args.rounds) for record in ((False, True) if round_ % 2 == 0 else (True, False))
    ]
    times: dict[bool, list[float]] = {False: [], True: []}
    bag_s, bag_bytes = 0.0, 0
    for index, record in enumerate(order):
        seconds, recorded_s, size = trial_seconds(
            out / f"{index:02d}-{'recorded' if record else 'plain'}", record, args.trials, args.seed
        )
        times[record] += seconds
        bag_s, bag_bytes = bag_s + recorded_s, bag_bytes + size
        print(
            f"graph {index + 1}/{len(order)} ({'recorded' if record else 'not recorded'}): "
            f"median trial {statistics.median(seconds):.2f} s",
            flush=True,
        )
    plain, recorded = times[False], times[True]
    figures = {
        "trials_per_kind": len(plain),
        "median_trial_s": statistics.median(plain),
        "median_trial_recorded_s": statistics.median(recorded),
        "median_ratio": statistics.median(recorded) / statistics.median(plain),
        "mean_trial_s": statistics.mean(plain),
        "mean_trial_recorded_s": statistics.mean(recorded),
        "mean_ratio": statistics.mean(recorded) / statistics.mean(plain),
        "bag_mb": bag_bytes / 1e6,
        "bag_mb_per_s": bag_bytes / 1e6 / bag_s if bag_s else 0.0,
        "trial_seconds": plain,
        "trial_seconds_recorded": recorded,
    }
    report_figures(figures, args.json, width=28, decimals=3)
    return 0
