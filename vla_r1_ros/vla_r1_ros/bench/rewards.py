"""`vla-r1 bench rewards`: throughput (samples/s) of the rewards and metrics.

Measures, at trajectory lengths 4, 50 and 200: the trajectory reward (vectorized) against a baseline
measured in the same run — `naive_orientation_frechet`, a plain pure-Python O(m·n) transcription of the
reference — reported as a speed-up ratio; the paper metrics (DFD, HD, RMSE); and, independent of
length, the format and region rewards and a full `score_completion` on answer text.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

PATH_LENGTHS = (4, 50, 200)
_EPS = 1e-12


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="OUT", type=Path, help="also write the results as JSON to OUT")
    parser.add_argument(
        "--min-time", type=float, default=0.3, metavar="S", help="seconds to run each measurement (default 0.3)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random paths and boxes")


def naive_orientation_frechet(reference: list, prediction: list) -> float:
    """Orientation-sensitive discrete Fréchet distance in plain Python, cell by cell — the reference's
    definition written the obvious way. The baseline of this bench, and the oracle the tests compare the
    vectorized version with."""

    def unit(dx: float, dy: float) -> tuple[float, float]:
        norm = math.hypot(dx, dy)
        return (0.0, 0.0) if norm < _EPS else (dx / norm, dy / norm)

    def tangent_and_length(path: list, i: int) -> tuple[tuple[float, float], float]:
        n = len(path)
        if n == 1:
            return (0.0, 0.0), 0.0
        if i == 0:
            return unit(path[1][0] - path[0][0], path[1][1] - path[0][1]), math.dist(path[1], path[0])
        incoming = unit(path[i][0] - path[i - 1][0], path[i][1] - path[i - 1][1])
        if i == n - 1:
            return incoming, math.dist(path[i], path[i - 1])
        outgoing = unit(path[i + 1][0] - path[i][0], path[i + 1][1] - path[i][1])
        summed = (incoming[0] + outgoing[0], incoming[1] + outgoing[1])
        norm = math.hypot(*summed)
        tangent = (summed[0] / norm, summed[1] / norm) if norm >= _EPS else incoming
        return tangent, math.dist(path[i + 1], path[i])

    def clip(path: list) -> list:
        return [(min(1.0, max(0.0, x)), min(1.0, max(0.0, y))) for x, y in path]

    p, q = clip(reference), clip(prediction)
    local_p = [tangent_and_length(p, i) for i in range(len(p))]
    local_q = [tangent_and_length(q, j) for j in range(len(q))]

    def cost(i: int, j: int) -> float:
        (tp, lp), (tq, lq) = local_p[i], local_q[j]
        norm_p, norm_q = math.hypot(*tp), math.hypot(*tq)
        angle = 0.0
        if norm_p >= _EPS and norm_q >= _EPS:
            angle = math.acos(max(-1.0, min(1.0, (tp[0] * tq[0] + tp[1] * tq[1]) / (norm_p * norm_q))))
        ratio = abs(math.log(lp / lq)) if lp > _EPS and lq > _EPS else abs(math.log((lp + _EPS) / (lq + _EPS)))
        return math.dist(p[i], q[j]) + 0.25 * angle + 0.10 * ratio

    table = [[0.0] * len(q) for _ in p]
    for i in range(len(p)):
        for j in range(len(q)):
            if i == 0 and j == 0:
                before = -math.inf
            elif i == 0:
                before = table[0][j - 1]
            elif j == 0:
                before = table[i - 1][0]
            else:
                before = min(table[i - 1][j], table[i - 1][j - 1], table[i][j - 1])
            table[i][j] = max(before, cost(i, j))
    return table[-1][-1]


def _throughput(function: Callable[[], object], min_time: float) -> float:
    """Calls per second of `function`: the best of repeated equal batches over `min_time` seconds (as
    timeit takes the minimum), so other load on the machine disturbs the figure, and the ratio, less."""

    def seconds_for(batch: int) -> float:
        start = time.perf_counter()
        for _ in range(batch):
            function()
        return time.perf_counter() - start

    function()  # warm-up (imports, caches)
    batch, elapsed = 1, seconds_for(1)
    while elapsed < min_time / 10:  # grow the batch until one batch is a tenth of the budget
        batch *= 2
        elapsed = seconds_for(batch)
    best, spent = batch / elapsed, elapsed
    while spent < min_time:
        elapsed = seconds_for(batch)
        spent += elapsed
        best = max(best, batch / elapsed)
    return best


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from vla_r1_ros.core import metrics, rewards
    from vla_r1_ros.core.prompts import format_answer
    from vla_r1_ros.core.rewards import TRAJECTORY_NORMALIZER

    rng = np.random.default_rng(args.seed)

    def random_walk(length: int) -> np.ndarray:
        return np.clip(0.5 + np.cumsum(rng.normal(0.0, 0.4 / length, (length, 2)), axis=0), 0.0, 1.0)

    rows: list[dict] = []

    def measure(name: str, length: int | None, function: Callable[[], object], baseline=None) -> None:
        row = {"name": name, "length": length, "samples_per_s": _throughput(function, args.min_time)}
        if baseline is not None:
            row["baseline_samples_per_s"] = _throughput(baseline, args.min_time)
            row["speedup"] = row["samples_per_s"] / row["baseline_samples_per_s"]
        rows.append(row)

    box_a, box_b = (0.5, 0.5, 0.2, 0.3), (0.55, 0.45, 0.25, 0.2)
    measure("region_reward", None, lambda: rewards.region_reward(box_a, box_b))
    measure("metrics.iou", None, lambda: metrics.iou(box_a, box_b))
    completion = format_answer("the handle is on the right", box_a)
    truth = format_answer("reference", box_b)
    measure("format_reward", None, lambda: rewards.format_reward(completion))
    measure("score_completion affordance", None, lambda: rewards.score_completion("affordance", completion, truth))
    for length in PATH_LENGTHS:
        reference, prediction = random_walk(length), random_walk(length)
        reference_list, prediction_list = reference.tolist(), prediction.tolist()
        vectorized = rewards.trajectory_reward(prediction, reference)
        naive = 1.0 - min(1.0, naive_orientation_frechet(reference_list, prediction_list) / TRAJECTORY_NORMALIZER)
        if abs(vectorized - naive) > 1e-8:  # a speed-up of a different function would be meaningless
            raise RuntimeError(f"vectorized and baseline trajectory rewards differ at length {length}")
        measure(
            "trajectory_reward",
            length,
            lambda p=prediction, r=reference: rewards.trajectory_reward(p, r),
            baseline=lambda p=prediction_list, r=reference_list: naive_orientation_frechet(r, p),
        )
        measure("metrics.discrete_frechet", length, lambda p=prediction, r=reference: metrics.discrete_frechet(p, r))
        measure("metrics.hausdorff", length, lambda p=prediction, r=reference: metrics.hausdorff(p, r))
        measure("metrics.rmse_resampled", length, lambda p=prediction, r=reference: metrics.rmse_resampled(p, r))
        traj_completion = format_answer("along the table", prediction)
        traj_truth = format_answer("reference", reference)
        measure(
            "score_completion trajectory",
            length,
            lambda c=traj_completion, t=traj_truth: rewards.score_completion("trajectory", c, t),
        )

    print(f"{'benchmark':<30} {'len':>4} {'samples/s':>12} {'baseline/s':>12} {'speed-up':>9}")
    for row in rows:
        length = "" if row["length"] is None else str(row["length"])
        baseline = f"{row['baseline_samples_per_s']:>12.0f} {row['speedup']:>8.1f}x" if "speedup" in row else ""
        print(f"{row['name']:<30} {length:>4} {row['samples_per_s']:>12.0f} {baseline}")
    if args.json is not None:
        args.json.write_text(json.dumps({"min_time_s": args.min_time, "seed": args.seed, "results": rows}, indent=2))
    return 0
