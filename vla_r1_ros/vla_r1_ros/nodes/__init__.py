"""rclpy nodes: each translates messages and parameters into calls to the core."""
