"""Typed, validated settings of the `vla_r1` policy, one per backend, built from config/model.yaml.

config/model.yaml has a `backend:` key and three sections: `generation:` (shared by both backends),
`transformers:` (the in-process model) and `openai:` (a remote OpenAI-compatible server such as
`vllm serve`). The file is read once by the caller (node, CLI, benchmark) and passed to
`from_config` together with overrides (node parameters, command-line flags) whose names are the
field names of these classes — unique across sections, so a flat parameter list maps onto them.
A wrong value raises `ValueError` naming the setting, before anything is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

BACKENDS = ("transformers", "openai")
# auto: the fastest precision measured for the device the model lands on (`resolve_quantization`).
# int4_decode: CPU only; decode steps on a 4-bit copy of the decoder's weights (policies/int4_decode.py).
QUANTIZATIONS = ("auto", "nf4", "int8", "int4_decode", "none")
INT4_GROUP_SIZES = (32, 64, 128, 256)  # what torch's CPU int4 kernel takes
DEVICES = ("auto", "cuda", "cpu")
DTYPES = ("bfloat16", "float16", "float32")
# What `quantization: auto` becomes, per device: the measurements behind it are in docs/inference.md.
# CPU: int4_decode (bf16 prefill, 4-bit decode steps): 55 s a decision against bf16's 89 s and nf4's
# 4-bit prefill; nf4 is the choice for memory. GPU: bf16 (bitsandbytes' 4/8-bit kernels dequantize on
# every matmul and are slower at batch 2; int4_decode's kernels are CPU ones).
AUTO_QUANTIZATION = {"cpu": "int4_decode", "cuda": "none"}


def _typed(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` restricted to the fields of dataclass `cls`, each converted to the field's type
    (YAML and ROS parameters give ints for floats and strings for everything on the command line)."""
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in values or values[f.name] is None or f.type not in ("bool", "int", "float", "str"):
            continue
        value = values[f.name]
        try:
            if f.type == "bool":
                if isinstance(value, str):
                    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(value)
                    value = value.lower() in ("true", "1", "yes")
                out[f.name] = bool(value)
            elif f.type == "int":
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError(value)
                out[f.name] = int(value)
            else:
                out[f.name] = {"float": float, "str": str}[f.type](value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"setting {f.name} must be a {f.type}, not {value!r}") from exc
    return out


def _section(model_config: Mapping[str, Any], name: str) -> dict[str, Any]:
    section = model_config.get(name, {})
    if not isinstance(section, Mapping):
        raise ValueError(f"config/model.yaml: `{name}:` must be a mapping")
    return dict(section)


def _build(cls: type, section: str, values: Mapping[str, Any], **given: Any):
    """`cls` from the typed `values`; a setting neither the section nor an override gives is an error."""
    typed = _typed(cls, values)
    missing = [f.name for f in fields(cls) if f.name not in typed and f.name not in given]
    if missing:
        raise ValueError(f"config/model.yaml: `{section}:` lacks {', '.join(missing)}")
    return cls(**typed, **given)


def _unknown(overrides: Mapping[str, Any], *classes: type) -> None:
    known = {f.name for cls in classes for f in fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}")


@dataclass(frozen=True)
class GenerationSettings:
    """How answers are generated, whichever backend generates them."""

    max_new_tokens: int
    greedy: bool  # false: the official sampling (temperature, top_p); true: argmax, reproducible
    temperature: float
    top_p: float
    repetition_penalty: float
    seed: int
    # After this many answer tokens without `</think>`, the reasoning is closed with
    # `</think> so, the answer is <output>` and the answer follows. 0 = no budget (official).
    think_budget: int
    # After `</think>`, decode under a grammar of the official answer format with numbers in [0, 1].
    constrained: bool
    # Each row ends at its `</output>` (the model's answer is complete there).
    stop_at_output: bool

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, not {self.max_new_tokens}")
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0:
            raise ValueError(
                "need temperature > 0, 0 < top_p <= 1 and repetition_penalty > 0, got "
                f"{self.temperature}, {self.top_p}, {self.repetition_penalty}"
            )
        if not 0 <= self.think_budget < self.max_new_tokens:
            raise ValueError(f"think_budget must be in [0, max_new_tokens), not {self.think_budget}")


@dataclass(frozen=True)
class TransformersSettings:
    """The model in this process, through transformers (+ bitsandbytes)."""

    model: str
    adapter: str  # a PEFT LoRA adapter directory loaded onto `model` ("" = none); made for that model
    local_files_only: bool
    quantization: str
    device: str
    dtype: str
    min_pixels: int
    max_pixels: int
    # Speed levers (docs/inference.md has what each one measured).
    vision_once: bool  # the vision tower runs once per image, shared by both task rows
    static_cache: bool  # a preallocated KV cache (transformers' "static" cache implementation)
    compile: bool  # torch.compile the decoder step (needs static_cache)
    int4_group_size: int  # int4_decode: input channels per scale and zero
    generation: GenerationSettings

    def __post_init__(self) -> None:
        for value, allowed, what in (
            (self.quantization, QUANTIZATIONS, "quantization"),
            (self.device, DEVICES, "device"),
            (self.dtype, DTYPES, "dtype"),
        ):
            if value not in allowed:
                raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(f"need 0 < min_pixels <= max_pixels, got {self.min_pixels}, {self.max_pixels}")
        if self.int4_group_size not in INT4_GROUP_SIZES:
            raise ValueError(
                f"int4_group_size must be one of {', '.join(map(str, INT4_GROUP_SIZES))}, not {self.int4_group_size}"
            )
        if self.quantization == "int4_decode" and (self.device == "cuda" or self.dtype != "bfloat16"):
            raise ValueError(
                "quantization int4_decode runs torch's CPU int4 kernels: it needs device cpu/auto and dtype bfloat16"
            )
        if self.compile and not self.static_cache:
            raise ValueError("compile needs static_cache: a growing cache recompiles the graph every step")
        if not self.model:
            raise ValueError("model must name a checkpoint (hub id or directory)")

    @classmethod
    def from_config(cls, model_config: Mapping[str, Any], **overrides: Any) -> TransformersSettings:
        """`transformers:` and `generation:` of config/model.yaml, then `overrides` (flat field names).

        Settings of the other backend among the overrides are ignored: the node declares all of them
        whichever backend it runs."""
        _unknown(overrides, cls, GenerationSettings, OpenAISettings)
        generation = _build(GenerationSettings, "generation", _section(model_config, "generation") | overrides)
        return _build(cls, "transformers", _section(model_config, "transformers") | overrides, generation=generation)

    def resolve_quantization(self, device_type: str) -> str:
        """nf4 | int8 | int4_decode | none for a model on `device_type` ("cpu" / "cuda"): `auto` follows
        the measurements."""
        quantization = AUTO_QUANTIZATION[device_type] if self.quantization == "auto" else self.quantization
        if quantization == "int4_decode" and device_type != "cpu":
            raise ValueError(f"quantization int4_decode runs on the CPU, not on {device_type}")
        return quantization


@dataclass(frozen=True)
class OpenAISettings:
    """A remote OpenAI-compatible chat-completions server (`vllm serve GigaAI-Research/vla-r1`, SGLang)."""

    server_url: str
    served_model: str  # the server's model id; "" = the first one it lists at /v1/models
    api_key_env: str  # environment variable holding the bearer token ("" or unset: none)
    connect_timeout_s: float
    read_timeout_s: float  # longest silence between two streamed chunks
    retries: int  # extra attempts of a request that failed before its first streamed token
    jpeg_quality: int  # the frame is sent as JPEG, as the official client sends it
    generation: GenerationSettings

    def __post_init__(self) -> None:
        if not self.server_url.startswith(("http://", "https://")):
            raise ValueError(f"server_url must be an http(s) URL ending in /v1, not {self.server_url!r}")
        if self.connect_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise ValueError("connect_timeout_s and read_timeout_s must be > 0")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, not {self.retries}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], not {self.jpeg_quality}")

    @classmethod
    def from_config(cls, model_config: Mapping[str, Any], **overrides: Any) -> OpenAISettings:
        """`openai:` and `generation:` of config/model.yaml, then `overrides` (flat field names)."""
        _unknown(overrides, cls, GenerationSettings, TransformersSettings)
        generation = _build(GenerationSettings, "generation", _section(model_config, "generation") | overrides)
        return _build(cls, "openai", _section(model_config, "openai") | overrides, generation=generation)


def backend_of(model_config: Mapping[str, Any], override: str | None = None) -> str:
    backend = str(override or model_config.get("backend", "transformers"))
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    return backend


def setting_names() -> tuple[str, ...]:
    """Every flat setting name of both backends (the inference node declares each as a parameter)."""
    names: list[str] = []
    for cls in (GenerationSettings, TransformersSettings, OpenAISettings):
        names += [f.name for f in fields(cls) if f.name != "generation" and f.name not in names]
    return tuple(names)
