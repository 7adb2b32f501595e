"""Trial bookkeeping for `vla-r1 trials` / `vla-r1 demo`: outcomes, the summary and its table.

ROS-free: the trial runner (rclpy) fills `TrialOutcome`s; everything computed from them lives here.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# Failure stages in pipeline order, as the planning node reports them (EpisodeRecord.failure_stage).
FAILURE_STAGES = ("parse", "lift", "safety", "ik", "grasp", "place", "execute", "cancelled", "timeout")
REWARD_KEYS = ("total", "format", "region", "trajectory")


@dataclass
class TrialOutcome:
    index: int
    seed: int
    instruction: str
    target: str
    success: bool
    failure_stage: str = ""  # "" on success, else one of FAILURE_STAGES
    message: str = ""
    episode_id: str = ""
    rewards: dict[str, float] = field(default_factory=dict)  # REWARD_KEYS present when the logger scored it
    stage_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95 % by default); (0, 1) when n = 0."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def _percentiles(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=float)
    return {
        "mean": float(array.mean()),
        "p50": float(np.percentile(array, 50)),
        "p95": float(np.percentile(array, 95)),
        "n": int(array.size),
    }


def summarize(outcomes: list[TrialOutcome]) -> dict[str, Any]:
    """The `summary.json` of a trial run."""
    n = len(outcomes)
    successes = sum(o.success for o in outcomes)
    failures = Counter(o.failure_stage for o in outcomes if not o.success)
    mean_rewards = {}
    for key in REWARD_KEYS:
        values = [o.rewards[key] for o in outcomes if key in o.rewards and o.rewards[key] is not None]
        mean_rewards[key] = float(np.mean(values)) if values else None
    stages = sorted({stage for o in outcomes for stage in o.stage_seconds})
    latency = {
        stage: _percentiles([o.stage_seconds[stage] for o in outcomes if stage in o.stage_seconds]) for stage in stages
    }
    if outcomes:
        latency["trial_wall"] = _percentiles([o.wall_seconds for o in outcomes])
    low, high = wilson_interval(successes, n)
    return {
        "n": n,
        "successes": successes,
        "success_rate": successes / n if n else 0.0,
        "wilson_95": [low, high],
        "failures": {stage: failures.get(stage, 0) for stage in FAILURE_STAGES}
        | {stage: count for stage, count in failures.items() if stage not in FAILURE_STAGES},
        "mean_rewards": mean_rewards,
        "latency_s": latency,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The terminal table of a summary."""
    low, high = summary["wilson_95"]
    lines = [
        f"trials            {summary['n']}",
        f"success rate      {summary['success_rate']:.1%}  ({summary['successes']}/{summary['n']}; "
        f"95% Wilson {low:.1%} – {high:.1%})",
        "failures by stage " + ("  ".join(f"{k}={v}" for k, v in summary["failures"].items() if v) or "none"),
        "mean rewards      "
        + "  ".join(f"{k}={'—' if v is None else f'{v:.3f}'}" for k, v in summary["mean_rewards"].items()),
        "latency (s)       stage            mean     p50      p95",
    ]
    for stage, stats in summary["latency_s"].items():
        lines.append(f"                  {stage:<16} {stats['mean']:<8.3f} {stats['p50']:<8.3f} {stats['p95']:.3f}")
    return "\n".join(lines)
