"""What a trial achieved, and who says so: the one failure-stage taxonomy, what an executor reports
(`ExecutionResult`) and the simulator's judge.

Every trial ends with `success`, a `failure_stage` (one of `FailureStage`, "" on success or while the
outcome is unknown) and an `outcome_source` (`OutcomeSource`): who judged it. Only a judged trial counts
in a success rate; a dry run or an executed real-arm trial nobody has looked at yet does not (a real
gripper that closed on nothing is a judge: that grasp certainly failed).

Every reader of a log (summary, report, eval, export, label page) takes an episode's outcome from one
function, `episode_outcome`: the judgement in its `labels.json` when there is one (an operator's),
else the logged outcome — and only a judged success is a success: an executed real-arm trial nobody
judged stays "not judged" everywhere.

The simulator's judge (`judge_sim_placement`) is the only place the simulator decides success: the
object the INSTRUCTION names (`core.scene.resolve_target`) must end resting in the tray. Another object
there is `wrong_object`, nothing there is `place`. Plain Python, no simulator import: the executor
passes what the physics says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal

import numpy as np

from vla_r1_ros.core.scene import ObjectState, resolve_target


class FailureStage(StrEnum):
    """Where a trial stopped being able to succeed, in pipeline order."""

    PARSE = "parse"  # no usable answer: it did not parse, or lacks the box or the waypoints
    LIFT = "lift"  # the box or path could not be lifted to 3-D (no depth, stale frame, off the table)
    SAFETY = "safety"  # the plan broke a safety limit (workspace, speed, table clearance, gripper span)
    COLLISION = "collision"  # the planner or the arm reported a collision
    IK = "ik"  # a pose of the plan is out of the arm's reach
    GRASP = "grasp"  # the gripper closed on nothing, on several objects, or the object slipped
    WRONG_OBJECT = "wrong_object"  # an object ended in the tray, but not the one the instruction named
    PLACE = "place"  # nothing (or not the grasped object) ended resting in the tray
    EXECUTE = "execute"  # the motion itself failed (tracking error, controller abort, arm not at start)
    TIMEOUT = "timeout"  # a step (camera frame, prediction, the whole trial) did not finish in time
    CANCELLED = "cancelled"  # stopped by its client, `vla_r1/stop` or Ctrl-C
    DRY_RUN = "dry_run"  # plan only: validated and not executed — never a success
    INTERNAL = "internal"  # a bug in our code ended the trial: never judged, never the policy's failure


FAILURE_STAGES: tuple[str, ...] = tuple(stage.value for stage in FailureStage)

# Trials that end at these stages never moved the arm toward the object: nothing was achieved, and the
# pipeline itself knows it (no simulator, gripper or operator needed).
BEFORE_MOTION: frozenset[str] = frozenset(
    {FailureStage.PARSE, FailureStage.LIFT, FailureStage.SAFETY, FailureStage.COLLISION, FailureStage.IK}
)
# Trials that end at these stages are never judged, whoever looks: a dry run tried nothing, and an
# internal error is a bug of ours, not the policy's failure.
NEVER_JUDGED: frozenset[str] = frozenset({FailureStage.DRY_RUN, FailureStage.INTERNAL})


class OutcomeSource(StrEnum):
    """Who judged a trial's outcome."""

    SIMULATOR = "simulator"  # physics ground truth: which objects rest in the tray at the end
    GRIPPER = "gripper"  # a real gripper's sensing: it closed on nothing (a certain grasp failure)
    OPERATOR = "operator"  # a person looked at the scene after the trial (`--judge`, the label page)
    VISION = "vision"  # the camera judge: the frame sets before and after the trial (core.vision_judge)
    PIPELINE = "pipeline"  # the trial ended before the arm moved (BEFORE_MOTION): certainly no success
    NONE = "none"  # nobody judged it (a dry run, an executed real-arm trial not yet judged)


OUTCOME_SOURCES: tuple[str, ...] = tuple(source.value for source in OutcomeSource)
# Who judges an executed trial (the planning node's `judge`): "" the executor (the simulator; on a real arm
# nobody but an empty gripper), or the camera judge.
JUDGES: tuple[str, ...] = ("", OutcomeSource.VISION.value)


def is_judged(outcome_source: str, failure_stage: str = "") -> bool:
    """Whether a trial counts in a success rate: someone judged it, and it was neither a dry run nor
    ended by a bug of ours (`internal`)."""
    return outcome_source != OutcomeSource.NONE and failure_stage not in NEVER_JUDGED


def source_without_record(success: bool, failure_stage: str, judge: str) -> str:
    """The outcome_source of a trial whose record does not carry one: `pipeline` when it ended before
    the arm moved (BEFORE_MOTION), `none` for a dry run, an internal error or a failure without a stage (nobody could
    judge it), else `judge` — who could see the end state (`simulator` in a simulated trial, `none` on a
    real arm until an operator judges it)."""
    if failure_stage in BEFORE_MOTION:
        return OutcomeSource.PIPELINE
    if failure_stage in NEVER_JUDGED or (not success and not failure_stage):
        return OutcomeSource.NONE
    return OutcomeSource(judge)


# Stages a trial reaches only after the policy answered on the trial's frames: a record that ends at one
# of them (or succeeds) must carry those frames and that answer.
AFTER_AN_ANSWER: frozenset[str] = BEFORE_MOTION | {
    FailureStage.GRASP,
    FailureStage.WRONG_OBJECT,
    FailureStage.PLACE,
    FailureStage.EXECUTE,
    FailureStage.DRY_RUN,
}
TRIAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")  # core.trial_flow.new_trial_id's, and tests'


def unsupported_claim(
    trial_id: str,
    success: bool,
    failure_stage: str,
    outcome_source: str,
    *,
    has_frames: bool,
    has_prediction: bool,
    has_scene: bool,
    has_after_frames: bool,
) -> str:
    """Why a trial record claims an outcome its own evidence does not support ("" when it does): what
    the reward logger refuses to write (a forged or broken record must not become a logged success).
    Every record the pipeline makes passes: a success or a stage after the policy answered carries the
    frame set (colour, depth, camera info) and the answer; the simulator judges only with its scene, the
    camera judge only with its after frame set;
    the pipeline's verdict is a failure before motion; a gripper's only a failure; a trial that timed
    out, was cancelled or hit a bug may carry nothing."""
    if not TRIAL_ID.fullmatch(trial_id):
        return f"trial id {trial_id[:80]!r} is not a trial id (letters, digits, '._:-', at most 128)"
    if outcome_source not in OUTCOME_SOURCES:
        return f"outcome_source {outcome_source[:80]!r} is not one of {', '.join(OUTCOME_SOURCES)}"
    if failure_stage and failure_stage not in FAILURE_STAGES:
        return f"failure_stage {failure_stage[:80]!r} is not one of {', '.join(FAILURE_STAGES)}"
    if success and failure_stage:
        return f"a success with failure_stage {failure_stage!r}"
    if success and outcome_source in (OutcomeSource.PIPELINE, OutcomeSource.GRIPPER):
        return f"a success judged by {outcome_source}, which only ever judges a failure"
    if outcome_source == OutcomeSource.PIPELINE and failure_stage not in BEFORE_MOTION:
        before = ", ".join(sorted(BEFORE_MOTION))
        return f"the pipeline judges only failures before motion ({before}), not {failure_stage!r}"
    if outcome_source == OutcomeSource.SIMULATOR and not has_scene:
        return "judged by the simulator without the simulator's scene (has_scene false)"
    if outcome_source == OutcomeSource.VISION and not has_after_frames:
        return "judged by the camera without the frame set it judged (has_after_frames false)"
    if success or failure_stage in AFTER_AN_ANSWER:
        claim = "a success" if success else f"a trial that ended at {failure_stage!r}"
        if not has_frames:
            return f"{claim} without its frame set (colour, depth and camera info)"
        if not has_prediction:
            return f"{claim} without the policy's answer (no prediction)"
    return ""


@dataclass(frozen=True)
class EpisodeOutcome:
    """What a logged episode achieved, once its labels are read (`episode_outcome`)."""

    success: bool  # a JUDGED success: never true for a trial nobody judged
    failure_stage: str  # "" on success or while not judged, else one of FAILURE_STAGES (or a logged unknown)
    message: str
    outcome_source: str  # who judged: one of OUTCOME_SOURCES

    @property
    def judged(self) -> bool:
        return is_judged(self.outcome_source, self.failure_stage)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "judged": self.judged}


def episode_outcome(document: Mapping[str, Any], labels: Mapping[str, Any]) -> EpisodeOutcome:
    """The effective outcome of a logged episode (`episode.json` as a dict, its labels or {}): the
    operator's judgement in labels.json when there is one, else the logged outcome. Who judged a logged
    outcome: its `outcome_source`; for a record without one (older logs) the simulator when the episode
    has simulator references, else nobody (`source_without_record`); a value that is not an
    OutcomeSource (an older MoveIt executor's "executor") judged nothing. Not judged: success false."""
    if "success" in labels:
        success = bool(labels["success"])
        return EpisodeOutcome(
            success, "" if success else str(labels.get("failure_stage", "")), str(labels.get("note", "")), "operator"
        )
    logged = document["outcome"]
    stage = str(logged.get("failure_stage") or "")
    source = logged.get("outcome_source") or ""
    if not source:
        simulated = document.get("references", {}).get("source") == OutcomeSource.SIMULATOR
        judge = OutcomeSource.SIMULATOR if simulated else OutcomeSource.NONE
        source = source_without_record(bool(logged["success"]), stage, judge)
    elif source not in OUTCOME_SOURCES:
        source = OutcomeSource.NONE
    judged = is_judged(source, stage)
    return EpisodeOutcome(
        judged and bool(logged["success"]), stage, str(logged.get("message", "")), str(OutcomeSource(source))
    )


@dataclass(frozen=True)
class Outcome:
    success: bool
    failure_stage: FailureStage | Literal[""]  # "" on success (or when not judged)
    outcome_source: OutcomeSource
    message: str
    target: str | None = None  # the object the instruction names, when it names exactly one


@dataclass
class ExecutionResult:
    """What an executor (executors/) reports of one validated plan it ran."""

    success: bool
    failure_stage: FailureStage | Literal[""] = ""  # "" on success or while nobody can tell
    message: str = ""
    ee_path: list[np.ndarray] = field(default_factory=list)  # TCP positions during execution, base frame
    held_object: str | None = None  # what the gripper held after closing, when the executor can tell
    # Who judged `success` / `failure_stage`: the simulator for the sim executor; on a real arm the
    # gripper for an empty grasp, else nobody (none) until an operator looks at the scene.
    outcome_source: OutcomeSource = OutcomeSource.NONE
    objects_in_tray: tuple[str, ...] = ()  # what rests in the tray at the end, when the executor can tell

    def fail(self, stage: FailureStage, message: str) -> ExecutionResult:
        """This result, ended at `stage` (success False)."""
        self.success, self.failure_stage, self.message = False, stage, message
        return self

    def unseen_by_the_camera(self) -> ExecutionResult:
        """This result for a trial whose camera does not show the simulator's world (a simulated arm
        standing in for a real one behind a recorded or real camera): the simulator's verdict is about
        a world the trial's frames do not show, so nobody judged the trial — as on a real arm."""
        if self.outcome_source == OutcomeSource.SIMULATOR:
            verdict = "success" if self.success else f"failure at {self.failure_stage}"
            self.success, self.failure_stage, self.outcome_source = False, "", OutcomeSource.NONE
            self.message = (
                f"not judged: the simulator's verdict ({verdict}: {self.message}) is about a world this trial's "
                "camera does not show"
            )
        return self


def judge_sim_placement(instruction: str, objects: Sequence[ObjectState], in_tray: Iterable[str]) -> Outcome:
    """The simulator's verdict once the arm has released: success only when the object the instruction
    names rests in the tray (other objects that also ended there do not undo that), `wrong_object` when
    only others do, `place` when none does. An instruction that names no single object cannot be
    judged (outcome_source none)."""
    in_tray = sorted(set(in_tray))
    target = resolve_target(instruction, objects)
    if target is None:
        return Outcome(
            False, "", OutcomeSource.NONE, f"the instruction names no single object: {instruction!r}; not judged"
        )
    if target.name in in_tray:
        others = [name for name in in_tray if name != target.name]
        extra = f" (also in the tray: {', '.join(others)})" if others else ""
        return Outcome(True, "", OutcomeSource.SIMULATOR, f"{target.name} placed in the tray{extra}", target.name)
    if in_tray:
        return Outcome(
            False,
            FailureStage.WRONG_OBJECT,
            OutcomeSource.SIMULATOR,
            f"the instruction names {target.name}, but the tray holds {', '.join(in_tray)}",
            target.name,
        )
    return Outcome(
        False, FailureStage.PLACE, OutcomeSource.SIMULATOR, f"{target.name} is not resting in the tray", target.name
    )
