"""Simulated episodes to train and evaluate on, without the ROS graph: workcell layouts (`reset(seed)` +
`capture()`: real simulator frames and ground truth), one instruction per visible target, answered by a
policy (the scripted expert, or a model) and written with the episode store, whose rewards are the
logger's own (`core.episodes.episode_rewards`, references from the simulator's ground truth).

The arm is not run (training reads image, instruction and references, not the executed motion), so every
trial is logged as a dry run. Layouts are named by their seed: a split by layout is a split of seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_r1_ros.core import prompts
from vla_r1_ros.core.episodes import CameraFrame, EpisodeStore, TrialLog, select_references
from vla_r1_ros.core.prediction import Prediction
from vla_r1_ros.core.scene import Scene, make_instruction

# The answer texts (one per task, in `prompts.TASKS` order) of a policy to one query.
Answer = Callable[["LayoutQuery"], Sequence[str]]


@dataclass(frozen=True)
class LayoutQuery:
    """One instruction about one captured layout, with what scoring an answer to it needs."""

    layout_seed: int
    target: str  # the object the instruction names
    instruction: str
    frame: Any  # the workcell's RgbdFrame (colour, depth, intrinsics, stamp)
    scene: Scene
    base_T_camera: Any  # RigidTransform of the workcell's camera

    @property
    def trial_id(self) -> str:
        return f"layout{self.layout_seed}-{self.target}"


def layout_queries(config: Any, seeds: Iterable[int], targets_per_layout: int = 1) -> list[LayoutQuery]:
    """Up to `targets_per_layout` queries per layout seed, each about a different visible object (the
    instruction's wording drawn from the seed)."""
    from vla_r1_ros.sim.workcell import Workcell

    queries = []
    with Workcell(config) as cell:
        for seed in seeds:
            cell.reset(seed)
            frame, scene = cell.capture()
            rng = np.random.default_rng(seed)
            targets = [o for o in scene.objects if o.visible and o.bbox_px is not None][:targets_per_layout]
            queries.extend(
                LayoutQuery(seed, target.name, make_instruction(target, rng), frame, scene, cell.base_T_camera)
                for target in targets
            )
    return queries


def write_episodes(root: str | Path, queries: Sequence[LayoutQuery], answer: Answer, model_id: str, run: str) -> None:
    """One dry-run episode per query in the log at `root`, answered by `answer` and named by `model_id`;
    trial ids `<run>-<query>` (the store keeps one episode per trial id: each run needs its own name)."""
    with EpisodeStore(root) as store:
        for query in queries:
            frame = query.frame
            texts = tuple(answer(query))
            trial = TrialLog(
                trial_id=f"{run}-{query.trial_id}",
                instruction=query.instruction,
                stamp_ns=frame.stamp_ns,
                prediction=Prediction(query.instruction, prompts.TASKS, texts, frame.color.shape[1::-1], model_id),
                plan={},
                executed_ee_path=[],
                success=False,
                failure_stage="dry_run",
                message="plan only: the arm was not run",
            )
            intrinsics = frame.intrinsics
            camera_info = {"frame_id": frame.frame_id, "width": intrinsics.width, "height": intrinsics.height}
            camera_info["k"] = intrinsics.k.reshape(-1).tolist()
            references = select_references(
                trial, scene=query.scene, intrinsics=intrinsics, base_T_camera=query.base_T_camera
            )
            store.write(trial, CameraFrame(frame.color, frame.depth_mm, camera_info), references)


def write_expert_episodes(root: str | Path, config: Any, queries: Sequence[LayoutQuery], noise: str = "paper") -> None:
    """Episodes of `queries` answered by the scripted expert at error model `noise` (seeded per layout)."""
    from vla_r1_ros.policies.scripted import ScriptedExpertPolicy

    experts: dict[int, ScriptedExpertPolicy] = {}

    def expert_answer(query: LayoutQuery) -> list[str]:
        if query.layout_seed not in experts:
            experts[query.layout_seed] = ScriptedExpertPolicy(config.camera, noise=noise, seed=query.layout_seed)
        return experts[query.layout_seed].answers(query.scene, query.instruction, prompts.TASKS)

    write_episodes(root, queries, expert_answer, ScriptedExpertPolicy(config.camera, noise=noise).model_id, "expert")
