"""How each trial's scene is set up: the `SceneSetup` seam of a run of trials (`trial_runner`).

`SimReset` resets the simulated workcell to the trial's layout seed and draws the target and the
instruction from the objects the camera shows; `ManualReset` (a real arm) takes the instructions it was
given and waits until the operator has set the scene up — asking is the caller's (`confirm`: the CLI
reads stdin; this library never does). Each setup says who can see how a trial ended when the trial's
record does not say (`judged_by`): the simulator, or nobody until someone judges it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from vla_r1_ros.core.outcomes import OutcomeSource
from vla_r1_ros.core.scene import make_instruction
from vla_r1_ros.nodes.trial_client import GraphClient, GraphUnavailable


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
