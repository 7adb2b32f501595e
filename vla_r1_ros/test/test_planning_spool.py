"""kill -9 of the planning process loses no finished trial: its records wait in the spool on disk
(`core.delivery.Spool`, in the log folder), and the planning process started again (the graph respawns
it) delivers them to the reward logger over real DDS before anything new.

The planning side runs in real separate processes (the planning node's own `EpisodeDelivery`, with the
planning node's parameters from config/nodes.yaml); the records are the ones the planning node builds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from rclpy.parameter import Parameter
from test_reward_logger_node import record_msg

from vla_r1_ros.core import episodes
from vla_r1_ros.core.config import PackageConfig
from vla_r1_ros.core.delivery import SPOOL_SUFFIX
from vla_r1_ros.core.episodes.layout import PLANNING_SPOOL_DIR
from vla_r1_ros.nodes.context import ProcessContext
from vla_r1_ros.nodes.reward_logger_node import RewardLoggerNode
from vla_r1_ros.testing.ros import spin_until

TRIALS = ("trial-a", "trial-b", "trial-c")

# One planning process: its EpisodeDelivery as the planning node builds it; with trial ids on the command
# line it finishes those trials (no logger is up: they wait), says QUEUED and keeps delivering.
PLANNING_PROCESS = textwrap.dedent(
    """
    import sys, time
    import rclpy
    from rclpy.callback_groups import ReentrantCallbackGroup
    from rclpy.executors import MultiThreadedExecutor
    from test_reward_logger_node import record_msg
    from vla_r1_ros.core.config import PackageConfig, node_defaults
    from vla_r1_ros.nodes.episode_delivery import EpisodeDelivery

    rclpy.init()
    node = rclpy.create_node("planning")
    params = node_defaults(PackageConfig.load(), "planning") | {"spool_dir": sys.argv[1], "log_retry_period_s": 0.2}
    delivery = EpisodeDelivery(node, params, ReentrantCallbackGroup())
    for trial_id in sys.argv[2:]:
        assert delivery.log(trial_id, record_msg(trial_id)), "logged although no logger is up"
    print("QUEUED", flush=True)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    executor.spin()
    """
)


def planning_process(spool: Path, *trial_ids: str) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", PLANNING_PROCESS, str(spool), *trial_ids],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_kill_9_of_the_planning_process_loses_no_finished_trial(executor, tmp_path):
    log = tmp_path / "log"
    spool = log / PLANNING_SPOOL_DIR
    first = planning_process(spool, *TRIALS)
    try:
        assert first.stdout.readline().strip() == "QUEUED", first.stderr.read()
        assert len(list(spool.glob(f"*{SPOOL_SUFFIX}"))) == len(TRIALS)  # on disk before anything is delivered
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    logger = RewardLoggerNode(
        ProcessContext(PackageConfig.load()), parameter_overrides=[Parameter("log_dir", value=str(log))]
    )
    executor.add_node(logger)
    respawned = planning_process(spool)  # the graph's respawn: same parameters, no trial of its own yet
    try:
        delivered = spin_until(executor, lambda: len(episodes.read_index(log)) == len(TRIALS), 60.0)
        assert delivered, f"logged {episodes.read_index(log)}; planning said: {respawned.stderr.read()[-2000:]}"
        assert [entry["trial_id"] for entry in episodes.read_index(log)] == list(TRIALS)  # in the order finished
        assert spin_until(executor, lambda: not list(spool.glob(f"*{SPOOL_SUFFIX}")), 10.0)  # confirmed: removed
    finally:
        respawned.terminate()
        respawned.wait(10)
    # A record is the planning node's whole trial: the spooled copy logs exactly what the live one would.
    document = episodes.load_episode(log, "000002")
    assert document["trial_id"] == "trial-b" and document["instruction"] == record_msg("trial-b").instruction
    assert document["files"]["color"] and document["outcome"]["outcome_source"] == "simulator"
