"""episode.json and its index line: what a trial becomes on disk, and back."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from vla_r1_ros.core.episodes.layout import COLOR_FILE, DEPTH_FILE, DEPTH_UNITS_M, EPISODES_DIR, SCHEMA_VERSION
from vla_r1_ros.core.episodes.record import CameraFrame, TrialLog
from vla_r1_ros.core.episodes.references import References, episode_rewards
from vla_r1_ros.core.prediction import Prediction


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
        "rewards": {key: rewards_[key] for key in ("format", "region", "trajectory", "total", "success")},
        "stage_seconds": document["timings"],
        "has_color": document["files"]["color"] is not None,
        "has_depth": document["files"]["depth"] is not None,
        "notes": document["notes"],
        "run_config": document.get("run_config"),
    }
