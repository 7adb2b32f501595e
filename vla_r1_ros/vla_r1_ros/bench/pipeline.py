"""`vla-r1 bench pipeline`: what the node graph adds around the model, per decision.

It starts the simulated graph with the scripted policy (whose "inference" costs microseconds, so what
is measured is the pipeline), lays out one scene, and sends ≥ 100 `ExecuteInstruction` goals with
`plan_only` (predict → lift → plan and validate, no motion). Per decision it records:
- frame transport: colour image stamp → arrival at a subscriber in another process (DDS, 640×480 rgb8);
- the planning node's own stage times (`EpisodeRecord.stage_names/stage_seconds`): predict, lift, plan…;
- policy time inside predict (`VlaPrediction.inference_latency_s`) and so the message hops of the
  Predict action round trip (predict stage − policy time);
- prediction parsing: `parse_answer` on the very texts of the run;
- end-to-end decision time: goal sent → result received.
Baseline from the same run: a bare service round trip to the planning node (`get_parameters`), so the
hops can be read as multiples of the cheapest possible exchange.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--decisions", type=int, default=100, help="plan-only decisions to time (>= 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    parser.add_argument("--logs", type=Path, default=Path("runs/bench-pipeline"), help="graph logs and episodes")


def _stats(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=float) * 1000.0
    return {
        "p50_ms": float(np.percentile(array, 50)),
        "p95_ms": float(np.percentile(array, 95)),
        "mean_ms": float(array.mean()),
        "n": int(array.size),
    }


def run(args: argparse.Namespace) -> int:
    import rclpy
    from rcl_interfaces.srv import GetParameters
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from vla_r1_interfaces.action import ExecuteInstruction
    from vla_r1_interfaces.msg import EpisodeRecord

    from vla_r1_ros.core.parsing import parse_answer
    from vla_r1_ros.graph import GraphArgs
    from vla_r1_ros.launcher import GraphLauncher
    from vla_r1_ros.nodes.conversions import stamp_to_ns
    from vla_r1_ros.trial_runner import TrialRunner, TrialSettings, future_result

    if args.decisions < 100:
        print("vla-r1 bench pipeline: --decisions must be >= 100 for stable p95 figures")
        return 2
    out = args.logs.resolve()
    launcher = GraphLauncher(GraphArgs(log_dir=str(out), seed=args.seed), out / "logs")
    launcher.start()
    rclpy.init()
    runner = TrialRunner()
    node = runner.node
    transport: list[float] = []
    records: list[EpisodeRecord] = []
    lock = threading.Lock()

    def on_image(msg: Image) -> None:
        with lock:
            transport.append((time.time_ns() - stamp_to_ns(msg.header.stamp)) / 1e9)

    def on_episode(msg: EpisodeRecord) -> None:
        with lock:
            records.append(msg)

    node.create_subscription(Image, "camera/color/image_raw", on_image, qos_profile_sensor_data)
    node.create_subscription(EpisodeRecord, "vla_r1/episode", on_episode, 200)
    params_client = node.create_client(GetParameters, "planning/get_parameters")
    try:
        runner.wait_for_graph(timeout_s=180.0)
        instruction, _target = runner.prepare_sim_trial(
            args.seed, TrialSettings(n=1, seed=args.seed), np.random.default_rng(args.seed)
        )
        baseline = []
        for _ in range(args.decisions):
            start = time.perf_counter()
            future_result(params_client.call_async(GetParameters.Request(names=["executor"])), 10.0, "get_parameters")
            baseline.append(time.perf_counter() - start)
        end_to_end = []
        for _ in range(args.decisions):
            start = time.perf_counter()
            handle = future_result(
                node.execute_client.send_goal_async(ExecuteInstruction.Goal(instruction=instruction, plan_only=True)),
                30.0,
                "goal acceptance",
            )
            future_result(handle.get_result_async(), 60.0, "plan-only result")
            end_to_end.append(time.perf_counter() - start)
        time.sleep(0.5)  # the last EpisodeRecords are in flight
    finally:
        runner.close()
        rclpy.try_shutdown()
        launcher.stop()

    with lock:
        records = list(records)
        transport = list(transport)
    stages: dict[str, list[float]] = {}
    hops, parse_times = [], []
    for record in records:
        timings = dict(zip(record.stage_names, record.stage_seconds, strict=True))
        for stage, seconds in timings.items():
            stages.setdefault(stage, []).append(seconds)
        if "predict" in timings:
            hops.append(timings["predict"] - record.prediction.inference_latency_s)
        for task, text in zip(record.prediction.tasks, record.prediction.raw_texts, strict=True):
            start = time.perf_counter()
            parse_answer(text, task)
            parse_times.append(time.perf_counter() - start)

    baseline_stats = _stats(baseline)
    figures = {
        "decisions": len(end_to_end),
        "baseline_service_round_trip": baseline_stats,
        "frame_transport": _stats(transport),
        "predict_action_hops": _stats(hops),
        "parse_per_answer": _stats(parse_times),
        **{f"stage_{name}": _stats(values) for name, values in stages.items()},
        "end_to_end_decision": _stats(end_to_end),
    }
    print(f"{'component':<32}{'p50 ms':>10}{'p95 ms':>10}{'p50 / baseline':>16}")
    for name, stats in figures.items():
        if isinstance(stats, dict):
            ratio = stats["p50_ms"] / baseline_stats["p50_ms"]
            print(f"{name:<32}{stats['p50_ms']:>10.2f}{stats['p95_ms']:>10.2f}{ratio:>15.1f}x")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
        print(f"wrote {args.json}")
    return 0
