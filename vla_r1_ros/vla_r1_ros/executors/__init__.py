"""Arm executors (one interface): the simulated Panda and MoveIt (moveit_py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vla_r1_ros.core.config import PackageConfig
    from vla_r1_ros.executors.base import ArmExecutor
    from vla_r1_ros.sim.workcell import Workcell


EXECUTORS = ("sim", "moveit")


def make_executor(name: str, config: PackageConfig, sim_workcell: Callable[[], Workcell] | None = None) -> ArmExecutor:
    """The executor named `name`. `sim_workcell` gives the simulated world the `sim` arm moves in (the
    caller decides which: in the sim stack it is the process's one workcell); `moveit` is set up from
    `config.moveit_py` (config/moveit_py.yaml, also handed to moveit_py as its file) and checks
    collisions against `config.workcell`'s `collision` boxes and the camera mount of `config.camera`.
    Imports are lazy: the sim needs no MoveIt and MoveIt no PyBullet."""
    if name == "sim":
        if sim_workcell is None:
            raise ValueError("executor 'sim' needs the workcell it moves in (sim_workcell)")
        from vla_r1_ros.executors.sim import SimArmExecutor

        return SimArmExecutor(sim_workcell())
    if name == "moveit":
        from vla_r1_ros.core.collision import CollisionWorld
        from vla_r1_ros.executors.moveit import MoveItExecutor, make_moveit_py

        settings = config.moveit_py["vla_r1"]
        world = CollisionWorld.from_config(config.workcell, config.camera)
        return MoveItExecutor(make_moveit_py(str(config.directory / "moveit_py.yaml"), settings), settings, world)
    raise ValueError(f"unknown executor {name!r}: use {' or '.join(EXECUTORS)}")
