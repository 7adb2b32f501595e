"""Rendering the workcell's RGB-D camera with PyBullet: the pinhole projection of config/camera.yaml,
the renderer choice (EGL plugin or TinyRenderer), metric depth and segmentation boxes.

PyBullet's EGL renderer draws with a GL context bound to the thread that loaded it, it learns about new
and removed bodies in the thread that makes them, and its plugins share state across physics clients: a
reset from another thread left every later frame showing the old scene, and two Workcells whose
renderers lived on different threads crashed. So every Workcell of the process loads its renderer,
builds its bodies, renders and closes on one thread, `on_gl_thread`, whoever calls them (a reset only
moves and recolours bodies made at the build, from any thread).
The EGL plugin is for one live client per process (`_EGL_CLIENTS`): a second Workcell alive beside it
renders with TinyRenderer. The rule came from two segfaults loading the textured tray URDF with two EGL
clients live (fresh-clone test runs); the cause found later is Bullet reading past the tray's 853 px
wide texture, which faults only when the heap happens to end there (sim/textures.py, fixed there). Two
EGL clients have not been tried since, so the rule stays. The graph has one Workcell per process; only
tests and tools make a second.
"""

from __future__ import annotations

import contextlib
import os
import pkgutil
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pybullet as p
from scipy.spatial.transform import Rotation

from vla_r1_ros.core.geometry import CameraIntrinsics, RigidTransform

_GL_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pybullet-gl")
_GL_THREAD_ID = _GL_THREAD.submit(threading.get_ident).result()

# OpenGL's camera looks down its -z with y up; the optical frame looks down +z with y down.
_OPTICAL_T_GL = RigidTransform(Rotation.from_euler("x", np.pi), np.zeros(3))

PixelBox = tuple[float, float, float, float]


def on_gl_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run `function` on the process's renderer thread (directly when already there). Callers must not
    hold a Workcell's `lock`: the renderer thread takes it."""
    if threading.get_ident() == _GL_THREAD_ID:
        return function(*args)
    return _GL_THREAD.submit(function, *args).result()


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
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


_EGL_CLIENTS: set[int] = set()  # physics clients with the EGL plugin loaded (touched on the GL thread only)


class CameraRenderer:
    """The camera of config/camera.yaml rendered in one PyBullet client. `load` and `close` run on the
    renderer thread (see the module docstring); `render` is called there too, under the workcell lock."""

    def __init__(
        self,
        client: int,
        render_config: dict[str, Any],
        camera_config: dict[str, Any],
        world_T_camera: RigidTransform,
        light_direction_world: np.ndarray,
        gui: bool,
    ) -> None:
        self.client = client
        self.config = render_config
        self.gui = gui
        self.intrinsics = CameraIntrinsics.from_config(camera_config)
        self.frame_id = str(camera_config["frames"]["camera_optical"])
        self._near, self._far = float(render_config["near_m"]), float(render_config["far_m"])
        depth = camera_config["depth"]
        self._depth_min, self._depth_max = float(depth["min_m"]), float(depth["max_m"])
        self._depth_units = float(depth["units_m"])
        gl_view = (world_T_camera @ _OPTICAL_T_GL).inverse().as_matrix()
        # pybullet takes OpenGL's column-major 16-float lists.
        self._view = gl_view.T.reshape(-1).tolist()
        self._proj = projection_matrix(self.intrinsics, self._near, self._far).T.reshape(-1).tolist()
        self._light = np.asarray(light_direction_world, dtype=float).tolist()
        self.name, self._flag, self._egl_plugin = "unloaded", p.ER_TINY_RENDERER, None
        self.quiet_next_render = True  # the first render after a (re)load prints GL vendor lines

    def load(self) -> None:
        """Pick the renderer: the GUI's, else the EGL plugin if it loads (render.renderer auto|egl), else
        TinyRenderer."""
        choice = str(self.config["renderer"])
        if self.gui:
            self.name, self._flag = "opengl-gui", p.ER_BULLET_HARDWARE_OPENGL
            return
        if _EGL_CLIENTS:  # see the module docstring: one EGL client per process
            if choice == "egl":
                raise RuntimeError("render.renderer is 'egl' but another Workcell of this process renders with EGL")
            self.name, self._flag = "tiny", p.ER_TINY_RENDERER
            return
        if choice in ("auto", "egl"):
            loader = pkgutil.get_loader("eglRenderer")
            plugin = -1
            if loader is not None:
                with stdout_to_stderr():
                    plugin = p.loadPlugin(loader.get_filename(), "_eglRendererPlugin", physicsClientId=self.client)
            if plugin >= 0:
                self.name, self._flag, self._egl_plugin = "egl", p.ER_BULLET_HARDWARE_OPENGL, plugin
                _EGL_CLIENTS.add(self.client)
                return
            if choice == "egl":
                raise RuntimeError("render.renderer is 'egl' but PyBullet's EGL renderer plugin did not load")
        self.name, self._flag = "tiny", p.ER_TINY_RENDERER

    def unload(self) -> None:
        if self._egl_plugin is not None:
            p.unloadPlugin(self._egl_plugin, physicsClientId=self.client)
            self._egl_plugin = None
            _EGL_CLIENTS.discard(self.client)

    def render(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(RGB uint8 HxWx3, depth uint16 mm with 0 = none, segmentation body ids HxW)."""
        w, h = self.intrinsics.width, self.intrinsics.height
        quiet = stdout_to_stderr() if self.quiet_next_render else contextlib.nullcontext()
        with quiet:
            _, _, rgba, gl_depth, seg = p.getCameraImage(
                w,
                h,
                viewMatrix=self._view,
                projectionMatrix=self._proj,
                renderer=self._flag,
                shadow=int(bool(self.config["shadow"])),
                lightDirection=self._light,
                physicsClientId=self.client,
            )
        self.quiet_next_render = False
        color = np.ascontiguousarray(np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4)[:, :, :3])
        depth = self._depth_to_mm(np.asarray(gl_depth, np.float64).reshape(h, w))
        return color, depth, np.asarray(seg, dtype=np.int64).reshape(h, w)

    def _depth_to_mm(self, buffer: np.ndarray) -> np.ndarray:
        """GL depth buffer -> z along the optical axis (what a RealSense reports) -> uint16 mm, 0 = none."""
        near, far = self._near, self._far
        z = far * near / (far - (far - near) * buffer)
        valid = (buffer < 1.0) & (z >= self._depth_min) & (z <= self._depth_max)
        return np.where(valid, np.rint(z / self._depth_units), 0).astype(np.uint16)

    def segmentation_box(self, seg: np.ndarray, uid: int) -> tuple[PixelBox | None, bool]:
        """The body's pixel box in a segmentation image and whether it is visible."""
        rows, cols = np.nonzero(seg == uid)
        if rows.size < int(self.config["min_visible_pixels"]):
            return None, False
        # Integer pixel bounds, right/bottom exclusive: (x1, y1, x2, y2) maps 1:1 onto RegionOfInterest.
        return (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)), True
