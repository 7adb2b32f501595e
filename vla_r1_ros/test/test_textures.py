"""Textures the EGL renderer uploads (sim/textures.py): widths a multiple of 4 px, so Bullet's upload
never reads past a texture.

The last test loads URDFs with the real EGL renderer plugin in a child process whose large allocations
end at an unmapped page (test/guard_pages.c, LD_PRELOAD): pybullet_data's 853 px wide tray texture
faults there every time, the copy `renderable_urdf` makes loads. It needs a C compiler.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pybullet_data
import pytest
from PIL import Image

from vla_r1_ros.core.config import PackageConfig
from vla_r1_ros.sim.textures import _asset_files, renderable_urdf, white_texture_path

_TRAY = "tray/traybox.urdf"


def workcell_urdfs() -> list[str]:
    """Every URDF config/workcell.yaml has the renderer's client load."""
    workcell = PackageConfig.load().workcell
    shapes = workcell["objects"]["shapes"].values()
    return [workcell["table"]["urdf"], workcell["robot"]["urdf"], workcell["tray"]["urdf"]] + [
        shape["urdf"] for shape in shapes if "urdf" in shape
    ]


def widths(urdf_path: str) -> dict[str, tuple[int, int]]:
    return {os.path.basename(t): Image.open(t).size for t in _asset_files(urdf_path)[1]}


def test_the_tray_texture_is_resized_to_a_multiple_of_4_px_and_the_rest_copied_as_it_is():
    original = os.path.join(pybullet_data.getDataPath(), _TRAY)
    assert widths(original) == {"tray.jpg": (853, 1461)}  # the misfit this module exists for

    copy = renderable_urdf(_TRAY)

    assert copy != original and renderable_urdf(_TRAY) == copy  # made once, then reused
    assert widths(copy) == {"tray.jpg": (852, 1461)}
    for name in ("traybox.urdf", "tray_textured.obj", "tray_textured.mtl"):
        with (
            open(os.path.join(os.path.dirname(original), name), "rb") as a,
            open(os.path.join(os.path.dirname(copy), name), "rb") as b,
        ):
            assert a.read() == b.read(), name


@pytest.mark.parametrize("urdf", workcell_urdfs())
def test_every_workcell_urdf_renders_with_textures_a_multiple_of_4_px_wide(urdf):
    loaded = renderable_urdf(urdf)
    assert all(width % 4 == 0 for width, _ in widths(loaded).values()), widths(loaded)
    if urdf != _TRAY:  # nothing to fix: loaded from pybullet_data itself
        assert loaded == os.path.join(pybullet_data.getDataPath(), urdf)


def test_the_white_texture_is_4_px_wide_and_white():
    image = Image.open(white_texture_path())
    assert image.size == (4, 4) and image.mode == "RGB"
    assert (np.asarray(image) == 255).all()


def test_a_urdf_whose_files_lie_outside_its_directory_is_refused(tmp_path):
    tray = os.path.join(pybullet_data.getDataPath(), "tray")
    (tmp_path / "urdf").mkdir()
    for name in ("tray_textured.obj", "tray_textured.mtl", "tray.jpg"):
        shutil.copy(os.path.join(tray, name), tmp_path / name)
    urdf = tmp_path / "urdf" / "tray.urdf"
    urdf.write_text(
        '<robot name="t"><link name="l"><visual><geometry><mesh filename="../tray_textured.obj"/>'
        "</geometry></visual></link></robot>"
    )
    with pytest.raises(ValueError, match="outside the URDF's directory"):
        renderable_urdf(str(urdf))


_LOAD_WITH_EGL = textwrap.dedent(
    """
    import pkgutil, sys
    import pybullet as p, pybullet_data
    client = p.connect(p.DIRECT)
    p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=client)
    assert p.loadPlugin(pkgutil.get_loader("eglRenderer").get_filename(), "_eglRendererPlugin",
                        physicsClientId=client) >= 0
    p.loadURDF(sys.argv[1], physicsClientId=client)
    """
)


@pytest.fixture(scope="module")
def guard_pages(tmp_path_factory) -> str:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler for test/guard_pages.c")
    library = str(tmp_path_factory.mktemp("guard") / "guard_pages.so")
    source = os.path.join(os.path.dirname(__file__), "guard_pages.c")
    subprocess.run([compiler, "-O1", "-shared", "-fPIC", "-o", library, source, "-ldl", "-lpthread"], check=True)
    return library


def load_guarded(guard_pages: str, urdf: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, LD_PRELOAD=guard_pages)
    return subprocess.run([sys.executable, "-c", _LOAD_WITH_EGL, urdf], env=env, capture_output=True, timeout=120)


def test_bullet_reads_past_a_misfit_texture_and_not_past_the_resized_copy(guard_pages):
    """If the first assertion fails, Bullet uploads odd widths safely now and `renderable_urdf` can go."""
    assert load_guarded(guard_pages, _TRAY).returncode == -signal.SIGSEGV
    resized = load_guarded(guard_pages, renderable_urdf(_TRAY))
    assert resized.returncode == 0, resized.stderr.decode()[-2000:]
