"""The one way this package runs nodes in a process: `ros2 run` executables and the `stack` container."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.action import ActionClient, ActionServer
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from vla_r1_ros.core.config import ConfigError, PackageConfig
from vla_r1_ros.nodes.context import ProcessContext


def destroy_node(node: Node) -> None:
    """Destroy a node with its action servers and clients. rclpy 7.1's `Node.destroy_node` leaves those
    alive, and through them the node and its DDS participant, until the garbage collector breaks the
    cycle: measured, a context initialised later in the same process still saw the old node and its
    Predict server as ready, with nobody spinning it."""
    for waitable in list(node.waitables):
        if isinstance(waitable, ActionServer | ActionClient):
            waitable.destroy()
    node.destroy_node()


def spin_nodes(
    make_nodes: Callable[[ProcessContext], list[Node]],
    args: list[str] | None = None,
    num_threads: int = 8,
    startup_errors: tuple[type[Exception], ...] = (),
) -> int:
    """Initialise rclpy, read the package configuration once, build the nodes with it, spin them in one
    MultiThreadedExecutor until Ctrl-C or shutdown, with `num_threads` worker threads whatever the core
    count: a trial blocks one thread while it waits for the inference and the logger, whose answers,
    frames and timers need others to be delivered; then destroy them and close what the process context
    opened (the simulated workcell). A `ConfigError` or `startup_errors` exception while building is
    logged and gives exit status 1 (a launch file's respawn or a supervisor sees the failure); anything
    else propagates."""
    rclpy.init(args=args)
    executor = MultiThreadedExecutor(num_threads=num_threads)
    nodes: list[Node] = []
    context: ProcessContext | None = None
    try:
        try:
            context = ProcessContext(PackageConfig.load())
            nodes.extend(make_nodes(context))
        except (ConfigError, *startup_errors) as exc:
            rclpy.logging.get_logger("vla_r1_ros").fatal(f"{type(exc).__name__}: {exc}")
            return 1
        for node in nodes:
            executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        for node in reversed(nodes):
            destroy_node(node)
        if context is not None:
            context.close()
        rclpy.try_shutdown()
    return 0
