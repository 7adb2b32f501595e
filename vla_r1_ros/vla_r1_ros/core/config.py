"""The package's YAML configuration: the one source of truth for camera, workspace and model numbers.

Nodes and the `vla-r1` command both read `config/<name>.yaml` through `load_config`; a process reads
every file once as one `PackageConfig` and hands it to what it builds (nodes, workcell, policies,
executors), so no constructor reads a file. The directory is, in order: `$VLA_R1_CONFIG_DIR`; the
source tree's `config/` (editable install, tests); the installed `share/vla_r1_ros/config` found
through the ament index (colcon / apt install).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

PACKAGE = "vla_r1_ros"


class ConfigError(ValueError):
    """A configuration file is missing or holds a wrong value."""


def config_dir() -> Path:
    override = os.environ.get("VLA_R1_CONFIG_DIR")
    if override:
        return Path(override)
    source_tree = Path(__file__).resolve().parents[2] / "config"
    if source_tree.is_dir():
        return source_tree
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory(PACKAGE)) / "config"


def package_share_path(*parts: str) -> Path:
    """A file shipped with the package (urdf/, launch/, config/), source tree or installed."""
    return config_dir().parent.joinpath(*parts)


def load_config(name: str, directory: str | Path | None = None) -> dict[str, Any]:
    """Read `config/<name>.yaml` (or `<directory>/<name>.yaml`) as a dict."""
    path = Path(directory or config_dir()) / f"{name}.yaml"
    return dict(_read_yaml(str(path)))


CONFIG_FILES = ("camera", "workspace", "workcell", "model", "moveit_py", "nodes", "dataset")


@dataclass(frozen=True)
class PackageConfig:
    """Every `config/*.yaml` of the package as read by one process (`PackageConfig.load()`, once)."""

    directory: Path
    camera: Mapping[str, Any]
    workspace: Mapping[str, Any]
    workcell: Mapping[str, Any]
    model: Mapping[str, Any]
    moveit_py: Mapping[str, Any]
    nodes: Mapping[str, Any]  # every node parameter's default, in ROS 2 parameter-file form
    dataset: Mapping[str, Any]  # dataset exports (export-dataset --format lerobot)

    @classmethod
    def load(cls, directory: str | Path | None = None) -> PackageConfig:
        root = Path(directory or config_dir())
        return cls(directory=root, **{name: load_config(name, root) for name in CONFIG_FILES})


def node_defaults(config: PackageConfig, node: str) -> dict[str, Any]:
    """`config/nodes.yaml`'s parameter defaults of one node (`<node>: ros__parameters: {...}`, the form
    `--ros-args --params-file` reads): the only place a node parameter's default is written."""
    try:
        return dict(config.nodes[node]["ros__parameters"])
    except (KeyError, TypeError):
        raise ConfigError(f"{config.directory / 'nodes.yaml'} has no '{node}: ros__parameters:' section") from None


@lru_cache(maxsize=32)
def _read_yaml(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file not found: {path}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at its top level")
    return data
