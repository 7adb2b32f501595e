"""How often the camera judge agrees with the simulator's: random layouts, each registered from one frame,
a random trial end arranged in the simulator (vla_r1_ros.testing.arrange), the camera's verdict on the
before/after frames against judge_sim_placement on the simulator's state (docs/unattended.md).

    python scripts/measure_vision_judge.py --seeds 300:450 [--outcomes tossed,beside,...]
"""

from __future__ import annotations

import argparse

import numpy as np

from vla_r1_ros.core.config import PackageConfig
from vla_r1_ros.core.geometry import camera_extrinsics
from vla_r1_ros.core.object_registry import register_objects
from vla_r1_ros.core.outcomes import judge_sim_placement
from vla_r1_ros.core.scene import sim_marks
from vla_r1_ros.core.tray import TrayPose
from vla_r1_ros.core.vision_judge import JudgeSettings, judge_trial
from vla_r1_ros.sim.workcell import Workcell
from vla_r1_ros.testing.arrange import OUTCOMES, arrange_outcome, sim_in_tray, view_of


def agrees(verdict, truth) -> bool:
    """Same success and stage; the simulator's `place` is the camera's `grasp` for an object never moved."""
    same_stage = verdict.failure_stage == truth.failure_stage or (truth.failure_stage, verdict.failure_stage) == (
        "place",
        "grasp",
    )
    return verdict.success == truth.success and same_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0:100", help="first:last (exclusive) layout seeds")
    parser.add_argument("--outcomes", default=",".join(OUTCOMES), help="comma-separated, drawn at random")
    args = parser.parse_args()
    first, last = (int(v) for v in args.seeds.split(":"))
    outcomes = args.outcomes.split(",")
    config = PackageConfig.load()
    settings = JudgeSettings.from_config(config.workspace, config.camera)
    base_T_camera = camera_extrinsics(config.camera)
    counts = {"layouts": 0, "judged": 0, "agree": 0, "false_success": 0}
    with Workcell(config) as workcell:
        for seed in range(first, last):
            rng = np.random.default_rng(seed)
            workcell.reset(seed, int(rng.integers(3, 7)))
            frame, scene = workcell.capture()
            expected = TrayPose(np.array(scene.tray.position), np.array(scene.tray.size))
            marks = sim_marks(scene, frame.intrinsics, base_T_camera)
            registry = register_objects(view_of(frame, config.camera), marks, expected, settings.segmentation)
            kind = outcomes[int(rng.integers(len(outcomes)))]
            before, _ = workcell.capture()
            arranged = arrange_outcome(workcell, rng, kind)
            after, scene_after = workcell.capture()
            truth = judge_sim_placement(arranged.instruction, scene_after.objects, sim_in_tray(workcell, arranged))
            verdict = judge_trial(
                view_of(before, config.camera),
                view_of(after, config.camera),
                registry,
                arranged.instruction,
                arranged.gripper_width_m,
                settings,
                gripper_opening_m=2 * config.workcell["gripper"]["open_m"],
            )
            counts["layouts"] += 1
            counts["judged"] += verdict.judged
            counts["agree"] += verdict.judged and agrees(verdict, truth)
            counts["false_success"] += verdict.judged and verdict.success and not truth.success
            print(f"{seed} {kind}: simulator {truth.failure_stage or 'success'}, camera {verdict.message}", flush=True)
    print(counts)


if __name__ == "__main__":
    main()
