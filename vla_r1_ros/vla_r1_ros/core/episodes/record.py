"""`TrialLog` and `CameraFrame`: one finished trial as the reward logger hands it to the store (no ROS)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla_r1_ros.core.geometry import CameraIntrinsics
from vla_r1_ros.core.prediction import Prediction


@dataclass(frozen=True)
class TrialLog:
    """One finished trial. `prediction` is what the robot acted on (raw text per task and its parse);
    `plan` is the ManipulationPlan as plain JSON (poses as {"position": [x, y, z], "orientation":
    [x, y, z, w]}); `outcome_source` says who judged `success` ("" = nobody could)."""

    trial_id: str
    instruction: str
    stamp_ns: int  # capture time of the trial's frame set
    prediction: Prediction
    plan: Mapping[str, Any]
    executed_ee_path: Sequence[Sequence[float]]  # (N, 3) end-effector positions, robot base frame
    success: bool
    failure_stage: str = ""
    outcome_source: str = ""
    message: str = ""
    prompts: tuple[str, ...] = ()  # the exact prompt text per task
    timings: Mapping[str, float] = field(default_factory=dict)  # stage -> seconds, in the order they ran
    camera_judgement: CameraJudgement | None = None  # the camera judge's evidence and verdict, when it judged
    simulator_verdict: SimulatorVerdict | None = None  # the simulator's own verdict, beside another judge's

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.prediction.tasks

    @property
    def raw_texts(self) -> dict[str, str]:
        return dict(zip(self.prediction.tasks, self.prediction.raw_texts, strict=True))


@dataclass(frozen=True)
class CameraFrame:
    """The camera frame a trial used; every part may be missing (a replayed or damaged record)."""

    color: np.ndarray | None = None  # (H, W, 3) uint8 RGB
    depth: np.ndarray | None = None  # (H, W) uint16 millimetres
    camera_info: Mapping[str, Any] | None = None  # frame_id, width, height, k (9), d, distortion_model

    @property
    def intrinsics(self) -> CameraIntrinsics | None:
        info = self.camera_info
        return None if info is None else CameraIntrinsics.from_k(info["width"], info["height"], info["k"])


@dataclass(frozen=True)
class CameraJudgement:
    """What the camera judge (`core.vision_judge`) saw and said of a trial: the frame set captured after
    it, the masks its verdict rests on, and the verdict (`VisionVerdict.to_json()`)."""

    after: CameraFrame
    masks: Mapping[str, np.ndarray] = field(default_factory=dict)  # name -> (H, W) bool
    verdict: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SimulatorVerdict:
    """The simulator's verdict of a trial another judge (the camera) judged: kept to audit that judge."""

    success: bool
    failure_stage: str = ""
