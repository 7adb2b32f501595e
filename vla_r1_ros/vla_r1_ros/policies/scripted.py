"""The scripted expert: a SIMULATOR-ONLY test and teaching policy. It is not VLA-R1 and not a model.

It reads the simulator's ground truth (the newest `Scene` from `workcell/scene`), finds the object the
instruction names and writes the answer a perfect VLA-R1 would give, in the model's exact text format
(`prompts.format_answer`): the target's segmentation box and the reference trajectory from the target's
top to the tray. With `path_convention="sharerobot"` the trajectory starts where the gripper is (its
projection into the image, clipped to the frame), as ShareRobot's end-effector trajectories do, then
follows the same reference; the planner accepts both (docs/planning.md, "Waypoint conventions").
It lets the rest of the graph (parser, lifting, planning, execution, reward logging) run end to end on
a machine without the model, and gives a known-correct answer to compare against.

Its `noise` is an error model (`core.error_model.ErrorModel`, documented there): mean box IoU, mean
trajectory RMSE on the paper's 0–1000 scale, a wrong-object rate and a parse-failure rate, written as a
preset (`none`, `paper` = VLA-R1-3B's in-domain IoU 36.51 / RMSE 71.12) or `key=value` pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from vla_r1_ros.core import prompts
from vla_r1_ros.core.config import PackageConfig
from vla_r1_ros.core.error_model import ErrorModel, parse_error_model
from vla_r1_ros.core.geometry import CameraIntrinsics, RigidTransform, camera_extrinsics
from vla_r1_ros.core.scene import (
    ObjectState,
    Scene,
    project_to_normalized,
    reference_box,
    reference_waypoints,
    resolve_target,
)
from vla_r1_ros.policies import PATH_CONVENTIONS
from vla_r1_ros.policies.base import TextCallback

log = logging.getLogger(__name__)


class ScriptedPolicyError(RuntimeError):
    """The scripted expert cannot answer at all (no ground truth received)."""


def _describe(obj: ObjectState) -> str:
    return f"{obj.colour} {obj.shape}"


def _side(x_normalized: float) -> str:
    return "on the left" if x_normalized < 0.4 else "on the right" if x_normalized > 0.6 else "in the middle"


class ScriptedExpertPolicy:
    """Simulator-only scripted expert (test/teaching policy; NOT the VLA-R1 model).

    `scene_source()` returns the newest ground-truth Scene or None. The image passed to `predict` is not
    looked at: the answer comes from the ground truth, in the camera model of config/camera.yaml (the
    one the simulator renders with).
    """

    name = "scripted"

    def __init__(
        self,
        camera_config: Mapping[str, Any],
        scene_source: Callable[[], Scene | None] | None = None,
        noise: str | ErrorModel = "none",
        seed: int = 0,
        path_convention: str = "carry",
    ):
        if path_convention not in PATH_CONVENTIONS:
            raise ValueError(f"path_convention must be one of {', '.join(PATH_CONVENTIONS)}, not {path_convention!r}")
        self.path_convention = path_convention
        self.noise = parse_error_model(noise)  # raises ErrorModelError (a ValueError) with the reason
        self.scene_source = scene_source
        self.rng = np.random.default_rng(seed)
        self.intrinsics = CameraIntrinsics.from_config(camera_config)
        self.base_T_camera: RigidTransform = camera_extrinsics(camera_config)
        spec = noise if isinstance(noise, str) else noise.spec
        self.model_id = f"scripted:simulator-expert(noise={spec}, path={path_convention})"

    def load(self) -> None:
        log.info("scripted expert (simulator-only test policy, not the VLA-R1 model), noise %s", self.noise)

    def predict(
        self,
        image: np.ndarray,
        instruction: str,
        tasks: Sequence[str],
        on_text: TextCallback | None = None,
    ) -> list[str]:
        scene = self.scene_source() if self.scene_source else None
        if scene is None:
            raise ScriptedPolicyError(
                "the scripted expert has no ground-truth scene yet (is workcell/scene published?)"
            )
        texts = self.answers(scene, instruction, tasks)
        if on_text:
            for task, text in zip(tasks, texts, strict=True):
                on_text(task, text)
        return texts

    def answers(self, scene: Scene, instruction: str, tasks: Sequence[str]) -> list[str]:
        """The expert's answer texts for one query, errors drawn from the policy's seeded RNG: one
        wrong-object draw for the whole query (its tasks describe the same object), then box, path and
        parse-failure draws per answer."""
        for task in tasks:
            if task not in prompts.TASKS:
                raise ValueError(f"unknown task {task!r}; expected one of {', '.join(prompts.TASKS)}")
        target = resolve_target(instruction, scene.objects)
        if target is None:
            return [
                self._cannot_answer(f"no single object in the scene matches the instruction {instruction!r}")
            ] * len(tasks)
        if not target.visible or target.bbox_px is None:
            return [self._cannot_answer(f"the {_describe(target)} is not visible in the image")] * len(tasks)
        if self.noise.wrong_object > 0 and self.rng.random() < self.noise.wrong_object:
            others = [o for o in scene.objects if o.name != target.name and o.visible and o.bbox_px is not None]
            if others:
                target = others[self.rng.integers(len(others))]
        texts = []
        for task in tasks:
            text = self._affordance(target) if task == prompts.AFFORDANCE else self._trajectory(scene, target)
            if self.noise.parse_fail > 0 and self.rng.random() < self.noise.parse_fail:
                text = text.replace("</output>", "")
            texts.append(text)
        return texts

    def answer(self, scene: Scene, instruction: str, task: str) -> str:
        """The expert's answer text for one task (a query of its own: `answers(…, [task])`)."""
        return self.answers(scene, instruction, [task])[0]

    @staticmethod
    def _cannot_answer(reason: str) -> str:
        # An honest refusal in the model's style: reasoning, but no <output>, so it fails parsing.
        return f"<think> I cannot locate the target: {reason}. </think> so, I cannot give an answer."

    def _affordance(self, target: ObjectState) -> str:
        cx, cy, w, h = self.noise.draw_box(reference_box(target, self.intrinsics), self.rng)
        reasoning = (
            f"The instruction asks for the {_describe(target)}. It stands {_side(cx)} of the table, "
            f"so the region to grasp is its box around ({cx:.2f}, {cy:.2f})."
        )
        return prompts.format_answer(reasoning, (cx, cy, w, h))

    def _trajectory(self, scene: Scene, target: ObjectState) -> str:
        exact = np.clip(reference_waypoints(scene, target, self.intrinsics, self.base_T_camera), 0.0, 1.0)
        carry = self.noise.draw_path(exact, self.rng)
        start, end = carry[0], carry[-1]
        waypoints = carry
        if self.path_convention == "sharerobot":  # ShareRobot: the end-effector's path, from the gripper
            gripper = project_to_normalized(np.array([scene.ee_position]), self.intrinsics, self.base_T_camera)
            waypoints = np.vstack([np.clip(gripper, 0.0, 1.0), carry])
        reasoning = (
            f"The end-effector goes to the {_describe(target)} {_side(start[0])}, picks it up and carries it to "
            f"the tray {_side(end[0])} in {len(waypoints)} steps."
        )
        return prompts.format_answer(reasoning, waypoints)


# ---- measuring the error model ------------------------------------------------------------------------


def sim_scenes(config: PackageConfig, count: int, seed: int = 0) -> list[Scene]:
    """`count` simulator layouts (seeds seed..seed+count-1) with rendered segmentation boxes."""
    from vla_r1_ros.sim.workcell import Workcell

    with Workcell(config) as workcell:
        return [workcell.reset(seed + i) for i in range(count)]


def error_statistics(
    camera_config: Mapping[str, Any], scenes: Iterable[Scene], noise: str | ErrorModel, draws: int = 10, seed: int = 0
) -> dict:
    """The paper's metrics (`core.metrics.evaluate`) of the scripted expert with `noise` against its own
    exact answers, plus the realized wrong-object rate.

    Every visible object of every scene is a target, asked `draws` times (one query of both tasks each).
    IoU is on the 0–1 scale here (parse failures count 0, as in core.metrics); DFD / HD / RMSE on the
    0–1000 scale over parsed trajectories. `wrong_object` is the fraction of parsed boxes that overlap
    another object's exact box more than the target's.
    """
    from vla_r1_ros.core import metrics
    from vla_r1_ros.core.parsing import parse_answer

    exact = ScriptedExpertPolicy(camera_config)
    noisy = ScriptedExpertPolicy(camera_config, noise=noise, seed=seed)
    samples, wrong, boxes = [], 0, 0
    for scene in scenes:
        for target in scene.objects:
            if not target.visible or target.bbox_px is None:
                continue
            instruction = f"put the {target.colour} {target.shape} in the tray"
            references = exact.answers(scene, instruction, prompts.TASKS)
            for _ in range(draws):
                for task, text, reference in zip(
                    prompts.TASKS, noisy.answers(scene, instruction, prompts.TASKS), references, strict=True
                ):
                    samples.append({"task": task, "prediction": text, "reference": reference})
                    box = parse_answer(text, task).box if task == prompts.AFFORDANCE else None
                    if box is not None:
                        boxes += 1
                        wrong += _names_another_object(box, target, scene, exact.intrinsics)
    summary = metrics.evaluate(samples)
    trajectory = summary["trajectory"]
    return {
        "n": summary["affordance"]["n"],
        "iou": summary["affordance"]["iou"] / metrics.IOU_SCALE,
        "dfd": trajectory["dfd"],
        "hd": trajectory["hd"],
        "rmse": trajectory["rmse"],
        "parse_fail": summary["parse_failures"] / len(samples),
        "wrong_object": wrong / boxes if boxes else 0.0,
    }


def _names_another_object(
    box: Sequence[float], target: ObjectState, scene: Scene, intrinsics: CameraIntrinsics
) -> bool:
    """The box overlaps another visible object's exact box more than the target's (unambiguous for exact
    boxes; a very noisy box of the target can look like a neighbour's)."""
    from vla_r1_ros.core.metrics import iou

    overlaps = {o.name: iou(box, reference_box(o, intrinsics)) for o in scene.objects if o.bbox_px is not None}
    best = max(overlaps, key=overlaps.get)
    return best != target.name and overlaps[best] > overlaps[target.name]
