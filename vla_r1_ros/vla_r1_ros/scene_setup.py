"""How each trial's scene is set up: the `SceneSetup` seam of a run of trials (`trial_runner`).

`SimReset` resets the simulated workcell to the trial's layout seed and draws the target and the
instruction from the objects the camera shows; `LoggedLayouts` re-runs a self-reset run's logged layouts
and instructions in the simulator; `ManualReset` (a real arm) takes the instructions it was
given and waits until the operator has set the scene up — asking is the caller's (`confirm`: the CLI
reads stdin; this library never does); `SelfReset` has the arm put the scene back itself
(`vla_r1/self_reset`) and draws the target from the registered objects the camera verified on the table.
Each setup says who can see how a trial ended when the trial's record does not say (`judged_by`): the
simulator, or nobody until someone judges it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vla_r1_ros.core.config import PackageConfig
from vla_r1_ros.core.object_registry import ObjectRegistry, RegistryError
from vla_r1_ros.core.outcomes import OutcomeSource
from vla_r1_ros.core.scene import make_instruction
from vla_r1_ros.nodes.trial_client import GraphClient, GraphUnavailable

MAX_FAILED_RESETS = 3  # self-resets failed in a row before the run calls the operator (as AutoEval does)


class RunPaused(RuntimeError):
    """The run cannot go on without a person (the operator was called and nobody answered)."""


@dataclass(frozen=True)
class PreparedTrial:
    instruction: str
    target: str  # the object the instruction names; "" when nothing here knows it (a manual reset)


class SceneSetup(Protocol):
    judged_by: OutcomeSource
    needs_reset_service: bool

    def prepare(self, index: int, seed: int, rng: np.random.Generator) -> PreparedTrial:
        """Set the scene up for trial `index` (layout `seed`); TrialHeld when the graph cannot run it now."""
        ...


class SimReset:
    judged_by = OutcomeSource.SIMULATOR
    needs_reset_service = True

    def __init__(self, graph: GraphClient, num_objects: int = 0) -> None:
        """`num_objects`: objects per layout, 0 = the workcell's default."""
        self.graph = graph
        self.num_objects = num_objects

    def prepare(self, index: int, seed: int, rng: np.random.Generator) -> PreparedTrial:
        scene = self.graph.reset_layout(seed, self.num_objects)
        visible = [o for o in scene.objects if o.visible]
        if not visible:
            raise GraphUnavailable(f"layout {seed} has no visible object")
        target = visible[rng.integers(len(visible))]
        return PreparedTrial(make_instruction(target, rng), target.name)


class LoggedLayouts:
    """A `--reset self` run's layouts again, in the simulator: trial i starts from the layout the camera
    verified before trial i of that run (its summary.json `resets`: the last successful teleport or
    self-reset of each trial), the objects of its first layout's seed teleported there, with that
    trial's instruction (trials.json). The simulator judges, as with `SimReset`."""

    judged_by = OutcomeSource.SIMULATOR
    needs_reset_service = True

    def __init__(self, graph: GraphClient, run_dir: Path) -> None:
        self.graph = graph
        self.first_seed, self.trials = logged_layouts(run_dir)

    def prepare(self, index: int, seed: int, rng: np.random.Generator) -> PreparedTrial:
        layout, instruction, target = self.trials[index]
        self.graph.reset_layout(self.first_seed, len(layout), layout)
        return PreparedTrial(instruction, target)


def logged_layouts(run_dir: Path) -> tuple[int, list[tuple[dict[str, Any], str, str]]]:
    """The first layout's seed and, per trial of a `--reset self` run, (its verified layout, instruction,
    target); ValueError naming what the run lacks."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        trials = json.loads((run_dir / "trials.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{run_dir}: not a finished run of trials ({exc})") from None
    layouts: dict[int, dict[str, Any]] = {}
    for event in summary.get("resets") or []:
        if event.get("success") and event.get("layout"):
            layouts[int(event["trial"])] = event["layout"]  # the last one of a trial is what it ran on
    if not layouts:
        raise ValueError(f"{run_dir}: its summary logs no layouts (only a --reset self run does)")
    missing = [t["index"] for t in trials if t["index"] not in layouts]
    if missing:
        raise ValueError(f"{run_dir}: no verified layout for trials {missing}")
    return int(trials[0]["seed"]), [(layouts[t["index"]], t["instruction"], t["target"]) for t in trials]


class ManualReset:
    judged_by = OutcomeSource.NONE  # a real arm: nobody knows how it ended until someone judges it
    needs_reset_service = False

    def __init__(self, instructions: Sequence[str], confirm: Callable[[int, str], None]) -> None:
        """`confirm(index, instruction)` returns once the scene is set up for that instruction."""
        if not instructions:
            raise ValueError("a manual reset needs at least one instruction")
        self.instructions = tuple(instructions)
        self.confirm = confirm
        self._confirmed = -1  # a person set the scene up for this trial: a held trial does not ask again

    def prepare(self, index: int, seed: int, rng: np.random.Generator) -> PreparedTrial:
        instruction = self.instructions[index % len(self.instructions)]
        if self._confirmed != index:
            self.confirm(index, instruction)
            self._confirmed = index
        return PreparedTrial(instruction, "")


@dataclass
class ResetEvent:
    """One step of a self-reset run, for the run's timeline and summary."""

    trial: int  # the trial it set the scene up for (0-based)
    kind: str  # "teleport" (the simulator's reset, the first layout only) | "self_reset" | "operator"
    success: bool
    message: str
    layout: dict[str, Any] = field(default_factory=dict)  # name -> [x, y, yaw], verified (base frame)

    def to_json(self) -> dict[str, Any]:
        return {"trial": self.trial, "kind": self.kind, "success": self.success, "message": self.message} | (
            {"layout": self.layout} if self.layout else {}
        )


class SelfReset:
    """The arm puts the scene back before every trial (`vla_r1/self_reset`) and the camera verifies it; the
    target is drawn from the registered objects the verified layout holds. In the simulator the first
    layout comes from the simulator's teleport reset (`first_layout`, which also registers the objects from
    one frame set); on a real arm the scene is as the operator left it. After MAX_FAILED_RESETS failures
    in a row the operator is called (`call_operator(reason) -> bool`: True once a person has put the
    scene back), then the run goes on; nobody answering (False) pauses the run (RunPaused)."""

    judged_by = OutcomeSource.NONE  # the record says who judged (the camera); without one, nobody did
    needs_reset_service = False

    def __init__(
        self,
        graph: GraphClient,
        registry_path: Path,
        call_operator: Callable[[str], bool],
        first_layout: Callable[[int], dict[str, Any]] | None = None,
        stand_in: Callable[[], None] | None = None,
    ) -> None:
        """`first_layout(seed)`: the simulator's teleport reset of the first layout, returning its layout;
        `stand_in()`: a benchmark's stand-in for the person an operator call needs (the simulator's
        teleport back to the first layout), counted as an operator call and a teleport."""
        self.graph = graph
        self.registry_path = registry_path
        self.call_operator = call_operator
        self.first_layout = first_layout
        self.stand_in = stand_in
        self._first_seed = 0
        self.needs_reset_service = first_layout is not None
        self.events: list[ResetEvent] = []
        self._prepared = -1  # the trial whose scene is set up: a held trial does not reset again
        self._layout: dict[str, Any] = {}

    def prepare(self, index: int, seed: int, rng: np.random.Generator) -> PreparedTrial:
        if self._prepared != index:
            self._layout = self._set_up(index, seed)
            self._prepared = index
        registry = ObjectRegistry.load(self.registry_path)
        present = [o for o in registry.objects if o.name in self._layout]
        if not present:
            raise GraphUnavailable(f"the verified layout holds no registered object: {sorted(self._layout)}")
        target = present[rng.integers(len(present))]
        return PreparedTrial(make_instruction(target, rng), target.name)

    def _set_up(self, index: int, seed: int) -> dict[str, Any]:
        if index == 0 and self.first_layout is not None:
            self._first_seed = seed
            layout = self.first_layout(seed)
            self.events.append(ResetEvent(index, "teleport", True, "the simulator's reset", layout))
            return layout
        failures = 0
        while True:
            # A fresh draw of free spots per attempt, reproducible from the layout seed.
            response = self.graph.self_reset((seed * 1000 + len(self.events)) % 2**32)
            layout = json.loads(response.layout or "{}") if response.success else {}
            self.events.append(ResetEvent(index, "self_reset", bool(response.success), response.message, layout))
            if response.success:
                return layout
            failures += 1
            if failures >= MAX_FAILED_RESETS:
                reason = f"{failures} self-resets failed in a row, the last: {response.message}"
                if self.stand_in is not None:
                    self.stand_in()
                    self.events.append(ResetEvent(index, "operator", True, f"{reason} (the simulator stood in)"))
                    self.events.append(ResetEvent(index, "teleport", True, "the stand-in operator: the first layout"))
                    failures = 0
                    continue
                answered = self.call_operator(reason)
                self.events.append(ResetEvent(index, "operator", answered, reason))
                if not answered:
                    raise RunPaused(f"{reason}; the operator was called and nobody answered")
                failures = 0

    def summary(self) -> dict[str, Any]:
        """summary.json's `self_reset` (attempts, successes, operator calls, teleports) and `resets`: every
        teleport, self-reset and operator call in order, with the layouts made (to re-run them)."""
        resets = [e for e in self.events if e.kind == "self_reset"]
        counts = {
            "attempts": len(resets),
            "succeeded": sum(e.success for e in resets),
            "operator_calls": sum(e.kind == "operator" for e in self.events),
            "teleports": sum(e.kind == "teleport" for e in self.events),
        }
        return {"self_reset": counts, "resets": [event.to_json() for event in self.events]}


def sim_first_layout(
    graph: GraphClient, config: PackageConfig, registry_path: Path, num_objects: int = 0
) -> Callable[[int], dict[str, Any]]:
    """`SelfReset`'s first layout in the simulator: the simulator's teleport reset, then the objects
    registered from one frame set through the very code an operator's clicks go through — the simulator
    only says where to click (`sim_marks`) and where the tray stands to be measured — and the layout
    verified by the planning node's self-reset (which finds nothing to move)."""
    from vla_r1_ros.core.geometry import camera_extrinsics
    from vla_r1_ros.core.object_registry import register_objects
    from vla_r1_ros.core.scene import sim_marks
    from vla_r1_ros.core.tabletop import TabletopSettings
    from vla_r1_ros.core.tray import TrayPose
    from vla_r1_ros.nodes.episode_msgs import rgbd_view
    from vla_r1_ros.nodes.scene_msgs import scene_from_msg

    def first_layout(seed: int) -> dict[str, Any]:
        graph.reset_layout(seed, num_objects)
        frames = graph.frame_set()
        view = rgbd_view(frames, camera_extrinsics(config.camera))
        scene = scene_from_msg(frames.scene)  # this very frame's: a ball may still roll after the reset
        segmentation = TabletopSettings.from_config(config.workspace, config.camera)
        marks = sim_marks(scene, view.intrinsics, view.base_T_camera)
        try:
            registry = register_objects(view, marks, TrayPose.of(scene.tray), segmentation)
        except RegistryError as exc:
            raise GraphUnavailable(f"cannot register the objects of the first layout (seed {seed}): {exc}") from None
        registry.save(registry_path)
        # Verified as every later layout is: the planning node's self-reset, with nothing to move.
        check = graph.self_reset(seed)
        if not check.success:
            raise GraphUnavailable(f"the first layout (seed {seed}) does not verify: {check.message}")
        return json.loads(check.layout)

    return first_layout
