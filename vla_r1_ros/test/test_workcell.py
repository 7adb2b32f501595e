"""The simulated workcell: determinism, camera geometry against config/camera.yaml, arm primitives."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vla_r1_ros.core.config import PackageConfig, load_config
from vla_r1_ros.core.geometry import CameraIntrinsics, camera_extrinsics
from vla_r1_ros.sim.workcell import Workcell


@pytest.fixture(scope="module")
def workcell():
    with Workcell(PackageConfig.load()) as cell:
        yield cell


def top_down(yaw: float) -> np.ndarray:
    """Grasp orientation: fingers pointing down, closing across the object's yaw axis."""
    return (Rotation.from_euler("z", yaw) * Rotation.from_euler("x", np.pi)).as_quat()


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def test_a_layout_does_not_depend_on_the_resets_and_motions_before_it(workcell):
    """The bodies are made once and moved into each layout: what came before must not show, neither in
    the settled layout, nor in its pixels, nor in the physics of a pick-and-place on it."""
    first = workcell.reset(7)
    first_frame, _ = workcell.capture()
    target = next(o for o in first.objects if o.shape in ("cube", "cuboid", "cylinder")).name
    pick_and_place(workcell, target)
    first_after = workcell.scene()
    for seed in (3, 1):
        scene = workcell.reset(seed, 6)
        pick_and_place(workcell, next(o for o in scene.objects if o.shape in ("cube", "cuboid")).name)
    again = workcell.reset(7)
    again_frame, _ = workcell.capture()
    assert again == first
    assert np.array_equal(again_frame.color, first_frame.color)
    pick_and_place(workcell, target)
    assert workcell.scene() == first_after


def test_resets_do_not_grow_the_process(workcell):
    """Rebuilding the scene at every reset grew the process by ~20 MB a reset (PyBullet's EGL renderer
    keeps every mesh and texture it was given). The figure per trial is `vla-r1 bench soak`'s; this only
    tells a rebuild (~200 MB over 10 resets) from moving bodies (nothing)."""
    assert workcell.renderer == "egl", "the leak is the EGL renderer's"
    for seed in range(3):  # allocator warm-up: the first captures and layouts of each size
        workcell.reset(seed, 6)
    before = resident_mb()
    for seed in range(10):
        workcell.reset(seed, 3 + seed % 4)
    assert resident_mb() - before < 20.0


def test_a_capture_completes_while_a_reset_settles(workcell, monkeypatch):
    """A reset holds the workcell only while it moves bodies: the camera renders while the new layout
    settles. The reset is held inside its settling (between physics chunks) until a capture from
    another thread has come back; a capture blocked by the reset never comes back."""
    from concurrent.futures import ThreadPoolExecutor

    settling, captured = threading.Event(), threading.Event()
    pace = workcell.clock.pace

    def pace_waiting_for_a_capture(started: float, steps_done: int) -> None:
        settling.set()
        captured.wait(30.0)
        pace(started, steps_done)

    monkeypatch.setattr(workcell.clock, "pace", pace_waiting_for_a_capture)
    with ThreadPoolExecutor(1) as service, ThreadPoolExecutor(1) as camera:
        reset = service.submit(workcell.reset, 5)
        try:
            assert settling.wait(30.0), "the reset never released the workcell while settling"
            frame, scene = camera.submit(workcell.capture).result(timeout=30.0)
            assert not reset.done()
        finally:
            captured.set()
        laid_out = reset.result(timeout=30.0)
    assert scene.seed == 5 and [o.name for o in scene.objects] == [o.name for o in laid_out.objects]
    assert frame.color.std() > 10


def test_same_seed_same_scene_different_seed_differs(workcell):
    a, b = workcell.reset(7), workcell.reset(7)
    assert a == b
    c = workcell.reset(8)
    assert [o.position for o in c.objects] != [o.position for o in a.objects]
    names = [o.name for o in a.objects]
    assert len(names) == 4 and len(set(names)) == 4
    assert len({o.colour for o in a.objects}) == 4


def test_a_logged_layout_puts_the_seeds_objects_where_it_says(workcell):
    """`reset(seed, n, poses)`: a self-reset's logged layout (name -> x, y, yaw, base frame) re-run."""
    drawn = workcell.reset(5)
    # Each object 15 mm further from the robot than the seed draws it (clear of the tray and the others).
    poses = {o.name: [o.position[0] + 0.015, o.position[1], 0.3] for o in drawn.objects}
    scene = workcell.reset(5, None, poses)
    for obj in scene.objects:
        np.testing.assert_allclose(obj.position[:2], poses[obj.name][:2], atol=0.005)
    assert {o.name for o in scene.objects} == {o.name for o in drawn.objects}
    with pytest.raises(ValueError, match=r"the layout names .* the seed's objects are"):
        workcell.reset(6, None, poses)  # another seed draws other objects


def test_objects_visible_in_workspace_and_count(workcell):
    cfg = load_config("workcell")["objects"]
    for seed, count in ((0, 3), (1, 6), (2, None)):
        scene = workcell.reset(seed, count)
        assert len(scene.objects) == (count or cfg["default_count"])
        for obj in scene.objects:
            x, y, z = obj.position
            assert cfg["spawn_x_range"][0] <= x <= cfg["spawn_x_range"][1]
            assert cfg["spawn_y_range"][0] <= y <= cfg["spawn_y_range"][1]
            assert abs(z - obj.size[2] / 2) < 0.01, f"{obj.name} is not resting on the table"
            assert obj.visible and obj.bbox_px is not None, obj.name
            assert max(obj.size[:2]) <= 0.075  # graspable (mug with handle 7 cm, the gripper opens 8)
        assert scene.tray.visible


def test_depth_deprojects_to_true_top_centre(workcell):
    camera = load_config("camera")
    intrinsics, base_T_camera = CameraIntrinsics.from_config(camera), camera_extrinsics(camera)
    checked = 0
    for seed in (0, 1, 2):
        workcell.reset(seed, 6)
        frame, scene = workcell.capture()
        assert frame.color.shape == (480, 640, 3) and frame.color.dtype == np.uint8
        assert frame.depth_mm.dtype == np.uint16 and frame.intrinsics == intrinsics
        for obj in scene.objects:
            if obj.shape not in ("cube", "cuboid", "cylinder", "sphere"):
                continue  # a mug's top centre is its opening, a duck's is not on its surface
            u, v = intrinsics.project(base_T_camera.inverse().apply(obj.top_center))
            ui, vi = round(u), round(v)
            depth_m = frame.depth_mm[vi, ui] * 0.001
            assert depth_m > 0
            point = base_T_camera.apply(intrinsics.deproject(ui, vi, depth_m))
            # The pixel grid is ~1.4 mm wide here; the surface point under it is that close.
            assert np.linalg.norm(point - obj.top_center) < 0.005, (obj.name, point, obj.top_center)
            x1, y1, x2, y2 = obj.bbox_px
            cu, cv = intrinsics.project(base_T_camera.inverse().apply(obj.position))
            assert x1 <= cu <= x2 and y1 <= cv <= y2
            checked += 1
    assert checked >= 6


def test_ik_none_for_unreachable_pose(workcell):
    workcell.reset(0)
    assert workcell.solve_ik([1.5, 0.0, 0.3], top_down(0.0)) is None
    q = workcell.solve_ik([0.45, 0.1, 0.2], top_down(0.3))
    assert q is not None
    lower, upper, _ = workcell.joint_limits()
    assert np.all(q >= lower) and np.all(q <= upper)


def pick_and_place(workcell: Workcell, name: str) -> None:
    scene = workcell.scene()
    obj = scene.object(name)
    yaw = Rotation.from_quat(obj.quat_xyzw).as_euler("xyz")[2]
    quat = top_down(yaw)
    top, tray = np.array(obj.top_center), np.array(scene.tray.position)
    q = workcell.joint_positions()
    for target, speed, grip in (
        (top + np.array([0, 0, 0.10]), 0.5, None),
        (np.array(obj.position), 0.3, True),
        (top + np.array([0, 0, 0.15]), 0.5, None),
        (tray + np.array([0, 0, 0.15]), 0.5, False),
    ):
        q = workcell.solve_ik(target, quat, q)
        assert q is not None, target
        workcell.execute_joint_path([q], speed)
        if grip is not None:
            opening = workcell.set_gripper(grip)
            if grip:
                assert 0.02 < opening < 0.06 and workcell.holding(name)
    workcell.step(0.5)
    workcell.home()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scripted_pick_and_place_puts_object_in_tray(workcell, seed):
    scene = workcell.reset(seed)
    target = next(o for o in scene.objects if o.shape in ("cube", "cuboid", "cylinder"))
    assert not workcell.object_in_tray(target.name)
    pick_and_place(workcell, target.name)
    assert workcell.object_in_tray(target.name)
    assert np.linalg.norm(workcell.joint_positions() - workcell.home_joints) < 0.01


def test_stopped_execution_halts(workcell):
    workcell.reset(0)
    start = workcell.ee_pose()[0]
    q = workcell.solve_ik(start + np.array([0.2, 0.0, -0.3]), top_down(0.0))
    assert q is not None
    calls = []

    def stop_after_a_few_chunks() -> bool:
        calls.append(1)
        return len(calls) > 5

    trace = workcell.execute_joint_path([q], 0.3, should_stop=stop_after_a_few_chunks)
    stopped_at = workcell.ee_pose()[0]
    assert len(trace) <= 7
    assert np.linalg.norm(stopped_at - start) < 0.1  # far from the goal 0.36 m away
    workcell.step(0.5)
    assert np.linalg.norm(workcell.ee_pose()[0] - stopped_at) < 0.005  # and it stays there


def test_frames_keep_flowing_during_a_motion_and_sim_camera_reads(workcell):
    """Between physics chunks a motion lets the camera render: from inside the motion (its stop check,
    which runs between chunks) a frame is taken on another thread and must arrive. Counting frames
    rendered during a motion instead depends on how loaded the machine is."""
    from concurrent.futures import ThreadPoolExecutor

    from vla_r1_ros.cameras.sim import SimCamera

    workcell.reset(3)
    camera = SimCamera(workcell)
    camera.start()
    q = workcell.solve_ik(workcell.ee_pose()[0] + np.array([0.15, 0.1, -0.2]), top_down(0.0))
    assert q is not None
    frames = []

    with ThreadPoolExecutor(1) as grabber:

        def frame_mid_motion() -> bool:
            if len(frames) < 2:
                frames.append(grabber.submit(camera.read, 1.0).result(timeout=10.0))
            return False

        trace = workcell.execute_joint_path([q], 0.1, should_stop=frame_mid_motion)
    camera.stop()
    assert len(frames) == 2 and len(trace) > 2
    assert not np.array_equal(frames[0].color, frames[1].color), "the arm moved between the two frames"
    assert [f.sequence for f in frames] == [1, 2]
    assert frames[-1].extras["scene"].seed == 3
    assert frames[0].frame_id == "camera_color_optical_frame"


def test_a_reset_from_another_thread_shows_in_every_later_frame(workcell):
    """In the node graph a service thread resets the scene while the camera thread renders; PyBullet's
    EGL renderer only sees bodies made on its own thread, so a missing hand-off froze the picture. (The
    module's workcell, not a second one: a second EGL renderer beside a live one has crashed PyBullet.)"""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as camera, ThreadPoolExecutor(1) as service:
        service.submit(workcell.reset, 0).result()
        before, scene_before = camera.submit(workcell.capture).result()
        service.submit(workcell.reset, 3).result()
        after, scene_after = camera.submit(workcell.capture).result()
    assert np.abs(before.color.astype(int) - after.color.astype(int)).mean() > 1.0
    assert [o.bbox_px for o in scene_before.objects] != [o.bbox_px for o in scene_after.objects]


def test_the_camera_stands_on_a_mount_where_camera_yaml_puts_it(workcell):
    """The simulated scene has the collision description's camera housing and pole as bodies."""
    import pybullet as p

    for box in workcell.obstacles():
        if not box.name.startswith("camera_"):
            continue
        centre = workcell.world_T_base.apply(box.pose.translation)
        hits = p.getOverlappingObjects(
            (centre - 0.001).tolist(), (centre + 0.001).tolist(), physicsClientId=workcell.clock.client
        )
        assert hits, f"no body at the {box.name}"
        lo, hi = (np.array(v) for v in p.getAABB(hits[0][0], physicsClientId=workcell.clock.client))
        np.testing.assert_allclose((lo + hi) / 2, centre, atol=0.002)
    pole = next(b for b in workcell.obstacles() if b.name == "camera_pole")
    camera = camera_extrinsics(load_config("camera")).translation
    assert np.linalg.norm(pole.pose.translation[:2] - camera[:2]) < 0.1  # right behind the camera
    assert pole.pose.translation[2] + pole.size[2] / 2 == pytest.approx(camera[2])


def test_one_egl_renderer_per_process(workcell):
    """Two live PyBullet clients with the EGL plugin crashed a reset (fresh-clone CI, twice): a second
    Workcell beside a live one renders with TinyRenderer, and its frames are still the scene's."""
    from vla_r1_ros.sim import rendering

    with Workcell(PackageConfig.load()) as second:
        assert second.renderer == "tiny" and len(rendering._EGL_CLIENTS) <= 1
        second.reset(3)
        frame, scene = second.capture()
        assert frame.color.std() > 10 and any(o.visible for o in scene.objects)
