"""VLA-R1 on a ROS 2 robot arm.

`vla_r1_ros.core` is the ROS-free functional core (prompts, parsing, rewards, metrics, geometry,
lifting, planning); `nodes` is the thin rclpy shell around it; `cameras`, `policies` and
`executors` hold one small interface each with its swappable implementations.
"""

__version__ = "0.1.0"
