"""episode.json and its index line: what a trial becomes on disk, and back."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from vla_r1_ros.core.episodes.layout import (
    AFTER_COLOR_FILE,
    AFTER_DEPTH_FILE,
    COLOR_FILE,
    DEPTH_FILE,
    DEPTH_UNITS_M,
    EPISODES_DIR,
    JUDGE_MASK_FILE,
    SCHEMA_VERSION,
)
from vla_r1_ros.core.episodes.record import CameraFrame, CameraJudgement, TrialLog
from vla_r1_ros.core.episodes.references import References, episode_rewards
from vla_r1_ros.core.prediction import Prediction


def judgement_files(judgement: CameraJudgement | None) -> dict[str, Any]:
    """The files of the camera judge's evidence, by role (None for an image it does not have)."""
    if judgement is None:
        return {}
    return {
        "after_color": AFTER_COLOR_FILE if judgement.after.color is not None else None,
        "after_depth": AFTER_DEPTH_FILE if judgement.after.depth is not None else None,
        "judge_masks": {name: JUDGE_MASK_FILE.format(name) for name in judgement.masks},
    }


def judgement_json(record: TrialLog) -> dict[str, Any]:
    """episode.json's `vision_judge` (the camera's verdict, or None) and the simulator's verdict beside it."""
    simulator = record.simulator_verdict
    return {
        "vision_judge": None if record.camera_judgement is None else dict(record.camera_judgement.verdict),
        "simulator_success": None if simulator is None else simulator.success,
        "simulator_failure_stage": None if simulator is None else simulator.failure_stage,
    }


def episode_document(
    episode: str,
    record: TrialLog,
    frame: CameraFrame,
    references: References,
    notes: list[str],
    run_config: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The episode.json document of a trial (`frame` gives the camera info and which images exist;
    `run_config` names the configuration of the run that produced it, when the log holds one)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "episode": episode,
        "trial_id": record.trial_id,
        "stamp_ns": int(record.stamp_ns),
        "logged_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "instruction": record.instruction,
        "files": {
            "color": COLOR_FILE if frame.color is not None else None,
            "depth": DEPTH_FILE if frame.depth is not None else None,
            **judgement_files(record.camera_judgement),
        },
        "camera": None if frame.camera_info is None else dict(frame.camera_info),
        "depth_units_m": DEPTH_UNITS_M,
        "prompts": list(record.prompts),
        "prediction": record.prediction.to_json(),
        "plan": dict(record.plan),
        "executed_ee_path": [[float(v) for v in point] for point in record.executed_ee_path],
        "timings": {stage: float(seconds) for stage, seconds in record.timings.items()},
        "outcome": {
            "success": bool(record.success),
            "failure_stage": record.failure_stage,
            "outcome_source": record.outcome_source,
            "message": record.message,
        },
        **judgement_json(record),
        "references": references.to_json(),
        "rewards": episode_rewards(record, references),
        "notes": notes,
        "run_config": None if run_config is None else dict(run_config),
    }


def trial_from_document(document: Mapping[str, Any]) -> TrialLog:
    """The TrialLog an episode was written from (to re-score it, e.g. against operator labels)."""
    outcome = document["outcome"]
    return TrialLog(
        trial_id=document["trial_id"],
        instruction=document["instruction"],
        stamp_ns=int(document["stamp_ns"]),
        prediction=Prediction.from_json({"instruction": document["instruction"], **document["prediction"]}),
        plan=document["plan"],
        executed_ee_path=document["executed_ee_path"],
        success=bool(outcome["success"]),
        failure_stage=outcome["failure_stage"],
        outcome_source=outcome.get("outcome_source", ""),
        message=outcome["message"],
        prompts=tuple(document.get("prompts", ())),
        timings=document["timings"],
    )


def index_entry(document: Mapping[str, Any]) -> dict[str, Any]:
    """The index line of an episode: enough to filter and list without opening its folder."""
    rewards_ = document["rewards"]
    return {
        "schema_version": document["schema_version"],
        "episode": document["episode"],
        "dir": f"{EPISODES_DIR}/{document['episode']}",
        "trial_id": document["trial_id"],
        "stamp_ns": document["stamp_ns"],
        "logged_at": document["logged_at"],
        "instruction": document["instruction"],
        "tasks": document["prediction"]["tasks"],
        "success": document["outcome"]["success"],
        "failure_stage": document["outcome"]["failure_stage"],
        "outcome_source": document["outcome"].get("outcome_source", ""),
        "reference_source": document["references"]["source"],
        # Who else judged: the camera's verdict in short, and the simulator's beside it (older logs: None).
        "vision_judge": vision_summary(document.get("vision_judge")),
        "simulator_success": document.get("simulator_success"),
        "rewards": {key: rewards_[key] for key in ("format", "region", "trajectory", "total", "success")},
        "stage_seconds": document["timings"],
        "has_color": document["files"]["color"] is not None,
        "has_depth": document["files"]["depth"] is not None,
        "notes": document["notes"],
        "run_config": document.get("run_config"),
    }


def vision_summary(verdict: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The camera judge's verdict as an index line carries it (without its long lists)."""
    if verdict is None:
        return None
    keys = ("judged", "success", "failure_stage", "confidence", "asks_operator")
    return {key: verdict.get(key) for key in keys}
