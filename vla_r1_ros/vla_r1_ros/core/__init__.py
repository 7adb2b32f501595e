"""ROS-free functional core: no module here imports rclpy."""
