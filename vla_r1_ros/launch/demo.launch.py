"""The VLA-R1 stack: `ros2 launch vla_r1_ros demo.launch.py [camera:=sim|realsense|realsense_ros|replay|bag]
[policy:=scripted|vla_r1] [executor:=sim|moveit] [model:=…] [log_dir:=…] [use_rviz:=true] [record:=true]`.

The node graph itself (processes, nodes, parameters, remappings, respawn) is not written here: it
comes from `vla_r1_ros.graph.build_graph`, the same description `vla-r1 demo` starts on a machine
without launch_ros, so the two cannot drift apart.

Everything that can stop the launch is decided before the first process starts (launch leaves the
processes it started running when it fails later, ros2/launch#747): the arguments are validated by
`GraphArgs.from_strings` (a wrong one ends the launch with its name and the allowed values), and other
packages' processes are looked up in the ament index first — an optional one that is not installed
(robot_state_publisher, rviz2) is skipped with a warning naming its apt package, a needed one
(realsense2_camera; rosbag2's MCAP recorder with record:=true) ends the launch naming it. Every process
started dies with the launch, even when launch itself crashes (`die_with_launcher`, the `prefix` of each
Node and of `ros2 bag record`).
"""

import launch.logging
from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from vla_r1_ros.graph import ARGUMENT_HELP, GraphArgs, build_graph, installed_processes, recording


def package_installed(package):
    try:
        get_package_share_directory(package)
    except PackageNotFoundError:
        return False
    return True


def launch_graph(context, *args, **kwargs):
    values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENT_HELP}
    graph_args = GraphArgs.from_strings(values)
    processes, warnings = installed_processes(build_graph(graph_args), package_installed)
    bag = recording(graph_args)
    if bag:
        bag.check_installed(package_installed)
    logger = launch.logging.get_logger("launch.user")
    for warning in warnings:
        logger.warning(warning)
    nodes = [Node(**process.launch_kwargs(graph_args)) for process in processes]
    return nodes + ([ExecuteProcess(**bag.ros2_bag_record(graph_args))] if bag else [])


def generate_launch_description():
    defaults = GraphArgs().as_strings()
    declared = [
        DeclareLaunchArgument(name, default_value=defaults[name], description=help_text)
        for name, help_text in ARGUMENT_HELP.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=launch_graph)])
