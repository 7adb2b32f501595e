"""Draw docs/figures/waypoint_conventions.png: the waypoint rule of core/planning.py on a rendered frame.

One simulator layout, the scripted expert's answer in both path conventions (carry: object -> tray;
ShareRobot: gripper -> object -> tray), lifted and planned by the package's own code: the waypoint
nearest the lifted pick point is circled, the transport after it is green, the approach before it grey,
the place (the path's end) a star. Run from the repository root with the package importable:

    PYTHONPATH=vla_r1_ros python scripts/waypoint_figure.py [docs/figures/waypoint_conventions.png]
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
import matplotlib.pyplot as plt

from vla_r1_ros.core import prompts
from vla_r1_ros.core.config import PackageConfig
from vla_r1_ros.core.geometry import camera_extrinsics
from vla_r1_ros.core.lifting import LiftParams, lift_prediction
from vla_r1_ros.core.parsing import box_to_pixels, parse_answer, waypoints_to_pixels
from vla_r1_ros.core.planning import PlanningParams, pick_waypoint_index, plan_pick_and_place
from vla_r1_ros.policies.scripted import ScriptedExpertPolicy
from vla_r1_ros.sim.workcell import Workcell

SEED = 6


def main(out: Path) -> None:
    config = PackageConfig.load()
    camera, workspace = config.camera, config.workspace
    base_T_camera = camera_extrinsics(camera)
    with Workcell(config) as workcell:
        workcell.reset(SEED)
        frame, scene = workcell.capture()
    k = frame.intrinsics
    target = next(o for o in scene.objects if o.bbox_px is not None)
    instruction = f"put the {target.colour} {target.shape} in the tray"
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.9))
    for ax, convention, title in zip(
        axes,
        ("carry", "sharerobot"),
        ("carry path: object → place", "ShareRobot path: gripper → object → place"),
        strict=True,
    ):
        expert = ScriptedExpertPolicy(camera, path_convention=convention)
        box = parse_answer(expert.answer(scene, instruction, prompts.AFFORDANCE), prompts.AFFORDANCE)
        path = parse_answer(expert.answer(scene, instruction, prompts.TRAJECTORY), prompts.TRAJECTORY)
        box_px = box_to_pixels(box.box, k.width, k.height)
        path_px = waypoints_to_pixels(path.waypoints, k.width, k.height)
        lifted = lift_prediction(
            frame.depth_mm, k, box_px, path_px, LiftParams.from_config(workspace, camera)
        ).transformed(base_T_camera, "panda_link0")
        pick = pick_waypoint_index(lifted.surface_waypoints, lifted.grasp.point)
        plan = plan_pick_and_place(lifted.grasp, lifted.surface_waypoints, PlanningParams.from_config(workspace))
        pick_px = k.project(base_T_camera.inverse().apply(lifted.grasp.point[None]))[0]

        ax.imshow(frame.color)
        x1, y1, x2, y2 = box_px
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="gold", lw=2, label="affordance box"))
        ax.plot(*pick_px, "x", color="gold", ms=12, mew=3, label="pick point (lifted box)")
        if pick > 0:
            ax.plot(*path_px[: pick + 1].T, "--o", color="0.6", lw=2, label="approach (ignored)")
        ax.plot(*path_px[pick:].T, "-o", color="limegreen", lw=3, label="transport")
        ax.plot(*path_px[pick], "o", ms=16, mfc="none", mec="red", mew=2.5, label="waypoint nearest the pick")
        ax.plot(*path_px[-1], "*", color="red", ms=18, label="place (path's end)")
        for i, (u, v) in enumerate(path_px):
            ax.annotate(str(i), (u, v), xytext=(6, -8), textcoords="offset points", color="white", weight="bold")
        place = plan.place.translation
        ax.set_title(
            f"{title}\npick waypoint {pick}; place at ({place[0]:.3f}, {place[1]:.3f}, {place[2]:.3f}) m", fontsize=10
        )
        ax.set_axis_off()
    axes[1].legend(loc="lower right", fontsize=8, framealpha=0.85)
    figure.suptitle(f"Waypoint rule on the simulator's frame (seed {SEED}, '{instruction}')", fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 0.94))
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90)
    print(out)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/figures/waypoint_conventions.png"))
