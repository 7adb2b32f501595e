"""`vla-r1 bench pipeline`: what the node graph adds around the model, per decision.

It starts the simulated graph with the scripted policy (whose "inference" costs microseconds, so what
is measured is the pipeline), lays out one scene, and sends ≥ 100 `ExecuteInstruction` goals with
`plan_only` (predict → lift → plan and validate, no motion). Per decision it records:
- frame transport: colour image stamp → arrival at a subscriber in another process (DDS, 640×480 rgb8);
- the planning node's own stage times (each logged episode's `timings`): perceive, predict, lift, plan…;
- policy time inside predict (the episode's `inference_latency_s`) and so the message hops of the
  Predict action round trip, whose goal carries the 640×480 frame (predict stage − policy time);
- prediction parsing: `parse_answer` on the very texts of the run;
- end-to-end decision time: goal sent → result received (the record is on disk by then);
- the record hop: one `vla_r1/log_episode` call with a whole EpisodeRecord (frame set, scene, answers,
  plan) until the logger confirms it durably written, and the record's serialized size.
Baseline from the same run: a bare service round trip to the planning node (`get_parameters`), so the
hops can be read as multiples of the cheapest possible exchange.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

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

    from vla_r1_ros import topics
    from vla_r1_ros.core.episodes import iter_episodes
    from vla_r1_ros.core.parsing import parse_answer
    from vla_r1_ros.graph import GraphArgs
    from vla_r1_ros.launcher import GraphLauncher
    from vla_r1_ros.nodes.conversions import stamp_to_ns
    from vla_r1_ros.nodes.trial_client import GraphClient, future_result
    from vla_r1_ros.scene_setup import SimReset

    if args.decisions < 100:
        print("vla-r1 bench pipeline: --decisions must be >= 100 for stable p95 figures")
        return 2
    out = args.logs.resolve()
    launcher = GraphLauncher(GraphArgs(log_dir=str(out), seed=args.seed), out / "logs")
    launcher.start()
    rclpy.init()
    graph = GraphClient()
    node = graph.node
    transport: list[float] = []
    records: list[str] = []  # trial ids of the timed decisions
    lock = threading.Lock()

    def on_image(msg: Image) -> None:
        with lock:
            transport.append((time.time_ns() - stamp_to_ns(msg.header.stamp)) / 1e9)

    node.create_subscription(Image, topics.COLOR, on_image, qos_profile_sensor_data)
    params_client = node.create_client(GetParameters, "planning/get_parameters")
    try:
        graph.wait_for_graph(timeout_s=180.0)
        instruction = SimReset(graph).prepare(0, args.seed, np.random.default_rng(args.seed)).instruction
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
            result = future_result(handle.get_result_async(), 60.0, "plan-only result").result
            end_to_end.append(time.perf_counter() - start)
            records.append(result.episode_id)
        record_hops, record_bytes = _record_hops(node, out, min(30, args.decisions), future_result)
    finally:
        graph.close()
        rclpy.try_shutdown()
        launcher.stop()

    with lock:
        transport = list(transport)
    decided = set(records)
    stages: dict[str, list[float]] = {}
    hops, parse_times = [], []
    for entry, document in iter_episodes(out):
        if entry["trial_id"] not in decided:
            continue
        timings = document["timings"]
        for stage, seconds in timings.items():
            stages.setdefault(stage, []).append(seconds)
        prediction = document["prediction"]
        if "predict" in timings:
            hops.append(timings["predict"] - prediction["inference_latency_s"])
        for task, text in prediction["raw_texts"].items():
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
        "record_hop_log_episode": _stats(record_hops),
        "record_size_mb": record_bytes / 1e6,
    }
    print(f"{'component':<32}{'p50 ms':>10}{'p95 ms':>10}{'p50 / baseline':>16}")
    for name, stats in figures.items():
        if isinstance(stats, dict):
            ratio = stats["p50_ms"] / baseline_stats["p50_ms"]
            print(f"{name:<32}{stats['p50_ms']:>10.2f}{stats['p95_ms']:>10.2f}{ratio:>15.1f}x")
    print(f"{'EpisodeRecord size':<32}{record_bytes / 1e6:>10.2f} MB serialized")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
        print(f"wrote {args.json}")
    return 0


def _record_hops(node: Any, log_dir: Path, n: int, future_result: Any) -> tuple[list[float], int]:
    """Round trips of `vla_r1/log_episode` with whole records like the run's (its last episode's frame
    set, answers and outcome, under new trial ids), until the logger confirms each on disk; and the
    serialized size of one record."""
    from rclpy.serialization import serialize_message
    from vla_r1_interfaces.msg import EpisodeRecord
    from vla_r1_interfaces.srv import LogEpisode

    from vla_r1_ros.core.episodes import load_color, load_depth, load_episode, read_index
    from vla_r1_ros.core.geometry import CameraIntrinsics
    from vla_r1_ros.core.prediction import Prediction
    from vla_r1_ros.nodes.conversions import camera_info_msg, numpy_to_image
    from vla_r1_ros.nodes.prediction_msgs import prediction_msg

    entry = read_index(log_dir)[-1]
    document = load_episode(log_dir, entry["episode"])
    camera = document["camera"]
    template = EpisodeRecord(instruction=document["instruction"], tasks=document["prediction"]["tasks"])
    template.color = numpy_to_image(load_color(log_dir, entry["episode"]), "rgb8", frame_id=camera["frame_id"])
    template.depth = numpy_to_image(load_depth(log_dir, entry["episode"]), "16UC1", frame_id=camera["frame_id"])
    intrinsics = CameraIntrinsics.from_k(camera["width"], camera["height"], camera["k"])
    template.camera_info = camera_info_msg(intrinsics, frame_id=camera["frame_id"])
    prediction = Prediction.from_json({"instruction": document["instruction"], **document["prediction"]})
    template.prediction = prediction_msg(prediction, template.color.header.stamp, camera["frame_id"])
    size = len(serialize_message(template))
    client = node.log_client
    hops = []
    for index in range(n):
        template.trial_id = f"bench-record-hop-{time.time_ns()}-{index}"
        start = time.perf_counter()
        response = future_result(client.call_async(LogEpisode.Request(record=template)), 30.0, "log_episode")
        hops.append(time.perf_counter() - start)
        if not response.logged:
            raise RuntimeError(f"the logger refused a record: {response.message}")
    return hops, size
