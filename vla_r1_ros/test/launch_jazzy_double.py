"""A test double of the parts of ROS 2 `launch` and `launch_ros` that `launch/demo.launch.py` uses, for
machines where they cannot be installed (this one).

Written from the Jazzy sources, exposing only names that exist there with their signatures:
- ros2/launch, branch `jazzy` at 09403fcebedb68dd259e9ab6b35bd8712b6596ec: `launch/launch/__init__.py`
  (`LaunchDescription`, the submodules `actions`, `logging`, `substitutions`),
  `launch/launch/launch_description.py`, `launch/launch/actions/declare_launch_argument.py`,
  `launch/launch/actions/opaque_function.py`, `launch/launch/substitutions/launch_configuration.py`,
  `launch/launch/logging/__init__.py` (`get_logger` returns a `logging.Logger`), and for the keyword
  arguments a Node passes on: `launch/launch/actions/execute_process.py`, `execute_local.py`,
  `launch/launch/action.py`; `ExecuteProcess` itself (`launch/launch/actions/__init__.py` exports it;
  `ExecuteProcess.__init__` in `execute_process.py`: `cmd`, `prefix`, `name`, `cwd`, `env`, `additional_env`,
  the rest passed to `ExecuteLocal.__init__` and `Action.__init__`);
- ros2/launch_ros, branch `jazzy` at 62c56e53e86812023697fe330c83d327f54e7b18:
  `launch_ros/launch_ros/actions/node.py` (`Node.__init__`'s keyword-only arguments).

Each module is a real module object holding only those names, so importing or reading any other name
fails as it would against a module that lacks it; `Node` refuses keyword arguments the real one does
not take (TypeError). Behind the API: `DeclareLaunchArgument` keeps its default, `LaunchConfiguration`
performs from `context.launch_configurations` (its default, else the real error), `OpaqueFunction`
runs its function with the context when a test "executes" it, `Node` and `ExecuteProcess` record their
arguments. `launch_file(LAUNCH_FILE)` loads a launch file against these modules and `launch(...)` runs its
description like `ros2 launch … name:=value` does up to the point where processes would start
(`executed_processes(...)`: the same, the ExecuteProcess actions it returned).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# ExecuteLocal.__init__ and Action.__init__: what ExecuteProcess passes on.
EXECUTE_LOCAL_KEYWORDS = frozenset(
    {"shell", "sigterm_timeout", "sigkill_timeout", "emulate_tty", "output", "output_format", "cached_output"}
    | {"log_cmd", "on_exit", "respawn", "respawn_delay", "respawn_max_retries", "condition"}
)
EXECUTE_PROCESS_KEYWORDS = frozenset({"cmd", "prefix", "name", "cwd", "env", "additional_env"}) | EXECUTE_LOCAL_KEYWORDS
LAUNCH_ROS_NODE_KEYWORDS = frozenset(
    # Node.__init__ itself
    {"executable", "package", "name", "namespace", "exec_name", "parameters", "remappings", "ros_arguments"}
    # passed on to ExecuteProcess (which Node builds its `cmd` for)
    | {"arguments", "prefix", "cwd", "env", "additional_env"}
    | EXECUTE_LOCAL_KEYWORDS
)


class SubstitutionFailure(Exception):
    """launch.substitutions.substitution_failure.SubstitutionFailure."""


class LaunchDescription:
    def __init__(self, initial_entities=None, *, deprecated_reason=None):
        self.entities = list(initial_entities) if initial_entities is not None else []


class DeclareLaunchArgument:
    def __init__(self, name, *, default_value=None, description=None, choices=None, condition=None):
        self.name, self.default_value, self.description, self.choices = name, default_value, description, choices


class OpaqueFunction:
    def __init__(self, *, function, args=None, kwargs=None, condition=None):
        if not callable(function):
            raise TypeError(f"OpaqueFunction expected a callable for 'function', got '{type(function)}'")
        self.function, self.args, self.kwargs = function, list(args or []), dict(kwargs or {})

    def execute(self, context):
        return self.function(context, *self.args, **self.kwargs)


class LaunchConfiguration:
    def __init__(self, variable_name, *, default=None):
        self.variable_name, self.default = variable_name, default

    def perform(self, context) -> str:
        if self.variable_name not in context.launch_configurations:
            if self.default is None:
                raise SubstitutionFailure(f"launch configuration '{self.variable_name}' does not exist")
            return str(self.default)
        return context.launch_configurations[self.variable_name]


class ExecuteProcess:
    def __init__(self, **kwargs):
        unknown = set(kwargs) - EXECUTE_PROCESS_KEYWORDS
        if unknown or "cmd" not in kwargs:
            raise TypeError(
                f"ExecuteProcess() takes keyword arguments {sorted(EXECUTE_PROCESS_KEYWORDS)}; got {sorted(unknown)}"
            )
        self.kwargs = kwargs


class Node:
    def __init__(self, *args, **kwargs):
        unknown = set(kwargs) - LAUNCH_ROS_NODE_KEYWORDS
        if args or unknown or "executable" not in kwargs:
            raise TypeError(
                f"Node() takes keyword arguments {sorted(LAUNCH_ROS_NODE_KEYWORDS)}; got {args} {sorted(unknown)}"
            )
        self.kwargs = kwargs


def _module(name: str, **names: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(names)
    return module


def modules() -> dict[str, types.ModuleType]:
    actions = _module(
        "launch.actions",
        DeclareLaunchArgument=DeclareLaunchArgument,
        ExecuteProcess=ExecuteProcess,
        OpaqueFunction=OpaqueFunction,
    )
    substitutions = _module("launch.substitutions", LaunchConfiguration=LaunchConfiguration)
    launch_logging = _module("launch.logging", get_logger=logging.getLogger)
    launch = _module(
        "launch",
        LaunchDescription=LaunchDescription,
        actions=actions,
        substitutions=substitutions,
        logging=launch_logging,
    )
    launch_ros_actions = _module("launch_ros.actions", Node=Node)
    return {
        "launch": launch,
        "launch.actions": actions,
        "launch.substitutions": substitutions,
        "launch.logging": launch_logging,
        "launch_ros": _module("launch_ros", actions=launch_ros_actions),
        "launch_ros.actions": launch_ros_actions,
    }


def launch_file(path: Path, monkeypatch) -> types.ModuleType:
    """The launch file's module, imported against these doubles (undone with the monkeypatch)."""
    for name, module in modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("launch_file_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def launch(module: types.ModuleType, arguments: Mapping[str, str]) -> list[dict[str, Any]]:
    """`ros2 launch <file> name:=value …` up to starting processes: the keyword arguments of every Node."""
    return [action.kwargs for action in _actions(module, arguments) if isinstance(action, Node)]


def executed_processes(module: types.ModuleType, arguments: Mapping[str, str]) -> list[dict[str, Any]]:
    """As `launch`: the keyword arguments of every ExecuteProcess (a command that is not a ROS node)."""
    return [action.kwargs for action in _actions(module, arguments) if isinstance(action, ExecuteProcess)]


def _actions(module: types.ModuleType, arguments: Mapping[str, str]) -> list[Any]:
    """The declared arguments' defaults overridden by `arguments` (an undeclared one is a mistake in the
    test: an error), then each OpaqueFunction executed in order; the actions they return."""
    description = module.generate_launch_description()
    declared = {e.name: e.default_value for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    undeclared = set(arguments) - set(declared)
    if undeclared:
        raise ValueError(f"undeclared launch arguments {sorted(undeclared)}")
    context = types.SimpleNamespace(launch_configurations=declared | dict(arguments))
    actions = []
    for entity in description.entities:
        if isinstance(entity, OpaqueFunction):
            actions += list(entity.execute(context) or [])
    return actions
