"""The SROS2 policy (config/sros2_policy.xml) covers what the graph really does: the graph `vla-r1 trials
--record` starts (real processes over DDS: sim_stack, inference, reward_logger, recorder) and its trial
client (this test's process, enclave /vla_r1/trials) are asked, through the ROS graph API, for every topic each node
publishes and subscribes, every service it offers and calls and every action it serves and sends;
each must be allowed for that node in its process's enclave. With access control enforced, anything
missing would be refused at run time, the night's first trial would hang, and no test here could see it
(SROS2's keystore tools are not installable here: the policy's coverage is what can be checked).
Every process the graph launches runs in an enclave the policy defines."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

from vla_r1_ros.core.config import config_dir
from vla_r1_ros.graph import GraphArgs, build_graph, enclave_of, recording
from vla_r1_ros.launcher import GraphLauncher

ACTION_SERVICES = ("send_goal", "cancel_goal", "get_result")
ACTION_TOPICS = ("feedback", "status")


def policy_rights(path: Path) -> dict[tuple[str, str], dict[str, set[str]]]:
    """(enclave, node) -> {publish, subscribe, reply, request, execute, call}: the names allowed."""
    rights: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for enclave in ET.parse(path).getroot().iter("enclave"):
        for profile in enclave.iter("profile"):
            node = profile.get("node")
            for group in profile:
                for permission, value in group.attrib.items():
                    if value != "ALLOW":
                        continue
                    for item in group:
                        name = item.text.strip().replace("~/", f"/{node}/")
                        rights[(enclave.get("path"), node)][permission].add(name)
    return rights


def graph_use(node, name: str) -> dict[str, set[str]]:
    """What node `name` (namespace /) does on the graph, in the policy's terms (action parts folded into
    their action: a server replies to its goal services and publishes feedback and status)."""
    used = {key: set() for key in ("publish", "subscribe", "reply", "request", "execute", "call")}
    entities = {
        "publish": node.get_publisher_names_and_types_by_node(name, "/"),
        "subscribe": node.get_subscriber_names_and_types_by_node(name, "/"),
        "reply": node.get_service_names_and_types_by_node(name, "/"),
        "request": node.get_client_names_and_types_by_node(name, "/"),
    }
    for kind, found in entities.items():
        for topic, _types in found:
            if "/_action/" in topic:
                action, part = topic.split("/_action/")
                assert part in ACTION_SERVICES + ACTION_TOPICS, topic
                used["execute" if kind in ("publish", "reply") else "call"].add(action)
            else:
                used[kind].add(topic)
    return used


@pytest.fixture(scope="module")
def running_graph(tmp_path_factory):
    import rclpy

    from vla_r1_ros.nodes.trial_client import GraphClient

    log = tmp_path_factory.mktemp("sros2")
    launcher = GraphLauncher(GraphArgs(log_dir=str(log), record=True), log / "logs")
    launcher.start()
    rclpy.init()
    graph = GraphClient()
    try:
        graph.wait_for_graph(timeout_s=180.0)
        yield graph
    finally:
        graph.close()
        rclpy.try_shutdown()
        launcher.stop()


def test_every_topic_service_and_action_of_the_running_graph_is_allowed_by_its_enclave(running_graph):
    rights = policy_rights(config_dir() / "sros2_policy.xml")
    recorded = GraphArgs(record=True)
    processes = {spec.name: spec for spec in [*build_graph(recorded), recording(recorded).recorder_process()]}
    nodes = {node.name: enclave_of(process) for process in processes.values() for node in process.nodes}
    nodes.pop("robot_state_publisher", None)  # another package's process: not covered (the policy says so)
    nodes[running_graph.node.get_name()] = "/vla_r1/trials"
    introspection = running_graph.node
    deadline = time.monotonic() + 30.0
    while set(nodes) - set(introspection.get_node_names()) and time.monotonic() < deadline:
        time.sleep(0.2)  # discovery of every node
    missing: list[str] = []
    for name, enclave in sorted(nodes.items()):
        allowed = rights.get((enclave, name))
        assert allowed is not None, f"the policy has no profile for node {name} in enclave {enclave}"
        for permission, names in graph_use(introspection, name).items():
            missing += [f"{enclave} {name} {permission} {n}" for n in sorted(names - allowed[permission])]
    assert not missing, "used by the graph, not allowed by config/sros2_policy.xml:\n" + "\n".join(missing)


def test_every_process_the_graph_launches_has_an_enclave_of_the_policy():
    enclaves = {e.get("path") for e in ET.parse(config_dir() / "sros2_policy.xml").getroot().iter("enclave")}
    for camera, executor, policy in (("sim", "sim", "scripted"), ("realsense", "moveit", "vla_r1")):
        args = GraphArgs(camera=camera, executor=executor, policy=policy, keystore="/keys")
        for process in [*build_graph(args), recording(replace(args, record=True)).recorder_process()]:
            if process.package != "vla_r1_ros":
                continue  # another package's process: not covered (the policy says so)
            kwargs = process.launch_kwargs(args)
            assert kwargs["ros_arguments"] == ["--enclave", enclave_of(process)] and enclave_of(process) in enclaves
            assert kwargs["additional_env"]["ROS_SECURITY_STRATEGY"] == "Enforce"
            assert kwargs["additional_env"]["ROS_SECURITY_KEYSTORE"] == "/keys"
