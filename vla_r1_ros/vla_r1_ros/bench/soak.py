"""`vla-r1 bench soak`: what a long unattended night does to the simulated graph, trial after trial.

It starts the graph `vla-r1 demo` starts (scripted expert, simulator) and runs back-to-back trials
through it. It records:
- the resident memory (VmRSS) of the `sim_stack` process (workcell + perception + planning, one
  process) after each trial, and its growth per trial by least squares after the warm-up trials;
- the capture stamp of every frame set the perception node publishes, and so the longest gap between
  consecutive frames while the trials run (resets included). The stamps come from `workcell/scene`,
  published with every frame set under the frame's stamp: it is small and reliable, so a gap is the
  camera's, not a lost sample (a best-effort image subscriber here lost half the 640×480 frames);
- each trial's wall time and outcome.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from vla_r1_ros.bench.figures import report_figures


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=40, help="back-to-back trials (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="first layout seed (trial i uses seed + i)")
    parser.add_argument("--warmup", type=int, default=5, help="trials left out of the memory slope (default 5)")
    parser.add_argument("--json", type=Path, help="write the figures (and the per-trial series) as JSON here")
    parser.add_argument("--logs", type=Path, default=Path("runs/bench-soak"), help="graph logs and episodes")


def resident_mb(pid: int) -> float:
    """VmRSS of a process in MB (1e6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmRSS for process {pid}")


def slope_per_trial(values: list[float]) -> float:
    """Least-squares growth per trial."""
    return float(np.polyfit(np.arange(len(values)), np.asarray(values, dtype=float), 1)[0])


def longest_gap_s(stamps_ns: list[int], start_ns: int, end_ns: int) -> float:
    """The longest time without a captured frame within [start, end] (its ends count as edges)."""
    inside = sorted(s for s in stamps_ns if start_ns <= s <= end_ns)
    edges = np.asarray([start_ns, *inside, end_ns], dtype=np.int64)
    return float(np.diff(edges).max() / 1e9)


def run(args: argparse.Namespace) -> int:
    import rclpy
    from vla_r1_interfaces.msg import SceneState

    from vla_r1_ros import topics
    from vla_r1_ros.core.trials import TrialSettings
    from vla_r1_ros.graph import GraphArgs
    from vla_r1_ros.launcher import GraphLauncher
    from vla_r1_ros.nodes.conversions import stamp_to_ns
    from vla_r1_ros.nodes.trial_client import GraphClient
    from vla_r1_ros.scene_setup import SimReset
    from vla_r1_ros.trial_observers import TrialObserver
    from vla_r1_ros.trial_runner import TrialRunner

    if args.trials <= args.warmup + 1:
        print("vla-r1 bench soak: --trials must exceed --warmup + 1 (the slope needs two trials after warm-up)")
        return 2
    out = args.logs.resolve()
    launcher = GraphLauncher(GraphArgs(log_dir=str(out), seed=args.seed), out / "logs")
    launcher.start()
    (sim,) = [running for running in launcher.processes if running.spec.name == "sim_stack"]
    rclpy.init()
    graph = GraphClient()
    stamps: list[int] = []
    lock = threading.Lock()

    def on_frame_set(msg: SceneState) -> None:
        with lock:
            stamps.append(stamp_to_ns(msg.header.stamp))

    graph.node.create_subscription(SceneState, topics.SCENE, on_frame_set, 50)
    rss: list[float] = []
    outcomes = []
    started_ns = 0

    class MemoryPerTrial(TrialObserver):
        def on_trial(self, outcome) -> None:
            rss.append(resident_mb(sim.popen.pid))
            outcomes.append(outcome)
            print(
                f"trial {outcome.index + 1}/{args.trials}: {'ok' if outcome.success else outcome.failure_stage} "
                f"in {outcome.wall_seconds:.1f} s, sim_stack {rss[-1]:.0f} MB",
                flush=True,
            )

    try:
        graph.wait_for_graph(timeout_s=180.0)
        rss_ready = resident_mb(sim.popen.pid)
        started_ns = time.time_ns()
        settings = TrialSettings(n=args.trials, seed=args.seed)
        TrialRunner(graph, SimReset(graph), observers=[MemoryPerTrial()]).run(settings)
        ended_ns = time.time_ns()
    finally:
        graph.close()
        rclpy.try_shutdown()
        launcher.stop()

    with lock:
        frames = list(stamps)
    after_warmup = rss[args.warmup :]
    during = sorted(stamp for stamp in frames if started_ns <= stamp <= ended_ns)
    gaps = np.diff(np.asarray(during, dtype=np.int64)) / 1e9
    figures = {
        "trials": len(outcomes),
        "successes": sum(o.success for o in outcomes),
        "failures": dict(Counter(o.failure_stage for o in outcomes if not o.success)),
        "longest_trial_s": max(o.wall_seconds for o in outcomes),
        "sim_rss_ready_mb": rss_ready,
        "sim_rss_first_mb": rss[0],
        "sim_rss_last_mb": rss[-1],
        "sim_rss_slope_mb_per_trial": slope_per_trial(after_warmup),
        "warmup_trials": args.warmup,
        "frames_during_trials": len(during),
        "frame_rate_during_trials_hz": len(during) / ((ended_ns - started_ns) / 1e9),
        "longest_frame_gap_s": longest_gap_s(frames, started_ns, ended_ns),
        "frame_gap_p99_s": float(np.percentile(gaps, 99)),
        "gaps_over_0_5s": int(np.sum(gaps > 0.5)),
        "gaps_over_1s": int(np.sum(gaps > 1.0)),
        "sim_rss_per_trial_mb": rss,
        "trial_seconds": [o.wall_seconds for o in outcomes],
        "frame_stamps_s": [(stamp - started_ns) / 1e9 for stamp in during],
    }
    report_figures(figures, args.json, width=32, decimals=2)
    return 0
