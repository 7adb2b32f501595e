"""A destroyed node leaves nothing behind in the graph: real rclpy contexts one after another in one
process, as the test fixtures and `vla-r1 trials` create them. The garbage collector is held off so that
what is measured is what `destroy_node` does, not when a collection happens to run."""

from __future__ import annotations

import gc
import time

import pytest
import rclpy
from rclpy.action import ActionClient, ActionServer
from rclpy.node import Node
from vla_r1_interfaces.action import Predict

from vla_r1_ros import topics
from vla_r1_ros.nodes.spin import destroy_node


@pytest.fixture
def no_gc():
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def seen_by_a_later_context(destroy) -> tuple[list[str], bool]:
    """Node names a new context sees, and whether its Predict client finds a server, after a node with a
    Predict server (and a client of its own) was destroyed by `destroy` and its context shut down."""
    rclpy.init()  # the default context, as the `ros` fixture and `spin_nodes` use it
    model = Node("old_model")
    ActionServer(model, Predict, topics.PREDICT, lambda goal_handle: Predict.Result())
    ActionClient(model, Predict, topics.PREDICT)
    destroy(model)
    rclpy.try_shutdown()

    rclpy.init()
    observer = Node("observer")
    client = ActionClient(observer, Predict, topics.PREDICT)
    try:
        # Discovery of a peer in the same process takes milliseconds; give a stale one every chance.
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and not client.server_is_ready():
            time.sleep(0.1)
        return [name for name, _ in observer.get_node_names_and_namespaces()], client.server_is_ready()
    finally:
        destroy_node(observer)
        rclpy.try_shutdown()


def test_destroy_node_takes_the_nodes_action_servers_and_clients_with_it(no_gc):
    names, server_ready = seen_by_a_later_context(destroy_node)
    assert names == ["observer"] and not server_ready


def test_rclpy_destroy_node_alone_leaves_a_ready_looking_action_server(no_gc):
    """Why `destroy_node` exists: should rclpy take waitables down itself one day, this fails and the
    helper can go."""
    _, server_ready = seen_by_a_later_context(Node.destroy_node)
    assert server_ready
