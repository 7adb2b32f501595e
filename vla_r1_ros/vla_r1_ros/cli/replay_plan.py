"""`vla-r1 replay-plan EPISODE_DIR [--prediction FILE]`: why was a trial refused? Offline, no robot.

Re-runs what the planning node did on a logged episode (docs/episodes.md): parse the model's answer
(the logged `raw_texts`, or another answer from `--prediction`), lift it through the episode's
`depth.png` and camera info, plan, and validate with every check. Validation needs an arm: the
simulated Panda (PyBullet, headless) at its home pose in the simulated workcell — what the sim
executor validates against — through `executors.base.validate_for`, the call the planning node makes.
The camera extrinsics are `config/camera.yaml`'s (an episode does not store them).

Prints one JSON object: `feasible`, `failed_check` (a planning check, `lift`, or `parse`), `reason`,
`pick` (grasp TCP position, base frame), `place` (release TCP position), `path` (the carry poses'
positions: the transport, raised to carry height), `lifted` (the box's surface point, every waypoint's
surface point, `pick_waypoint`: the index of the waypoint nearest the pick point), and `logged` (the
plan verdict the episode recorded). Exit 0 whether or not the plan is feasible; 2 for usage errors.

`--prediction FILE`: a JSON object {task: answer text} like the episode's `raw_texts`, or one answer's
text, which replaces the logged answer of the task its `<output>` parses as (box: affordance, list
of points: trajectory).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vla_r1_ros.core.config import PackageConfig


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("episode_dir", metavar="EPISODE_DIR", help="a logged episode: runs/<run>/episodes/<NNNNNN>")
    parser.add_argument("--prediction", metavar="FILE", help="another model answer (text, or JSON {task: text})")
    parser.add_argument(
        "--seed", type=int, default=0, help="simulator layout the arm is validated in (sim episodes: the trial's seed)"
    )
    parser.epilog = "example: vla-r1 replay-plan runs/demo/episodes/000003 --prediction answer.txt"


def _usage_error(message: str) -> int:
    print(f"vla-r1 replay-plan: error: {message}", file=sys.stderr)
    return 2


def _points(array: Any) -> list[list[float]]:
    import numpy as np

    return [[float(v) for v in row] for row in np.asarray(array, dtype=float).reshape(-1, 3)]


def answers_with_override(logged: dict[str, str], text: str) -> dict[str, str]:
    """The logged answers {task: text} with `text` (a --prediction file's content) put in: a JSON object
    of task -> text replaces those tasks; one answer replaces the task whose output kind it parses as."""
    from vla_r1_ros.core.parsing import parse_answer
    from vla_r1_ros.core.prompts import TASKS

    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        unknown = set(document) - set(TASKS)
        if unknown or not all(isinstance(v, str) for v in document.values()):
            raise ValueError(
                f"a JSON prediction maps tasks ({', '.join(TASKS)}) to answer texts; got keys {sorted(document)}"
            )
        return dict(logged) | document
    kinds = [task for task in TASKS if parse_answer(text, task).ok]
    if not kinds:
        errors = "; ".join(f"{task}: {parse_answer(text, task).error}" for task in TASKS)
        raise ValueError(f"the prediction parses as neither answer ({errors})")
    return dict(logged) | {kinds[0]: text}


def replay(
    document: dict[str, Any], depth: Any, answers: dict[str, str], arm: Any, config: PackageConfig
) -> dict[str, Any]:
    """Parse, lift, plan and validate one episode's frame (`depth`: its depth.png, in the episode's
    `depth_units_m`) against `arm`, with `config`'s camera extrinsics and workspace -> the JSON result."""
    from vla_r1_ros.core.geometry import CameraIntrinsics, camera_extrinsics
    from vla_r1_ros.core.lifting import LiftError, LiftParams, lift_prediction
    from vla_r1_ros.core.parsing import box_to_pixels, parse_answer, waypoints_to_pixels
    from vla_r1_ros.core.planning import (
        PlanningParams,
        PlanRejected,
        SafetyLimits,
        pick_waypoint_index,
        plan_pick_and_place,
    )
    from vla_r1_ros.core.prompts import AFFORDANCE, TRAJECTORY
    from vla_r1_ros.executors.base import validate_for

    camera, workspace = config.camera, config.workspace
    logged_plan = document.get("plan") or {}
    result: dict[str, Any] = {
        "episode": document.get("episode"),
        "instruction": document.get("instruction"),
        "feasible": False,
        "failed_check": None,
        "reason": None,
        "pick": None,
        "place": None,
        "path": None,
        "lifted": None,
        "logged": {key: logged_plan.get(key) for key in ("feasible", "failed_check", "reason")},
    }
    info = document["camera"]
    intrinsics = CameraIntrinsics.from_k(int(info["width"]), int(info["height"]), info["k"])
    parsed = {task: parse_answer(answers.get(task, ""), task) for task in (AFFORDANCE, TRAJECTORY)}
    failed = [f"{task}: {p.error}" for task, p in parsed.items() if not p.ok]
    if failed:
        return result | {"failed_check": "parse", "reason": "; ".join(failed)}
    optical = str(camera["frames"]["camera_optical"])
    if info.get("frame_id") and info["frame_id"] != optical:  # as the planning node refuses it
        reason = f"depth is in {info['frame_id']!r} but the extrinsics are for {optical!r}"
        return result | {"failed_check": "lift", "reason": reason}
    box_px = box_to_pixels(parsed[AFFORDANCE].box, intrinsics.width, intrinsics.height)
    waypoints_px = waypoints_to_pixels(parsed[TRAJECTORY].waypoints, intrinsics.width, intrinsics.height)
    base_T_camera = camera_extrinsics(camera)
    params = LiftParams.from_config(workspace, camera)
    params = replace(params, depth_units_m=float(document.get("depth_units_m", params.depth_units_m)))
    try:
        lifted = lift_prediction(depth, intrinsics, box_px, waypoints_px, params).transformed(
            base_T_camera, str(camera["frames"]["base"])
        )
    except LiftError as exc:
        return result | {"failed_check": "lift", "reason": str(exc)}
    result["lifted"] = {
        "grasp_surface_point": _points(lifted.grasp.point)[0],
        "surface_waypoints": _points(lifted.surface_waypoints),
        "pick_waypoint": pick_waypoint_index(lifted.surface_waypoints, lifted.grasp.point),
    }
    try:
        planning = PlanningParams.from_config(workspace)
        plan = plan_pick_and_place(lifted.grasp, lifted.surface_waypoints, planning)
        result |= {
            "pick": _points(plan.grasp.translation)[0],
            "place": _points(plan.place.translation)[0],
            "path": _points([pose.translation for pose in plan.carry_waypoints]),
        }
        validated = validate_for(arm, plan, SafetyLimits.from_config(workspace), planning)
    except PlanRejected as exc:
        return result | {"failed_check": exc.check, "reason": exc.reason, "grasps_tried": list(exc.grasps_tried)}
    return result | {"feasible": True, "grasps_tried": list(validated.grasps_tried)}


def run(args: argparse.Namespace) -> int:
    from vla_r1_ros.core.episodes import EpisodeStoreError, load_depth, load_episode

    folder = Path(args.episode_dir)
    root, name = folder.parent.parent, folder.name
    try:
        document = load_episode(root, name)
    except EpisodeStoreError as exc:
        return _usage_error(f"{folder} is not a logged episode: {exc}")
    if not document.get("camera"):
        return _usage_error(f"episode {name} has no camera info: the frame never reached the logger")
    depth = load_depth(root, name)
    if depth is None or not (document.get("files") or {}).get("depth"):
        return _usage_error(f"episode {name} has no depth.png: the depth frame never reached the logger")
    answers = dict((document.get("prediction") or {}).get("raw_texts") or {})
    if args.prediction:
        try:
            answers = answers_with_override(answers, Path(args.prediction).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return _usage_error(f"cannot use the prediction {args.prediction}: {exc}")

    from vla_r1_ros.core.config import PackageConfig
    from vla_r1_ros.executors.sim import SimArmExecutor
    from vla_r1_ros.sim.workcell import Workcell

    config = PackageConfig.load()
    with Workcell(config) as workcell:  # its constructor lays out seed 0
        if args.seed:
            workcell.reset(args.seed)
        output = replay(document, depth, answers, SimArmExecutor(workcell), config)
    print(json.dumps(output))
    return 0
