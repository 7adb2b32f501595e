"""Shared fixtures. Test traffic stays on this machine, in a ROS domain of its own per run."""

from __future__ import annotations

import os
import sys

# Set before rclpy initialises anywhere (and inherited by subprocess nodes): localhost-only
# discovery and a domain id derived from this run's pid, so parallel runs never cross.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
_prefix_path = os.environ.get("AMENT_PREFIX_PATH", "")
if sys.prefix not in _prefix_path.split(os.pathsep):
    os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join(p for p in (sys.prefix, _prefix_path) if p)

import pytest  # noqa: E402

# PyBullet first and transformers later in one process crashes: with PyBullet's EGL renderer loaded
# (Mesa's llvmpipe, libLLVM-15), importing triton's libtriton (its own LLVM) from transformers' import
# segfaults, every time. The other order works. Import the model stack before any test loads the
# simulator, so the suite passes in any file order. (The graph never meets it: the inference node is
# always a process of its own.)
import transformers  # noqa: E402, F401
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessor  # noqa: E402, F401


@pytest.fixture
def ros():
    """rclpy initialised for one test (default context), shut down after it."""
    import rclpy

    rclpy.init()
    try:
        yield
    finally:
        rclpy.try_shutdown()


@pytest.fixture
def executor(ros):
    """A MultiThreadedExecutor; nodes added to it are destroyed after the test, action servers and clients
    included (else the next test's context still sees them: see `destroy_node`)."""
    from rclpy.executors import MultiThreadedExecutor

    from vla_r1_ros.nodes.spin import destroy_node

    ex = MultiThreadedExecutor(num_threads=4)
    try:
        yield ex
    finally:
        for node in list(ex.get_nodes()):
            ex.remove_node(node)
            destroy_node(node)
        ex.shutdown()


@pytest.fixture(scope="session")
def config():
    """The package configuration, read once (as `spin_nodes` does for a process)."""
    from vla_r1_ros.core.config import PackageConfig

    return PackageConfig.load()


@pytest.fixture(scope="module")
def workcell():
    """A headless PyBullet workcell shared by one test module (seed 0 until a test resets it)."""
    from vla_r1_ros.core.config import PackageConfig
    from vla_r1_ros.sim.workcell import Workcell

    cell = Workcell(PackageConfig.load())
    yield cell
    cell.close()
