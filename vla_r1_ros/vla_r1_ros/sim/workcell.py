"""The simulated workcell: a PyBullet table, Franka Panda, tray and a seeded layout of graspable objects,
seen by an RGB-D camera whose intrinsics and pose come from config/camera.yaml.

This class puts the parts together and keeps the public API; each concern lives in its own module:
`layout` (table, camera mount, tray, objects), `arm` (joints, IK, joint-path motion), `gripper`
(fingers), `collision` (collision checks of arm samples), `rendering` (the camera and the renderer
thread) and `physics` (stepping and pacing).

Everything in the public API is in the ROBOT BASE frame (panda_link0), the frame of every plan; the
PyBullet world frame (table centre on the floor) stays inside the sim package. Each Workcell owns
private physics client ids (one for the scene, a kinematic copy of the arm for IK, another for collision
checks), so several can coexist.

Threads: a camera thread renders while an executor thread moves the arm or a reset settles. Every
pybullet call happens under `self.lock` (an RLock); long motions and the settling after a reset step
physics in short chunks and release the lock between chunks, so frames keep flowing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pybullet as p
import pybullet_data

from vla_r1_ros.cameras.base import RgbdFrame
from vla_r1_ros.core.collision import NOTHING_SEEN, Box, SeenObstacles, workcell_obstacles, world_T_base
from vla_r1_ros.core.config import PackageConfig
from vla_r1_ros.core.geometry import camera_extrinsics
from vla_r1_ros.core.scene import ObjectState, Scene
from vla_r1_ros.sim.arm import ARM_JOINT_NAMES, SimPanda
from vla_r1_ros.sim.collision import PandaCollisionChecker
from vla_r1_ros.sim.gripper import SimGripper
from vla_r1_ros.sim.layout import Body, Layout
from vla_r1_ros.sim.physics import PhysicsClock
from vla_r1_ros.sim.rendering import CameraRenderer, PixelBox, on_gl_thread, stdout_to_stderr


class Workcell:
    """The PyBullet workcell. Construct, `reset(seed)`, then `capture()` and the arm primitives."""

    arm_joint_names: tuple[str, ...] = ARM_JOINT_NAMES

    def __init__(self, config: PackageConfig, gui: bool = False) -> None:
        """The workcell of `config.workcell`, seen by the camera of `config.camera`."""
        self.config = config.workcell
        self.camera_config = config.camera
        self.gui = gui
        self.lock = threading.RLock()
        self._resetting = threading.Lock()

        # Frames: world_T_base from the config; the camera is mounted relative to the base.
        self.world_T_base = world_T_base(self.config)
        self.base_T_world = self.world_T_base.inverse()
        self.base_T_camera = camera_extrinsics(self.camera_config)
        self.world_T_camera = self.world_T_base @ self.base_T_camera

        self._client = p.connect(p.GUI if gui else p.DIRECT)
        if self._client < 0:
            raise RuntimeError("could not connect to PyBullet (a second --gui window in one process?)")
        self._closed = False
        self.clock = PhysicsClock(self._client, self.lock, self.config["physics"], gui)
        self.timestep = self.clock.timestep
        self.real_time_factor = self.clock.real_time_factor
        render = self.config["render"]
        self._renderer = CameraRenderer(
            self._client,
            render,
            self.camera_config,
            self.world_T_camera,
            self.world_T_base.rotation.apply(render["light_direction"]),
            gui,
        )
        on_gl_thread(self._renderer.load)
        self.renderer = self._renderer.name
        self.intrinsics = self._renderer.intrinsics
        self.arm = SimPanda(self.clock, self.config, self.world_T_base)
        self.gripper = SimGripper(self.clock, self.config)
        self.finger_joint_names = self.gripper.joint_names
        self.layout = Layout(self._client, self.config, self.world_T_base)
        self.collision = PandaCollisionChecker(self.config)

        self.seed = 0
        self._bodies: list[Body] = []
        self._tray: Body | None = None
        self._boxes: dict[int, tuple[PixelBox | None, bool]] = {}
        on_gl_thread(self._build)
        self.reset(0)

    # ----------------------------------------------------------------------------------------- setup

    def close(self) -> None:
        """Disconnect both physics clients (idempotent)."""
        if self._closed:
            return
        try:
            on_gl_thread(self._close)
        except RuntimeError:  # at interpreter exit the renderer thread is already gone: close from here
            self._close()

    def _close(self) -> None:
        with self.lock:
            if self._closed:
                return
            self._closed = True
            with stdout_to_stderr():
                self._renderer.unload()
                p.disconnect(physicsClientId=self._client)
            self.arm.close()
            self.collision.close()

    def __enter__(self) -> Workcell:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        """Make the world once, on the renderer thread (rendering.py): every body a layout can use."""
        with self.lock:
            c = self._client
            if self.gui:
                p.configureDebugVisualizer(p.COV_ENABLE_RENDERING, 0, physicsClientId=c)
            # Measured when loading the textured tray crashed 5 of 10 fresh builds without this reset
            # and none of 10 with it; the crash's cause, found later, was the tray texture's width
            # (sim/textures.py). The reset costs nothing and stays.
            p.resetSimulation(physicsClientId=c)
            physics = self.config["physics"]
            p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=c)
            p.setGravity(*physics["gravity"], physicsClientId=c)
            p.setPhysicsEngineParameter(
                fixedTimeStep=self.timestep, numSolverIterations=int(physics["solver_iterations"]), physicsClientId=c
            )
            self.arm.load()
            self.layout.build(self.camera_config)
            if self.gui:
                p.configureDebugVisualizer(p.COV_ENABLE_RENDERING, 1, physicsClientId=c)
                self.layout.aim_gui_camera()

    def reset(
        self, seed: int, num_objects: int | None = None, poses: Mapping[str, Sequence[float]] | None = None
    ) -> Scene:
        """Lay out the scene for `seed`: same seed, same layout, same physics, whatever came before.
        `poses` (name -> x, y, yaw in the base frame, a layout a self-reset logged) puts the seed's objects
        there instead of where the seed draws them.

        The bodies are made once (layout.py: rebuilding them leaked the renderer's memory); a reset parks
        every object and homes the arm, then places the tray and the drawn objects (tested: a layout is
        the same after any history of resets and motions). The lock is held only while bodies move, not
        while the new layout settles, so the camera keeps rendering during a reset (a frame then shows
        the layout settling, never a mix of two layouts). Resets run one at a time.
        """
        objects_cfg = self.config["objects"]
        count = int(num_objects if num_objects else objects_cfg["default_count"])
        lo, hi = int(objects_cfg["min_count"]), int(objects_cfg["max_count"])
        if not lo <= count <= hi:
            raise ValueError(f"num_objects must be in [{lo}, {hi}] (got {count})")
        palette = dict(objects_cfg["palette"])
        if count > len(palette):
            raise ValueError(f"num_objects {count} exceeds the {len(palette)} palette colours")
        rng = np.random.default_rng(int(seed))
        with self._resetting:
            with self.lock:
                self.seed = int(seed)
                self.layout.park_all()
                self.arm.teleport(self.arm.home_joints)
                self.gripper.attach(self.arm.uid)
                self._tray = self.layout.place_tray(rng)
                self._bodies = self.layout.place_objects(rng, count, palette, self._tray)
                if poses:
                    self.layout.place_at(self._bodies, poses)
                self._boxes = {}
                self._renderer.quiet_next_render = True  # the EGL plugin prints GL vendor lines after a layout
            self.clock.step(float(self.config["physics"]["settle_s"]))
            _, scene = self.capture()  # fills the segmentation boxes the Scene carries
        return scene

    # ------------------------------------------------------------------------------------ perception

    def capture(self) -> tuple[RgbdFrame, Scene]:
        """Render the camera: RGB, metric depth (uint16 mm), segmentation boxes; and the ground truth of
        the same physics instant."""
        return on_gl_thread(self._capture)

    def _capture(self) -> tuple[RgbdFrame, Scene]:
        with self.lock:
            color, depth_mm, seg = self._renderer.render()
            stamp_ns = time.time_ns()
            bodies = [*self._bodies, self._tray] if self._tray is not None else self._bodies
            self._boxes = {b.uid: self._renderer.segmentation_box(seg, b.uid) for b in bodies}
            scene = self._scene_locked()
        frame = RgbdFrame(color, depth_mm, self.intrinsics, stamp_ns)
        frame.frame_id = self._renderer.frame_id
        return frame, scene

    def scene(self) -> Scene:
        """Ground truth now, without rendering (boxes and visibility from the last capture)."""
        with self.lock:
            return self._scene_locked()

    def _scene_locked(self) -> Scene:
        assert self._tray is not None
        return Scene(
            seed=self.seed,
            objects=tuple(self._object_state(b) for b in self._bodies),
            tray=self._object_state(self._tray),
            ee_position=tuple(float(v) for v in self.ee_pose()[0]),
        )

    def obstacles(self, grasp_point: np.ndarray | None = None, seen: SeenObstacles = NOTHING_SEEN) -> list[Box]:
        """The workcell's collision boxes as they are now (core/collision.py): table, camera mount, tray
        (where `seen` measured it, else the scene's), every object but the one under `grasp_point` (with
        `collision.scene_objects`) and the depth clutter `seen` carries."""
        return workcell_obstacles(self.config, self.camera_config, self.scene(), grasp_point, seen)

    def _object_state(self, body: Body) -> ObjectState:
        return self.layout.object_state(body, *self._boxes.get(body.uid, (None, False)))

    def _body(self, name: str) -> Body:
        for body in self._bodies:
            if body.name == name:
                return body
        raise KeyError(f"no object named {name!r} (have: {[b.name for b in self._bodies]})")

    # ------------------------------------------------------------------------------------------- arm

    def joint_limits(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lower, upper, max_velocity) of the 7 arm joints (rad, rad/s), from the URDF."""
        return self.arm.lower.copy(), self.arm.upper.copy(), self.arm.max_velocity.copy()

    def joint_positions(self) -> np.ndarray:
        return self.arm.joint_positions()

    def finger_positions(self) -> np.ndarray:
        """Both finger joints (m from closed), in `finger_joint_names` order."""
        return self.gripper.positions()

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Grasp point (panda_grasptarget, between the fingertips): position and quat_xyzw, base frame."""
        return self.arm.ee_pose()

    def within_limits(self, joints: np.ndarray, tolerance: float = 1e-6) -> bool:
        return self.arm.within_limits(joints, tolerance)

    def solve_ik(self, position: Any, quat_xyzw: Any, seed_joints: Any = None) -> np.ndarray | None:
        """Arm joints that put the grasp point at the pose (base frame), or None (see SimPanda.solve_ik)."""
        return self.arm.solve_ik(position, quat_xyzw, seed_joints)

    def execute_joint_path(
        self,
        path: Any,
        speed_scaling: float = 0.5,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[np.ndarray]:
        """Move through joint waypoints (N, 7) from the current joints (see SimPanda.execute_joint_path);
        returns the grasp-point trace (base frame)."""
        return self.arm.execute_joint_path(path, speed_scaling, should_stop)

    def set_gripper(self, closed: bool) -> float:
        """Close or open the fingers and wait until they stop; returns the opening between them (m)."""
        return self.gripper.move(closed)

    def holding(self, name: str) -> bool:
        """Both fingers touch the object."""
        with self.lock:
            return self.gripper.touching(self._body(name).uid)

    def object_in_tray(self, name: str) -> bool:
        """The object rests inside the tray: centre within the tray's footprint, below its rim, not held."""
        with self.lock:
            assert self._tray is not None
            obj, _ = self.layout.pose_base(self._body(name))
            tray, _ = self.layout.pose_base(self._tray)
            inside = np.all(np.abs(obj[:2] - tray[:2]) < self._tray.size[:2] / 2 - 0.01)
            below_rim = tray[2] - self._tray.size[2] / 2 < obj[2] < tray[2] + self._tray.size[2] / 2 + 0.02
            return bool(inside and below_rim and not self.holding(name))

    def objects_in_tray(self) -> tuple[str, ...]:
        """Names of the objects resting in the tray now (`object_in_tray`), in spawn order."""
        with self.lock:
            return tuple(body.name for body in self._bodies if self.object_in_tray(body.name))

    def home(self, speed_scaling: float = 0.5, should_stop: Callable[[], bool] | None = None) -> list[np.ndarray]:
        """Move (not teleport: a held object stays held) to the configured home joints."""
        return self.execute_joint_path(self.arm.home_joints[None, :], speed_scaling, should_stop)

    @property
    def home_joints(self) -> np.ndarray:
        return self.arm.home_joints.copy()

    def step(self, seconds: float) -> None:
        """Advance physics with the current motor commands (e.g. let a released object settle)."""
        self.clock.step(seconds)
