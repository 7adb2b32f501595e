"""Test support that ships with the package: offline tiny models, ROS test helpers."""
