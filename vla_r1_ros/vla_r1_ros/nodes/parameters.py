"""Node parameters, declared with the defaults `config/nodes.yaml` gives them (`core.config.node_defaults`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rclpy.node import Node

from vla_r1_ros.core.config import PackageConfig, node_defaults


def declare_parameters(
    node: Node, config: PackageConfig, section: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Declare every parameter `config/nodes.yaml` lists under `section` (the node's own name: a launch
    may rename the node) and return their values, launch overrides applied. `extra`: defaults that come
    from another config file (the inference node's model settings from config/model.yaml), never literals."""
    defaults = node_defaults(config, section) | dict(extra or {})
    return {name: node.declare_parameter(name, default).value for name, default in defaults.items()}
