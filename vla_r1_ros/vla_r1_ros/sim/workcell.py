"""The simulated workcell: a PyBullet table, Franka Panda, tray and a seeded layout of graspable objects,
seen by an RGB-D camera whose intrinsics and pose come from config/camera.yaml.

Everything in the public API is in the ROBOT BASE frame (panda_link0), the frame of every plan; the
PyBullet world frame (table centre on the floor) stays inside this module. Each Workcell owns private
physics client ids (one for the scene, one kinematic copy of the arm for IK), so several can coexist.

Threads: a camera thread renders while an executor thread moves the arm. Every pybullet call happens
under `self.lock` (an RLock); long motions step physics in short chunks and release the lock between
chunks, so frames keep flowing during a motion.
"""

from __future__ import annotations

import contextlib
import math
import os
import pkgutil
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pybullet as p
import pybullet_data
from scipy.spatial.transform import Rotation

from vla_r1_ros.cameras.base import RgbdFrame
from vla_r1_ros.core.config import load_config
from vla_r1_ros.core.geometry import CameraIntrinsics, RigidTransform, camera_extrinsics
from vla_r1_ros.core.scene import ObjectState, Scene

ARM_JOINTS = 7
# OpenGL's camera looks down its -z with y up; the optical frame looks down +z with y down.
# PyBullet's EGL renderer draws with a GL context bound to the thread that loaded it, it learns about new
# and removed bodies in the thread that makes them, and its plugins share state across physics clients: a
# reset from another thread left every later frame showing the old scene, and two Workcells whose
# renderers lived on different threads crashed. So every Workcell of the process loads its renderer,
# resets (which rebuild all bodies), renders and closes on this one thread, whoever calls them.
_GL_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pybullet-gl")
_GL_THREAD_ID = _GL_THREAD.submit(threading.get_ident).result()

_OPTICAL_T_GL = RigidTransform(Rotation.from_euler("x", np.pi), np.zeros(3))


@dataclass
class _Body:
    """One spawned object (or the tray) and what the layout knows about it."""

    uid: int
    name: str
    colour: str
    shape: str
    size: np.ndarray  # extent in the body's own frame (m)
    centre_offset: np.ndarray  # centre of that extent in the body (centre-of-mass) frame


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """The EGL plugin prints GL vendor lines from C to fd 1; keep stdout clean for JSON output."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _white_texture_path() -> str:
    """A 2x2 white PNG. Replacing a mesh's texture with it leaves only the palette colour: PyBullet's
    `textureUniqueId=-1` does not remove a texture under the EGL renderer (the yellow duck texture
    would tint every duck)."""
    path = os.path.join(tempfile.gettempdir(), "vla_r1_white_texture.png")
    if not os.path.exists(path):

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        rows = b"".join(b"\x00" + b"\xff" * 6 for _ in range(2))
        png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
        png += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "wb") as handle:
            handle.write(png)
        os.replace(tmp, path)  # atomic: parallel test processes never read a half-written file
    return path


def projection_matrix(intrinsics: CameraIntrinsics, near: float, far: float) -> np.ndarray:
    """OpenGL projection (4x4, row-major) that reproduces the pinhole model exactly.

    Pixel (u, v) (centres at integers, v down) maps to NDC x = (2u + 1)/W - 1, y = 1 - (2v + 1)/H,
    so a point projects to the same pixel as `CameraIntrinsics.project` (no FOV/aspect rounding).
    """
    w, h = intrinsics.width, intrinsics.height
    return np.array(
        [
            [2 * intrinsics.fx / w, 0.0, 1 - (2 * intrinsics.cx + 1) / w, 0.0],
            [0.0, 2 * intrinsics.fy / h, (2 * intrinsics.cy + 1) / h - 1, 0.0],
            [0.0, 0.0, -(far + near) / (far - near), -2 * far * near / (far - near)],
            [0.0, 0.0, -1.0, 0.0],
        ]
    )


class Workcell:
    """The PyBullet workcell. Construct, `reset(seed)`, then `capture()` and the arm primitives."""

    arm_joint_names: tuple[str, ...] = tuple(f"panda_joint{i}" for i in range(1, ARM_JOINTS + 1))

    def __init__(
        self,
        workcell_config: dict[str, Any] | None = None,
        camera_config: dict[str, Any] | None = None,
        gui: bool = False,
    ) -> None:
        self.config = workcell_config if workcell_config is not None else load_config("workcell")
        self.camera_config = camera_config if camera_config is not None else load_config("camera")
        self.gui = gui
        self.lock = threading.RLock()

        cfg, robot = self.config, self.config["robot"]
        self.timestep = float(cfg["physics"]["timestep_s"])
        self._chunk = int(cfg["physics"]["control_chunk_steps"])
        self.real_time_factor = 1.0 if gui else float(cfg["physics"]["real_time_factor"])
        self.finger_joint_names: tuple[str, ...] = tuple(robot["finger_joint_names"])
        self._ee_link = int(robot["ee_link"])
        self._fingers = [int(j) for j in robot["finger_joints"]]
        self._home = np.asarray(robot["home_joints"], dtype=float)

        # Frames: world_T_base from the config; the camera is mounted relative to the base.
        self.world_T_base = RigidTransform(
            Rotation.from_euler("z", float(robot["base_yaw_rad"])), np.asarray(robot["base_position_world"], float)
        )
        self.base_T_world = self.world_T_base.inverse()
        self.intrinsics = CameraIntrinsics.from_config(self.camera_config)
        self.base_T_camera = camera_extrinsics(self.camera_config)
        self.world_T_camera = self.world_T_base @ self.base_T_camera
        render = cfg["render"]
        self._near, self._far = float(render["near_m"]), float(render["far_m"])
        depth = self.camera_config["depth"]
        self._depth_min, self._depth_max = float(depth["min_m"]), float(depth["max_m"])
        self._depth_units = float(depth["units_m"])
        gl_view = (self.world_T_camera @ _OPTICAL_T_GL).inverse().as_matrix()
        # pybullet takes OpenGL's column-major 16-float lists.
        self._view = gl_view.T.reshape(-1).tolist()
        self._proj = projection_matrix(self.intrinsics, self._near, self._far).T.reshape(-1).tolist()

        self._client = p.connect(p.GUI if gui else p.DIRECT)
        self._ik_client = p.connect(p.DIRECT)
        if self._client < 0 or self._ik_client < 0:
            raise RuntimeError("could not connect to PyBullet (a second --gui window in one process?)")
        self._closed = False
        self.renderer, self._renderer_flag, self._egl_plugin = self._on_gl_thread(
            self._select_renderer, str(render["renderer"])
        )
        self._quiet_next_render = True

        # The IK client holds a kinematic copy of the arm at the origin: it solves in the base frame
        # directly and never disturbs the simulated scene.
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self._ik_client)
        self._ik_robot = p.loadURDF(robot["urdf"], useFixedBase=True, physicsClientId=self._ik_client)
        infos = [p.getJointInfo(self._ik_robot, j, physicsClientId=self._ik_client) for j in range(ARM_JOINTS)]
        self._lower = np.array([i[8] for i in infos])
        self._upper = np.array([i[9] for i in infos])
        self._max_velocity = np.array([i[11] for i in infos])
        names = tuple(i[1].decode() for i in infos)
        if names != self.arm_joint_names:
            raise RuntimeError(f"unexpected arm joints in {robot['urdf']}: {names}")
        self._movable = [
            j
            for j in range(p.getNumJoints(self._ik_robot, physicsClientId=self._ik_client))
            if p.getJointInfo(self._ik_robot, j, physicsClientId=self._ik_client)[2] != p.JOINT_FIXED
        ]

        self.seed = 0
        self._bodies: list[_Body] = []
        self._tray: _Body | None = None
        self._boxes: dict[int, tuple[tuple[float, float, float, float] | None, bool]] = {}
        self._robot = -1
        self.reset(0)

    # ----------------------------------------------------------------------------------------- setup

    def _select_renderer(self, choice: str) -> tuple[str, int, int | None]:
        if self.gui:
            return "opengl-gui", p.ER_BULLET_HARDWARE_OPENGL, None
        if choice in ("auto", "egl"):
            loader = pkgutil.get_loader("eglRenderer")
            plugin = -1
            if loader is not None:
                with _stdout_to_stderr():
                    plugin = p.loadPlugin(loader.get_filename(), "_eglRendererPlugin", physicsClientId=self._client)
            if plugin >= 0:
                return "egl", p.ER_BULLET_HARDWARE_OPENGL, plugin
            if choice == "egl":
                raise RuntimeError("render.renderer is 'egl' but PyBullet's EGL renderer plugin did not load")
        return "tiny", p.ER_TINY_RENDERER, None

    @staticmethod
    def _on_gl_thread(function: Callable[..., Any], *args: Any) -> Any:
        """Run `function` on the process's renderer thread (directly when already there). Callers must
        not hold a Workcell's `lock`: the renderer thread takes it."""
        if threading.get_ident() == _GL_THREAD_ID:
            return function(*args)
        return _GL_THREAD.submit(function, *args).result()

    def close(self) -> None:
        """Disconnect both physics clients (idempotent)."""
        if self._closed:
            return
        try:
            self._on_gl_thread(self._close)
        except RuntimeError:  # at interpreter exit the renderer thread is already gone: close from here
            self._close()

    def _close(self) -> None:
        with self.lock:
            if self._closed:
                return
            self._closed = True
            with _stdout_to_stderr():
                if self._egl_plugin is not None:
                    p.unloadPlugin(self._egl_plugin, physicsClientId=self._client)
                p.disconnect(physicsClientId=self._client)
            p.disconnect(physicsClientId=self._ik_client)

    def __enter__(self) -> Workcell:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self, seed: int, num_objects: int | None = None) -> Scene:
        """Rebuild the scene from nothing for `seed`: same seed, same layout, same physics.

        The whole simulation is reset (not just the objects moved) so that a layout never depends on
        what happened before it: PyBullet's contact caches and body ids start fresh.
        """
        return self._on_gl_thread(self._reset, seed, num_objects)

    def _reset(self, seed: int, num_objects: int | None) -> Scene:
        objects_cfg = self.config["objects"]
        count = int(num_objects if num_objects else objects_cfg["default_count"])
        lo, hi = int(objects_cfg["min_count"]), int(objects_cfg["max_count"])
        if not lo <= count <= hi:
            raise ValueError(f"num_objects must be in [{lo}, {hi}] (got {count})")
        palette = dict(objects_cfg["palette"])
        if count > len(palette):
            raise ValueError(f"num_objects {count} exceeds the {len(palette)} palette colours")
        rng = np.random.default_rng(int(seed))
        with self.lock:
            c = self._client
            self.seed = int(seed)
            if self.gui:
                p.configureDebugVisualizer(p.COV_ENABLE_RENDERING, 0, physicsClientId=c)
            p.resetSimulation(physicsClientId=c)
            physics = self.config["physics"]
            p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=c)
            p.setGravity(*physics["gravity"], physicsClientId=c)
            p.setPhysicsEngineParameter(
                fixedTimeStep=self.timestep, numSolverIterations=int(physics["solver_iterations"]), physicsClientId=c
            )
            table = self.config["table"]
            p.loadURDF(table["urdf"], table["position_world"], useFixedBase=True, physicsClientId=c)
            self._load_robot()
            self._tray = self._spawn_tray(rng)
            self._bodies = self._spawn_objects(rng, count, palette)
            self._boxes = {}
            self._quiet_next_render = True
            if self.gui:
                p.configureDebugVisualizer(p.COV_ENABLE_RENDERING, 1, physicsClientId=c)
                self._aim_gui_camera()
            self._step(max(1, round(float(physics["settle_s"]) / self.timestep)))
            _, scene = self.capture()  # fills the segmentation boxes the Scene carries
        return scene

    def _load_robot(self) -> None:
        c, robot = self._client, self.config["robot"]
        self._robot = p.loadURDF(
            robot["urdf"],
            self.world_T_base.translation.tolist(),
            self.world_T_base.quat_xyzw.tolist(),
            useFixedBase=True,
            physicsClientId=c,
        )
        friction = float(self.config["gripper"]["finger_friction"])
        for finger in self._fingers:
            p.changeDynamics(self._robot, finger, lateralFriction=friction, spinningFriction=0.01, physicsClientId=c)
        self._teleport_arm(self._home, float(self.config["gripper"]["open_m"]))

    def _teleport_arm(self, joints: np.ndarray, finger: float) -> None:
        """Set joint states directly (reset only) and make the motors hold them."""
        c = self._client
        for j, q in enumerate(joints):
            p.resetJointState(self._robot, j, float(q), 0.0, physicsClientId=c)
        for f in self._fingers:
            p.resetJointState(self._robot, f, finger, 0.0, physicsClientId=c)
        self._command_arm(joints, np.zeros(ARM_JOINTS))
        self._command_fingers(finger)

    def _spawn_tray(self, rng: np.random.Generator) -> _Body:
        cfg, c = self.config["tray"], self._client
        uid = p.loadURDF(
            cfg["urdf"], [0, 0, 5.0], useFixedBase=True, globalScaling=float(cfg["scale"]), physicsClientId=c
        )
        size, offset = self._local_extent(uid)
        side = 1.0 if rng.random() < 0.5 else -1.0
        x = rng.uniform(*cfg["x_range"])
        y = side * rng.uniform(*cfg["abs_y_range"])
        body = _Body(uid, "tray", str(cfg["colour"]), "tray", size, offset)
        self._place(body, x, y, 0.0)
        return body

    def _make_shape(self, shape: str, rgba: list[float]) -> int:
        spec, c = self.config["objects"]["shapes"][shape], self._client
        if "urdf" in spec:
            uid = p.loadURDF(spec["urdf"], [0, 0, 5.0], globalScaling=float(spec["scale"]), physicsClientId=c)
            # A white texture replaces the mesh's own, so the colour is the palette colour and nothing else.
            texture = p.loadTexture(_white_texture_path(), physicsClientId=c)
            p.changeVisualShape(uid, -1, rgbaColor=rgba, textureUniqueId=texture, physicsClientId=c)
            return uid
        kind = spec["primitive"]
        if kind == "box":
            half = [s / 2 for s in spec["size"]]
            col = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=rgba, physicsClientId=c)
        elif kind == "cylinder":
            r, h = float(spec["radius"]), float(spec["height"])
            col = p.createCollisionShape(p.GEOM_CYLINDER, radius=r, height=h, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_CYLINDER, radius=r, length=h, rgbaColor=rgba, physicsClientId=c)
        elif kind == "sphere":
            r = float(spec["radius"])
            col = p.createCollisionShape(p.GEOM_SPHERE, radius=r, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_SPHERE, radius=r, rgbaColor=rgba, physicsClientId=c)
        else:
            raise ValueError(f"unknown primitive {kind!r} for shape {shape!r}")
        mass = float(self.config["objects"]["mass_kg"])
        return p.createMultiBody(mass, col, vis, [0, 0, 5.0], physicsClientId=c)

    def _spawn_objects(self, rng: np.random.Generator, count: int, palette: dict[str, list[float]]) -> list[_Body]:
        cfg, c = self.config["objects"], self._client
        shapes = list(cfg["shapes"])
        colours = [str(x) for x in rng.permutation(list(palette))[:count]]
        # Distinct shapes while there are enough of them, so every object differs in colour and shape.
        drawn = rng.permutation(shapes)[:count] if count <= len(shapes) else rng.choice(shapes, count)
        bodies = []
        for colour, shape in zip(colours, (str(s) for s in drawn), strict=True):
            uid = self._make_shape(shape, list(palette[colour]))
            size, offset = self._local_extent(uid)
            mass = float(cfg["mass_kg"])
            # Mesh URDFs carry placeholder inertias (1 kg·m²); use a solid box of the object's extent.
            inertia = [mass / 12 * (size[1] ** 2 + size[2] ** 2), mass / 12 * (size[0] ** 2 + size[2] ** 2)]
            inertia.append(mass / 12 * (size[0] ** 2 + size[1] ** 2))
            p.changeDynamics(
                uid,
                -1,
                mass=mass,
                localInertiaDiagonal=inertia,
                lateralFriction=float(cfg["lateral_friction"]),
                spinningFriction=float(cfg["spinning_friction"]),
                rollingFriction=float(cfg["rolling_friction"]),
                physicsClientId=c,
            )
            bodies.append(_Body(uid, f"{colour}_{shape}", colour, shape, size, offset))
        for body, (x, y, yaw) in zip(bodies, self._sample_layout(rng, bodies), strict=True):
            self._place(body, x, y, yaw)
        return bodies

    def _sample_layout(self, rng: np.random.Generator, bodies: list[_Body]) -> list[tuple[float, float, float]]:
        """Rejection-sample (x, y, yaw) in the base frame: footprints (bounding circles) keep a clear gap
        from each other and from the tray, so an open gripper fits around any object."""
        cfg = self.config["objects"]
        clearance = float(cfg["clearance_m"])
        assert self._tray is not None
        tray_xy = self._body_pose_base(self._tray)[0][:2]
        tray_half = self._tray.size[:2] / 2

        def fits(x: float, y: float, radius: float, placed: list[tuple[float, float, float, float]]) -> bool:
            gap_to_tray = np.linalg.norm(np.maximum(np.abs(np.array([x, y]) - tray_xy) - tray_half, 0.0))
            return gap_to_tray >= radius + clearance and all(
                math.hypot(x - px, y - py) >= radius + pr + clearance for px, py, _, pr in placed
            )

        # Objects one at a time, each with its own tries; the whole layout restarts if one cannot fit.
        for _ in range(int(cfg["max_layout_attempts"])):
            placed: list[tuple[float, float, float, float]] = []
            for body in bodies:
                radius = float(np.hypot(body.size[0], body.size[1]) / 2)
                for _ in range(100):
                    x, y = rng.uniform(*cfg["spawn_x_range"]), rng.uniform(*cfg["spawn_y_range"])
                    yaw = rng.uniform(*cfg["yaw_range_rad"])
                    if fits(x, y, radius, placed):
                        placed.append((x, y, yaw, radius))
                        break
                else:
                    break
            if len(placed) == len(bodies):
                return [(x, y, yaw) for x, y, yaw, _ in placed]
        raise RuntimeError(f"no collision-free layout of {len(bodies)} objects in the spawn region")

    def _local_extent(self, uid: int) -> tuple[np.ndarray, np.ndarray]:
        """Extent of a body in its own frame, and that extent's centre relative to the body pose
        (PyBullet's base pose is the centre of mass, which differs from the shape centre for meshes)."""
        c = self._client
        p.resetBasePositionAndOrientation(uid, [0, 0, 5.0], [0, 0, 0, 1], physicsClientId=c)
        lo, hi = (np.array(v) for v in p.getAABB(uid, physicsClientId=c))
        return hi - lo, (hi + lo) / 2 - np.array([0, 0, 5.0])

    def _place(self, body: _Body, x: float, y: float, yaw: float) -> None:
        """Put a body upright with its extent's bottom 1 mm above the table (base frame z = 0)."""
        rot = Rotation.from_euler("z", yaw)
        centre = np.array([x, y, body.size[2] / 2 + 0.001])
        origin = centre - rot.apply(body.centre_offset)
        world = self.world_T_base @ RigidTransform(rot, origin)
        p.resetBasePositionAndOrientation(
            body.uid, world.translation.tolist(), world.quat_xyzw.tolist(), physicsClientId=self._client
        )

    def _aim_gui_camera(self) -> None:
        g = self.config["render"]["gui_camera"]
        target = self.world_T_base.apply(np.asarray(g["target_base"], float))
        p.resetDebugVisualizerCamera(
            float(g["distance"]),
            float(g["yaw_deg"]),
            float(g["pitch_deg"]),
            target.tolist(),
            physicsClientId=self._client,
        )

    # ------------------------------------------------------------------------------------ perception

    def capture(self) -> tuple[RgbdFrame, Scene]:
        """Render the camera: RGB, metric depth (uint16 mm), segmentation boxes; and the ground truth of
        the same physics instant."""
        return self._on_gl_thread(self._capture)

    def _capture(self) -> tuple[RgbdFrame, Scene]:
        w, h = self.intrinsics.width, self.intrinsics.height
        render = self.config["render"]
        with self.lock:
            quiet = _stdout_to_stderr() if self._quiet_next_render else contextlib.nullcontext()
            with quiet:
                _, _, rgba, gl_depth, seg = p.getCameraImage(
                    w,
                    h,
                    viewMatrix=self._view,
                    projectionMatrix=self._proj,
                    renderer=self._renderer_flag,
                    shadow=int(bool(render["shadow"])),
                    lightDirection=self.world_T_base.rotation.apply(render["light_direction"]).tolist(),
                    physicsClientId=self._client,
                )
            self._quiet_next_render = False
            stamp_ns = time.time_ns()
            seg = np.asarray(seg, dtype=np.int64).reshape(h, w)
            self._boxes = {b.uid: self._box(seg, b.uid) for b in [*self._bodies, self._tray] if b is not None}
            scene = self._scene_locked()
        color = np.ascontiguousarray(np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4)[:, :, :3])
        frame = RgbdFrame(
            color, self._depth_to_mm(np.asarray(gl_depth, np.float64).reshape(h, w)), self.intrinsics, stamp_ns
        )
        frame.frame_id = str(self.camera_config["frames"]["camera_optical"])
        return frame, scene

    def _depth_to_mm(self, buffer: np.ndarray) -> np.ndarray:
        """GL depth buffer -> z along the optical axis (what a RealSense reports) -> uint16 mm, 0 = none."""
        near, far = self._near, self._far
        z = far * near / (far - (far - near) * buffer)
        valid = (buffer < 1.0) & (z >= self._depth_min) & (z <= self._depth_max)
        return np.where(valid, np.rint(z / self._depth_units), 0).astype(np.uint16)

    def _box(self, seg: np.ndarray, uid: int) -> tuple[tuple[float, float, float, float] | None, bool]:
        rows, cols = np.nonzero(seg == uid)
        if rows.size < int(self.config["render"]["min_visible_pixels"]):
            return None, False
        # Integer pixel bounds, right/bottom exclusive: (x1, y1, x2, y2) maps 1:1 onto RegionOfInterest.
        return (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)), True

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

    def _body_pose_base(self, body: _Body) -> tuple[np.ndarray, np.ndarray]:
        """Centre of the body's extent and its orientation, base frame."""
        pos, quat = p.getBasePositionAndOrientation(body.uid, physicsClientId=self._client)
        base_T_body = self.base_T_world @ RigidTransform.from_pose(pos, quat)
        return base_T_body.apply(body.centre_offset), base_T_body.quat_xyzw

    def _object_state(self, body: _Body) -> ObjectState:
        position, quat = self._body_pose_base(body)
        box, visible = self._boxes.get(body.uid, (None, False))
        return ObjectState(
            name=body.name,
            colour=body.colour,
            shape=body.shape,
            position=tuple(float(v) for v in position),
            quat_xyzw=tuple(float(v) for v in quat),
            size=tuple(float(v) for v in body.size),
            bbox_px=box,
            visible=visible,
        )

    def _body(self, name: str) -> _Body:
        for body in self._bodies:
            if body.name == name:
                return body
        raise KeyError(f"no object named {name!r} (have: {[b.name for b in self._bodies]})")

    # ------------------------------------------------------------------------------------------- arm

    def joint_limits(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lower, upper, max_velocity) of the 7 arm joints (rad, rad/s), from the URDF."""
        return self._lower.copy(), self._upper.copy(), self._max_velocity.copy()

    def joint_positions(self) -> np.ndarray:
        with self.lock:
            states = p.getJointStates(self._robot, list(range(ARM_JOINTS)), physicsClientId=self._client)
        return np.array([s[0] for s in states])

    def finger_positions(self) -> np.ndarray:
        """Both finger joints (m from closed), in `finger_joint_names` order."""
        with self.lock:
            states = p.getJointStates(self._robot, self._fingers, physicsClientId=self._client)
        return np.array([s[0] for s in states])

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Grasp point (panda_grasptarget, between the fingertips): position and quat_xyzw, base frame."""
        with self.lock:
            state = p.getLinkState(
                self._robot, self._ee_link, computeForwardKinematics=True, physicsClientId=self._client
            )
        pose = self.base_T_world @ RigidTransform.from_pose(state[4], state[5])
        return pose.translation, pose.quat_xyzw

    def within_limits(self, joints: np.ndarray, tolerance: float = 1e-6) -> bool:
        q = np.asarray(joints, dtype=float)
        return bool(np.all(q >= self._lower - tolerance) and np.all(q <= self._upper + tolerance))

    def solve_ik(self, position: Any, quat_xyzw: Any, seed_joints: Any = None) -> np.ndarray | None:
        """Arm joints that put the grasp point at `position` with `quat_xyzw` (base frame), or None when
        the best solution misses by more than the configured tolerances or breaks a joint limit.

        Runs on the kinematic copy of the arm: PyBullet's damped-least-squares IK is re-seeded from its
        own answer until the pose error converges (one call alone is often centimetres off)."""
        target_pos = np.asarray(position, dtype=float)
        target_rot = Rotation.from_quat(np.asarray(quat_xyzw, dtype=float))
        ik = self.config["robot"]["ik"]
        pos_tol, rot_tol = float(ik["position_tolerance_m"]), float(ik["orientation_tolerance_rad"])
        with self.lock:
            q = self.joint_positions() if seed_joints is None else np.asarray(seed_joints, dtype=float).copy()
            best, best_err = None, (np.inf, np.inf)
            for null_space in (True, False):
                for _ in range(int(ik["refinements"])):
                    q = self._ik_once(q, target_pos, target_rot, null_space)
                    err = self._ik_error(q, target_pos, target_rot)
                    if self.within_limits(q, 1e-3) and err[0] + err[1] < best_err[0] + best_err[1]:
                        best, best_err = np.clip(q, self._lower, self._upper), err
                    if err[0] < pos_tol / 10 and err[1] < rot_tol / 10:
                        break
                if best is not None and best_err[0] <= pos_tol and best_err[1] <= rot_tol:
                    return best
        return None

    def _ik_once(self, seed: np.ndarray, pos: np.ndarray, rot: Rotation, null_space: bool) -> np.ndarray:
        c, robot = self._ik_client, self._ik_robot
        for j, value in enumerate(seed):
            p.resetJointState(robot, j, float(value), physicsClientId=c)
        kwargs: dict[str, Any] = {}
        if null_space:
            # Limits and a rest posture (home) for every movable joint, fingers included.
            n_extra = len(self._movable) - ARM_JOINTS
            open_m = float(self.config["gripper"]["open_m"])
            lower = [*self._lower, *([0.0] * n_extra)]
            upper = [*self._upper, *([open_m] * n_extra)]
            kwargs = {
                "lowerLimits": lower,
                "upperLimits": upper,
                "jointRanges": [u - lo for u, lo in zip(upper, lower, strict=True)],
                "restPoses": [*seed, *([open_m] * n_extra)],
            }
        solution = p.calculateInverseKinematics(
            robot,
            self._ee_link,
            pos.tolist(),
            rot.as_quat().tolist(),
            maxNumIterations=int(self.config["robot"]["ik"]["max_iterations"]),
            residualThreshold=1e-6,
            physicsClientId=c,
            **kwargs,
        )
        return np.array(solution[:ARM_JOINTS])

    def _ik_error(self, q: np.ndarray, pos: np.ndarray, rot: Rotation) -> tuple[float, float]:
        c, robot = self._ik_client, self._ik_robot
        for j, value in enumerate(q):
            p.resetJointState(robot, j, float(value), physicsClientId=c)
        state = p.getLinkState(robot, self._ee_link, computeForwardKinematics=True, physicsClientId=c)
        pos_err = float(np.linalg.norm(np.array(state[4]) - pos))
        rot_err = float((Rotation.from_quat(state[5]) * rot.inv()).magnitude())
        return pos_err, rot_err

    def execute_joint_path(
        self,
        path: Any,
        speed_scaling: float = 0.5,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[np.ndarray]:
        """Move through joint waypoints (N, 7) from the current joints, under position control.

        Timing: each segment at the fastest rate that keeps every joint within max_velocity ×
        speed_scaling, and the whole path eased in and out (cubic), so it starts and ends at rest and
        never exceeds the scaled limits. Physics steps in chunks; the lock is released between chunks
        and `should_stop()` is checked there (the arm then holds where it is). Returns the grasp-point
        trace (base frame), one sample per chunk."""
        waypoints = np.asarray(path, dtype=float).reshape(-1, ARM_JOINTS)
        if not 0.0 < speed_scaling <= 1.0:
            raise ValueError(f"speed_scaling must be in (0, 1] (got {speed_scaling})")
        for q in waypoints:
            if not self.within_limits(q, 1e-4):
                raise ValueError(f"joint waypoint outside the limits: {np.round(q, 4).tolist()}")
        waypoints = np.vstack([self.joint_positions(), waypoints])
        velocity = self._max_velocity * speed_scaling
        durations = np.max(np.abs(np.diff(waypoints, axis=0)) / velocity, axis=1)
        knots = np.concatenate([[0.0], np.cumsum(durations)])
        total = float(knots[-1])
        eased_total = 1.5 * total  # cubic ease 3τ² − 2τ³ peaks at 1.5× the mean rate
        steps = max(1, math.ceil(eased_total / self.timestep))

        def at(path_time: float) -> np.ndarray:
            if total <= 0.0:
                return waypoints[-1]
            i = int(np.clip(np.searchsorted(knots, path_time, side="right") - 1, 0, len(durations) - 1))
            s = 0.0 if durations[i] <= 0 else (path_time - knots[i]) / durations[i]
            return waypoints[i] + np.clip(s, 0.0, 1.0) * (waypoints[i + 1] - waypoints[i])

        trace: list[np.ndarray] = []
        started = time.monotonic()
        step = 0
        while step < steps:
            if should_stop is not None and should_stop():
                self._hold()
                trace.append(self.ee_pose()[0])
                return trace
            with self.lock:
                for _ in range(min(self._chunk, steps - step)):
                    step += 1
                    tau = step / steps
                    target = at(total * (3 * tau**2 - 2 * tau**3))
                    ahead = at(total * (3 * min(tau + 1 / steps, 1) ** 2 - 2 * min(tau + 1 / steps, 1) ** 3))
                    self._command_arm(target, (ahead - target) / self.timestep)
                    p.stepSimulation(physicsClientId=self._client)
                trace.append(self.ee_pose()[0])
            self._pace(started, step)
        # Let the position controller catch up with the last waypoint.
        for _ in range(round(0.5 / self.timestep / self._chunk)):
            if should_stop is not None and should_stop():
                self._hold()
                break
            with self.lock:
                self._command_arm(waypoints[-1], np.zeros(ARM_JOINTS))
                self._step_locked(self._chunk)
                trace.append(self.ee_pose()[0])
                settled = np.max(np.abs(self.joint_positions() - waypoints[-1])) < 1e-3
            if settled:
                break
        return trace

    def _pace(self, started: float, steps_done: int) -> None:
        """With a real-time factor (GUI), sleep so simulated time does not run ahead of the wall clock."""
        if self.real_time_factor > 0:
            ahead = steps_done * self.timestep / self.real_time_factor - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)

    def _hold(self) -> None:
        """Stop: command the current joints with zero velocity and let the arm come to rest."""
        with self.lock:
            q = self.joint_positions()
            self._command_arm(q, np.zeros(ARM_JOINTS))
            self._step_locked(self._chunk)
            self._command_arm(self.joint_positions(), np.zeros(ARM_JOINTS))

    def _command_arm(self, target: np.ndarray, velocity: np.ndarray) -> None:
        robot = self.config["robot"]
        p.setJointMotorControlArray(
            self._robot,
            list(range(ARM_JOINTS)),
            p.POSITION_CONTROL,
            targetPositions=[float(v) for v in target],
            targetVelocities=[float(v) for v in velocity],
            forces=[float(robot["arm_force_n"])] * ARM_JOINTS,
            positionGains=[float(robot["position_gain"])] * ARM_JOINTS,
            physicsClientId=self._client,
        )

    def _command_fingers(self, target: float) -> None:
        force = float(self.config["gripper"]["force_n"])
        p.setJointMotorControlArray(
            self._robot,
            self._fingers,
            p.POSITION_CONTROL,
            targetPositions=[target] * len(self._fingers),
            forces=[force] * len(self._fingers),
            physicsClientId=self._client,
        )

    def set_gripper(self, closed: bool) -> float:
        """Close (squeeze with the configured force) or open the fingers; wait until they stop moving.
        Returns the opening between the fingers (m): near 0 closed on nothing, the object's width on it."""
        cfg = self.config["gripper"]
        target = 0.0 if closed else float(cfg["open_m"])
        started = time.monotonic()
        chunks = max(1, round(float(cfg["settle_max_s"]) / self.timestep / self._chunk))
        previous = None
        for i in range(chunks):
            with self.lock:
                self._command_fingers(target)
                self._step_locked(self._chunk)
                opening = float(np.sum(self.finger_positions()))
            self._pace(started, (i + 1) * self._chunk)
            if previous is not None and abs(opening - previous) < 1e-5 and i >= 3:
                break
            previous = opening
        return opening

    def holding(self, name: str) -> bool:
        """Both fingers touch the object."""
        with self.lock:
            uid = self._body(name).uid
            return all(
                p.getContactPoints(self._robot, uid, linkIndexA=f, physicsClientId=self._client) for f in self._fingers
            )

    def object_in_tray(self, name: str) -> bool:
        """The object rests inside the tray: centre within the tray's footprint, below its rim, not held."""
        with self.lock:
            assert self._tray is not None
            obj, _ = self._body_pose_base(self._body(name))
            tray, _ = self._body_pose_base(self._tray)
            inside = np.all(np.abs(obj[:2] - tray[:2]) < self._tray.size[:2] / 2 - 0.01)
            below_rim = tray[2] - self._tray.size[2] / 2 < obj[2] < tray[2] + self._tray.size[2] / 2 + 0.02
            return bool(inside and below_rim and not self.holding(name))

    def objects_in_tray(self) -> tuple[str, ...]:
        """Names of the objects resting in the tray now (`object_in_tray`), in spawn order."""
        with self.lock:
            return tuple(body.name for body in self._bodies if self.object_in_tray(body.name))

    def home(self, speed_scaling: float = 0.5, should_stop: Callable[[], bool] | None = None) -> list[np.ndarray]:
        """Move (not teleport: a held object stays held) to the configured home joints."""
        return self.execute_joint_path(self._home[None, :], speed_scaling, should_stop)

    @property
    def home_joints(self) -> np.ndarray:
        return self._home.copy()

    def step(self, seconds: float) -> None:
        """Advance physics with the current motor commands (e.g. let a released object settle)."""
        steps = max(1, round(seconds / self.timestep))
        started = time.monotonic()
        done = 0
        while done < steps:
            n = min(self._chunk, steps - done)
            with self.lock:
                self._step_locked(n)
            done += n
            self._pace(started, done)

    def _step(self, steps: int) -> None:
        with self.lock:
            self._step_locked(steps)

    def _step_locked(self, steps: int) -> None:
        for _ in range(steps):
            p.stepSimulation(physicsClientId=self._client)
