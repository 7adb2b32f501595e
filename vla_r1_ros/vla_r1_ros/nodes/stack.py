"""`stack`: run several nodes of the graph in one process, as a ROS 2 component container does.

Usage (what launch/demo.launch.py and `vla-r1 demo` start): `stack --process sim_stack camera=sim …`
(`name=value`, not `name:=value`, which rcl would take for a remapping rule).
The process's nodes come from `vla_r1_ros.graph.build_graph` for the given graph arguments; each gets
its graph parameters as overrides and its own name, and all spin in one MultiThreadedExecutor.
"""

from __future__ import annotations

import argparse
import sys

import rclpy
from rclpy.parameter import Parameter

from vla_r1_ros.graph import GraphArgs, NodeSpec, find_process
from vla_r1_ros.nodes.spin import spin_nodes


def node_kwargs(spec: NodeSpec) -> dict:
    """rclpy.Node keyword arguments that give a composed node its graph name, parameters, remappings."""
    cli_args = ["--ros-args", "-r", f"__node:={spec.name}"]
    for source, target in spec.remappings:
        cli_args += ["-r", f"{source}:={target}"]
    return {
        "cli_args": cli_args,
        "parameter_overrides": [Parameter(key, value=value) for key, value in spec.parameters.items()],
    }


def parse_arguments(argv: list[str]) -> tuple[str, GraphArgs]:
    parser = argparse.ArgumentParser(prog="stack", description=__doc__.splitlines()[0])
    parser.add_argument("--process", required=True, help="process name in the graph, e.g. sim_stack")
    parser.add_argument("graph_args", nargs="*", metavar="NAME=VALUE", help="graph (launch) arguments")
    parsed = parser.parse_args(argv)
    values = dict(item.split("=", 1) for item in parsed.graph_args)
    return parsed.process, GraphArgs.from_strings(values)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv if argv is None else argv
    process_name, graph_args = parse_arguments(rclpy.utilities.remove_ros_args(argv)[1:])
    process = find_process(graph_args, process_name)
    sys.exit(
        spin_nodes(lambda context: [spec.load_class()(context, **node_kwargs(spec)) for spec in process.nodes], argv)
    )


if __name__ == "__main__":
    main()
