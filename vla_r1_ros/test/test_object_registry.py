"""The object registry from the real simulator's frames: each object registered from one click, saved and
loaded back, recognised again wherever it stands; instructions resolved to it; clicks that cannot be
right refused with a reason; and `vla-r1 objects register | show`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vla_r1_ros.core.config import PackageConfig
from vla_r1_ros.core.geometry import camera_extrinsics
from vla_r1_ros.core.object_registry import MatchSettings, ObjectRegistry, RegistryError, register_objects
from vla_r1_ros.core.scene import make_instruction, sim_marks
from vla_r1_ros.core.tabletop import TabletopSettings, segment_tabletop
from vla_r1_ros.core.tray import TrayPose
from vla_r1_ros.sim.workcell import Workcell
from vla_r1_ros.testing.arrange import move_object, table_spot, view_of

CONFIG = PackageConfig.load()
SEGMENTATION = TabletopSettings.from_config(CONFIG.workspace, CONFIG.camera)
MATCH = MatchSettings.from_config(CONFIG.workspace)
SEED = 1


@pytest.fixture(scope="module")
def layout():
    with Workcell(CONFIG) as workcell:
        workcell.reset(SEED, 6)
        frame, scene = workcell.capture()
        yield workcell, view_of(frame, CONFIG.camera), scene


def expected_tray(scene) -> TrayPose:
    return TrayPose(np.array(scene.tray.position), np.array(scene.tray.size))


def marks(view, scene) -> dict[str, tuple[float, float]]:
    return sim_marks(scene, view.intrinsics, camera_extrinsics(CONFIG.camera))


def test_each_clicked_object_is_registered_and_recognised_where_it_moves(layout, tmp_path):
    workcell, view, scene = layout
    registry = register_objects(view, marks(view, scene), expected_tray(scene), SEGMENTATION)
    assert sorted(o.name for o in registry.objects) == sorted(o.name for o in scene.objects)
    assert np.linalg.norm(registry.tray.centre[:2] - np.array(scene.tray.position[:2])) < 0.01
    for obj in registry.objects:
        truth = scene.object(obj.name)
        assert (obj.colour, obj.shape) == (truth.colour, truth.shape)
        assert abs(obj.height_m - truth.size[2]) < 0.012, obj  # a duck's top is its head, a mug's its rim
        instruction = make_instruction(truth, np.random.default_rng(len(obj.name)))
        assert registry.resolve(instruction) == obj, instruction
    assert registry.resolve("put the thing in the tray") is None

    registry.save(tmp_path / "registry.json")
    loaded = ObjectRegistry.load(tmp_path / "registry.json")
    assert [o.name for o in loaded.objects] == [o.name for o in registry.objects]
    assert np.allclose(loaded.tray.centre, registry.tray.centre) and loaded.table_z == registry.table_z

    # Moved elsewhere on the table, each is still itself, confidently.
    rng = np.random.default_rng(0)
    for moved in scene.objects[:2]:
        move_object(workcell, moved.name, table_spot(workcell.scene(), moved, rng), 0.4)
    frame, _ = workcell.capture()
    seen = segment_tabletop(view_of(frame, CONFIG.camera), registry.table_z, registry.tray, SEGMENTATION)
    assert len(seen.on_table) == len(scene.objects) and not seen.in_tray
    for blob in seen.on_table:
        obj, confidence = loaded.match(blob, MATCH)
        truth = min(
            workcell.scene().objects, key=lambda o: np.linalg.norm(np.array(o.position[:2]) - blob.centroid[:2])
        )
        assert obj is not None and obj.name == truth.name and confidence > 0.99, (truth.name, obj, confidence)


def test_clicks_that_cannot_be_right_are_refused(layout, tmp_path):
    _, view, scene = layout
    clicks = marks(view, scene)
    first, second = list(clicks)[:2]
    with pytest.raises(RegistryError, match="on no object"):
        register_objects(view, {**clicks, first: (5.0, 470.0)}, expected_tray(scene), SEGMENTATION)
    with pytest.raises(RegistryError, match="are on one object"):
        register_objects(view, {**clicks, second: clicks[first]}, expected_tray(scene), SEGMENTATION)
    with pytest.raises(RegistryError, match="have no click"):
        register_objects(view, {first: clicks[first]}, expected_tray(scene), SEGMENTATION)
    with pytest.raises(RegistryError, match="<colour>_<shape>"):
        register_objects(view, {"thing": clicks[first]}, expected_tray(scene), SEGMENTATION)
    mirrored = np.array(scene.tray.position) * [1, -1, 1]  # where the tray stands in other layouts
    far = TrayPose(mirrored, np.array(scene.tray.size))
    with pytest.raises(RegistryError, match="no tray"):
        register_objects(view, clicks, far, SEGMENTATION)

    with pytest.raises(RegistryError, match="no object registry"):
        ObjectRegistry.load(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(RegistryError, match="cannot read"):
        ObjectRegistry.load(tmp_path / "broken.json")
    (tmp_path / "partial.json").write_text(json.dumps({"version": 1, "table_z": 0.0}))
    with pytest.raises(RegistryError, match=r"malformed .*KeyError"):
        ObjectRegistry.load(tmp_path / "partial.json")


def vla_r1(*args: str) -> subprocess.CompletedProcess:
    """The console script beside this interpreter, in a process of its own (one simulator per process:
    PyBullet's EGL renderer is the process's)."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("vla-r1")), *args], capture_output=True, text=True, timeout=120
    )


def test_objects_register_and_show(tmp_path):
    out = tmp_path / "registry.json"
    registered = vla_r1("objects", "register", "--out", str(out), "--seed", str(SEED))
    assert registered.returncode == 0, registered.stdout + registered.stderr
    registry = ObjectRegistry.load(out)
    assert len(registry.objects) == CONFIG.workcell["objects"]["default_count"]
    shown = vla_r1("objects", "show", str(out))
    assert shown.returncode == 0 and all(o.name in shown.stdout for o in registry.objects) and "tray at" in shown.stdout

    marks_file = tmp_path / "marks.json"
    marks_file.write_text(json.dumps({"red_cube": [5, 470]}))
    other = tmp_path / "other.json"
    refused = vla_r1("objects", "register", "--out", str(other), "--marks", str(marks_file), "--seed", str(SEED))
    assert refused.returncode == 1 and "on no object" in refused.stdout and not other.exists()
