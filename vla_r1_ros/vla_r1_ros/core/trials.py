"""Trial bookkeeping for `vla-r1 trials` / `vla-r1 demo`: outcomes, the summary and its table.

ROS-free: the trial runner (rclpy) fills `TrialOutcome`s; everything computed from them lives here.
Only judged trials count in a success rate (`core.outcomes.is_judged`): a dry run, or an executed
real-arm trial nobody has judged yet, is listed under `not_judged` and never counted as a success or a
failure. The summary says who judged (`judged_by`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from vla_r1_ros.core.outcomes import FAILURE_STAGES, NEVER_JUDGED, FailureStage, OutcomeSource, is_judged

REWARD_KEYS = ("total", "format", "region", "trajectory")


@dataclass
class TrialOutcome:
    index: int
    seed: int
    instruction: str
    target: str
    success: bool
    failure_stage: str = ""  # "" on success or while not judged, else one of core.outcomes.FAILURE_STAGES
    message: str = ""
    episode_id: str = ""
    rewards: dict[str, float] = field(default_factory=dict)  # REWARD_KEYS present when the logger scored it
    stage_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    outcome_source: str = OutcomeSource.NONE  # who judged success / failure_stage (core.outcomes)
    vision_judge: dict[str, Any] | None = None  # the camera judge's verdict in short (its index line's)
    simulator_success: bool | None = None  # the simulator's verdict beside the camera's, when both judged

    @property
    def judged(self) -> bool:
        return is_judged(self.outcome_source, self.failure_stage)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrialSettings:
    """A run of trials: how many, from which layout seed, and how long each may take or wait."""

    n: int
    seed: int
    trial_timeout_s: float = 120.0
    hold_limit_s: float = 600.0  # how long a trial waits for the graph to be able to run it; then the run stops
    per_scene: int = 1  # consecutive trials on one layout

    def layout_seed(self, index: int) -> int:
        return self.seed + index // self.per_scene


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


def _rate(successes: int, n: int) -> dict[str, Any]:
    return {
        "n": n,
        "successes": successes,
        "success_rate": successes / n if n else 0.0,
        "wilson_95": list(wilson_interval(successes, n)),
    }


def mean_rewards(outcomes: Sequence[TrialOutcome]) -> dict[str, float | None]:
    """Each of REWARD_KEYS averaged over the trials the logger scored for it (None: none was)."""
    means = {}
    for key in REWARD_KEYS:
        values = [o.rewards[key] for o in outcomes if o.rewards.get(key) is not None]
        means[key] = float(np.mean(values)) if values else None
    return means


def summarize(outcomes: list[TrialOutcome]) -> dict[str, Any]:
    """The `summary.json` of a trial run: success over judged trials only, who judged them, failures by
    stage, what was not judged and why, success per scene (layout seed), rewards and latency."""
    judged = [o for o in outcomes if o.judged]
    successes = sum(o.success for o in judged)
    failures = Counter(o.failure_stage for o in judged if not o.success)
    not_judged = Counter(o.failure_stage or "awaiting judgement" for o in outcomes if not o.judged)
    stages = sorted({stage for o in outcomes for stage in o.stage_seconds})
    latency = {
        stage: _percentiles([o.stage_seconds[stage] for o in outcomes if stage in o.stage_seconds]) for stage in stages
    }
    if outcomes:
        latency["trial_wall"] = _percentiles([o.wall_seconds for o in outcomes])
    per_scene: dict[str, dict[str, Any]] = {}
    for seed in sorted({o.seed for o in judged}):
        scene = [o for o in judged if o.seed == seed]
        per_scene[str(seed)] = _rate(sum(o.success for o in scene), len(scene))
    # Bugs of ours, not the policy's failures: named so that somebody fixes them.
    internal = [
        {"trial": o.index + 1, "episode_id": o.episode_id, "message": o.message.splitlines()[0] if o.message else ""}
        for o in outcomes
        if o.failure_stage == FailureStage.INTERNAL
    ]
    return (
        {
            "trials": len(outcomes),
            **_rate(successes, len(judged)),
            "judged_by": dict(sorted(Counter(str(o.outcome_source) for o in judged).items())),
            "not_judged": dict(not_judged),
            "failures": {stage: failures.get(stage, 0) for stage in FAILURE_STAGES if stage not in NEVER_JUDGED}
            | {stage: count for stage, count in failures.items() if stage not in FAILURE_STAGES},
            "per_scene": per_scene,
            "mean_rewards": mean_rewards(outcomes),
            "latency_s": latency,
        }
        | ({"internal_errors": internal} if internal else {})
        | vision_section(outcomes)
    )


def vision_section(outcomes: list[TrialOutcome]) -> dict[str, Any]:
    agreement = vision_judge_agreement(outcomes)
    return {} if agreement is None else {"vision_judge": agreement}


def vision_judge_agreement(outcomes: list[TrialOutcome]) -> dict[str, Any] | None:
    """summary.json's `vision_judge`: of the trials the camera judged (not those it handed to the operator)
    and the simulator judged too, how often the two agree, and how the camera erred: a false success (it
    saw the instructed object in the tray, the physics says not) is the error that flatters a policy.
    None when the camera judged nothing in this run."""
    seen = [o for o in outcomes if o.vision_judge is not None]
    if not seen:
        return None
    decided = [o for o in seen if o.vision_judge.get("judged") and not o.vision_judge.get("asks_operator")]
    audited = [o for o in decided if o.simulator_success is not None]
    camera = [(bool(o.vision_judge.get("success")), bool(o.simulator_success)) for o in audited]
    agree = sum(c == s for c, s in camera)
    return {
        "n": len(audited),
        "agree": agree,
        "agreement": agree / len(audited) if audited else None,
        "false_success": sum(c and not s for c, s in camera),
        "false_failure": sum(s and not c for c, s in camera),
        "asked_operator": len(seen) - len(decided),
        "judged_without_simulator": len(decided) - len(audited),
    }


def format_vision_judge(judge: dict[str, Any]) -> str:
    agreement = "" if judge["agreement"] is None else f" ({judge['agreement']:.1%})"
    return (
        f"camera judge      agrees with the simulator on {judge['agree']}/{judge['n']}{agreement}; "
        f"false successes {judge['false_success']}, false failures {judge['false_failure']}, "
        f"asked the operator {judge['asked_operator']}"
    )


def format_summary(summary: dict[str, Any]) -> str:
    """The terminal table of a summary."""
    low, high = summary["wilson_95"]
    judged_by = ", ".join(f"{source} {count}" for source, count in summary["judged_by"].items()) or "nobody"
    lines = [
        f"trials            {summary['trials']} ({summary['n']} judged by {judged_by})",
        *([f"stopped           {summary['not_run']} not run: {summary['stopped']}"] if summary.get("stopped") else []),
        *([f"not in the log    {', '.join(summary['unlogged'])}"] if summary.get("unlogged") else []),
        *(
            f"internal error    trial {error['trial']} ({error['episode_id'] or 'no episode'}): {error['message']}"
            for error in summary.get("internal_errors", [])
        ),
        f"success rate      {summary['success_rate']:.1%}  ({summary['successes']}/{summary['n']} judged; "
        f"95% Wilson {low:.1%} – {high:.1%})",
        "failures by stage " + ("  ".join(f"{k}={v}" for k, v in summary["failures"].items() if v) or "none"),
        "not judged        " + ("  ".join(f"{k}={v}" for k, v in summary["not_judged"].items()) or "none"),
        *([format_vision_judge(summary["vision_judge"])] if summary.get("vision_judge") else []),
        *(
            [
                "self-reset        {succeeded}/{attempts} succeeded, {operator_calls} operator calls, "
                "{teleports} teleports".format(**summary["self_reset"])
            ]
            if summary.get("self_reset")
            else []
        ),
        "mean rewards      "
        + "  ".join(f"{k}={'—' if v is None else f'{v:.3f}'}" for k, v in summary["mean_rewards"].items()),
    ]
    scenes = summary.get("per_scene", {})
    if any(scene["n"] > 1 for scene in scenes.values()):
        lines.append("per scene (seed)  scene    success      95% Wilson")
        for seed, scene in scenes.items():
            low, high = scene["wilson_95"]
            lines.append(
                f"                  {seed:<8} {scene['successes']:>3}/{scene['n']:<3} {scene['success_rate']:>6.1%}"
                f"  {low:.1%} – {high:.1%}"
            )
    lines.append("latency (s)       stage            mean     p50      p95")
    for stage, stats in summary["latency_s"].items():
        lines.append(f"                  {stage:<16} {stats['mean']:<8.3f} {stats['p50']:<8.3f} {stats['p95']:.3f}")
    return "\n".join(lines)


def compare_checkpoints(runs: Mapping[tuple[str, str], Sequence[TrialOutcome]]) -> list[dict[str, Any]]:
    """One row per (checkpoint, adapter): its trials, the judged ones, the success rate over those with
    its Wilson interval, and the mean rewards; in the order of `runs`."""
    return [
        {
            "checkpoint": checkpoint,
            "adapter": adapter,
            "trials": len(outcomes),
            **_rate(sum(o.success for o in outcomes if o.judged), sum(o.judged for o in outcomes)),
            "mean_rewards": mean_rewards(outcomes),
        }
        for (checkpoint, adapter), outcomes in runs.items()
    ]


def format_comparison(rows: Sequence[Mapping[str, Any]]) -> str:
    """The terminal table of `compare_checkpoints`: one line per checkpoint and adapter."""
    header = "checkpoint + adapter · trials · judged successes · rate (95% Wilson) · mean rewards"
    lines = [header]
    for row in rows:
        low, high = row["wilson_95"]
        rewards = "  ".join(f"{k}={'—' if v is None else f'{v:.3f}'}" for k, v in row["mean_rewards"].items())
        lines.append(f"{row['checkpoint']} + {row['adapter'] or 'no adapter'}")
        lines.append(
            f"    {row['trials']} trials  {row['successes']}/{row['n']} judged  {row['success_rate']:.1%} "
            f"({low:.1%} – {high:.1%})  {rewards}"
        )
    return "\n".join(lines)


def sweep_curve(vary: str, base: str, points: list[tuple[float, dict[str, Any]]]) -> dict[str, Any]:
    """The `sweep.json` of `vla-r1 sweep`: judged success rate and 95 % Wilson band per error level.

    `points`: (level of the `vary` key, that level's trial summary). `paper_level` is VLA-R1-3B's value
    of the key (paper Table III) where the paper reports one, else None.
    """
    from vla_r1_ros.core.error_model import PRESETS

    paper = PRESETS["paper"]
    return {
        "vary": vary,
        "base": base,
        "paper_level": getattr(paper, vary) if vary in ("iou", "rmse") else None,
        "points": [
            {
                "level": float(level),
                "noise": summary.get("noise"),
                **{key: summary[key] for key in ("n", "successes", "success_rate", "wilson_95")},
                "failures": {stage: count for stage, count in summary["failures"].items() if count},
                "judged_by": summary["judged_by"],
            }
            for level, summary in points
        ],
    }
