"""Arm executors (one interface): the simulated Panda and MoveIt (moveit_py)."""
