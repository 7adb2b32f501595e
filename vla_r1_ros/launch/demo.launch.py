"""The VLA-R1 stack: `ros2 launch vla_r1_ros demo.launch.py [camera:=sim|realsense|realsense_ros|replay]
[policy:=scripted|vla_r1] [executor:=sim|moveit] [model:=…] [log_dir:=…] [use_rviz:=true]`.

The node graph itself (processes, nodes, parameters, remappings, respawn) is not written here: it
comes from `vla_r1_ros.graph.build_graph`, the same description `vla-r1 demo` starts on a machine
without launch_ros, so the two cannot drift apart.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from vla_r1_ros.graph import ARGUMENT_HELP, GraphArgs, build_graph


def launch_graph(context, *args, **kwargs):
    values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENT_HELP}
    graph_args = GraphArgs.from_strings(values)
    return [Node(**process.launch_kwargs(graph_args)) for process in build_graph(graph_args)]


def generate_launch_description():
    defaults = GraphArgs().as_strings()
    declared = [
        DeclareLaunchArgument(name, default_value=defaults[name], description=help_text)
        for name, help_text in ARGUMENT_HELP.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=launch_graph)])
