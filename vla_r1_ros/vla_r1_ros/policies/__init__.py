"""Policies (one interface, `policies/base.py`): the VLA-R1 model and the scripted simulator expert.

`make_policy` is the one place a policy is built from configuration:
- `vla_r1`, backend `transformers` (`policies/vla_r1.py`): the model in this process;
- `vla_r1`, backend `openai` (`policies/remote.py`): the model on an OpenAI-compatible server
  (`vllm serve`, SGLang), shared by several robots;
- `scripted` (`policies/scripted.py`): the simulator-only expert, for tests and teaching.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vla_r1_ros.policies.base import Policy

if TYPE_CHECKING:
    from vla_r1_ros.core.config import PackageConfig

POLICIES = ("scripted", "vla_r1")
# The scripted policy's trajectories: carry (object -> place) | sharerobot (gripper -> object -> place).
PATH_CONVENTIONS = ("carry", "sharerobot")


def make_policy(name: str, config: PackageConfig, params: Mapping[str, Any] | None = None) -> Policy:
    """Build (not load) the policy `name` from the caller's package configuration.

    `vla_r1`: settings from `config.model` (config/model.yaml); `params` override them by flat name
    (policies/settings.py), `backend` among them.
    `scripted`: `params` are `ScriptedExpertPolicy`'s keyword arguments (scene_source, noise, seed,
    path_convention); it projects with `config.camera`.
    """
    params = dict(params or {})
    if name == "vla_r1":
        from vla_r1_ros.policies.settings import OpenAISettings, TransformersSettings, backend_of

        model_config = config.model
        backend = backend_of(model_config, params.pop("backend", None))
        if backend == "openai":
            from vla_r1_ros.policies.remote import RemotePolicy

            return RemotePolicy(OpenAISettings.from_config(model_config, **params))
        from vla_r1_ros.policies.vla_r1 import VlaR1Policy

        return VlaR1Policy(TransformersSettings.from_config(model_config, **params))
    if name == "scripted":
        from vla_r1_ros.policies.scripted import ScriptedExpertPolicy

        return ScriptedExpertPolicy(config.camera, **params)
    raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICIES)}")
