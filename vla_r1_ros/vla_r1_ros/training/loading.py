"""What SFT and GRPO load the same way: the model through the inference loader, the image-only
processor TRL needs, and the LoRA — a new one, or a given adapter to train on (`init_adapter`).

The model and its image processor / tokenizer / chat template are loaded by `VlaR1Policy`, the loader
inference uses (including the bitsandbytes settings): nf4 QLoRA + bf16 on a GPU, float32 on the CPU
(bitsandbytes training needs a GPU). Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

# LoRA on the language model's attention and MLP projections only. The vision tower has modules named
# gate_proj / up_proj / down_proj too; a bare list of names would adapt them as well.
LORA_TARGET_MODULES = r".*language_model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)"
ADAPTER_DIR = "adapter"  # where a run saves its LoRA adapter (or full model) in its output directory
# The user turn a model trains on: `rl` = the export's `prompt` column (the official RL stage's layout, verl
# `_build_messages`: the image where the prompt's `<image>` was, no leading space); `inference` = the
# message `VlaR1Policy` sends (the official client's, `prompts.build_messages`: " " + the prompt with its
# literal `<image>`, then the image). A small model trained on one layout does not answer the other
# (docs/episodes.md, "Does it learn?").
PROMPT_LAYOUTS = ("rl", "inference")


class TrainingInputError(ValueError):
    """Training input refused before anything trains (no usable record, an adapter of another model)."""


@dataclass(frozen=True)
class LoraSettings:
    enabled: bool  # false: full fine-tune
    r: int
    alpha: int
    dropout: float
    init_adapter: str  # "" = a new LoRA; else a PEFT adapter directory to go on training


@dataclass
class TrainingSettings:
    """What SFT and GRPO runs share; each stage subclasses it with its own fields and defaults."""

    # The smallest run that checks the pipeline on a CPU in seconds (not the learning); a stage adds its own.
    CPU_SMOKE: ClassVar[dict[str, Any]] = {
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "max_steps": 2,
        "lora_r": 8,
        "lora_alpha": 16,
        "gradient_checkpointing": False,  # memory is no concern here; cached generation is ~2.5x faster
        "quantization": "none",
        "device": "cpu",
    }

    data: str  # export directory (or its hf/ folder)
    model: str  # checkpoint directory or hub id in the local cache
    output: str
    learning_rate: float = 1e-4
    per_device_train_batch_size: int = 2
    gradient_accumulation_steps: int = 8
    num_train_epochs: float = 3.0
    max_steps: int = -1
    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    init_adapter: str = ""  # a PEFT adapter (e.g. `train-sft`'s) to go on training instead of a new LoRA
    prompt_layout: str = "rl"  # rl | inference (PROMPT_LAYOUTS): the user turn trained on
    # Recompute activations in the backward pass: the memory that lets a 3B model train on one GPU, at the
    # price of generating without a KV cache (transformers turns the cache off under checkpointing).
    gradient_checkpointing: bool = True
    quantization: str = "nf4"  # nf4 | int8 | none (bitsandbytes; GPU)
    device: str = "auto"  # auto | cuda | cpu
    logging_steps: int = 1
    save_steps: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.prompt_layout not in PROMPT_LAYOUTS:
            raise ValueError(f"prompt_layout must be one of {', '.join(PROMPT_LAYOUTS)}, not {self.prompt_layout!r}")

    def lora_settings(self) -> LoraSettings:
        return LoraSettings(self.lora, self.lora_r, self.lora_alpha, self.lora_dropout, self.init_adapter)

    @classmethod
    def cpu_smoke(cls, data: str, model: str, output: str, **overrides: Any) -> Self:
        """`CPU_SMOKE` settings (the stage's own added), then `overrides`."""
        return cls(data, model, output, **{**TrainingSettings.CPU_SMOKE, **cls.CPU_SMOKE, **overrides})


@dataclass
class TrainingModel:
    model: Any  # the base model, or a trainable PeftModel when starting from an adapter
    processor: Any
    peft_config: Any  # LoraConfig for the trainer to wrap the model with, or None
    on_gpu: bool
    checkpoint: Path


def processor_from_parts(image_processor: Any, tokenizer: Any, chat_template: str) -> Any:
    """A Qwen2.5-VL processor for images only. `Qwen2_5_VLProcessor` insists on a video processor,
    which needs torchvision (not installable here); TRL only needs the image path, so this subclass
    declares the two parts it has — `ProcessorMixin` derives a processor's parts from `__init__`'s
    signature."""
    from transformers import Qwen2_5_VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class Qwen2_5_VLImageOnlyProcessor(Qwen2_5_VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token = "<|image_pad|>"
            self.video_token = "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return Qwen2_5_VLImageOnlyProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template
    )


def prompt_in_layout(messages: list[dict[str, Any]], layout: str) -> list[dict[str, Any]]:
    """An export row's `prompt` (the RL layout) as the user turn of `layout` (PROMPT_LAYOUTS). `inference`:
    the prompt text put back together (the image part is its `<image>`) as `prompts.build_messages` sends it,
    with a bare image placeholder for TRL to fill from the row's `image`."""
    from vla_r1_ros.core.dataset import IMAGE_TOKEN

    if layout == "rl":
        return messages
    if layout != "inference":
        raise ValueError(f"prompt_layout must be one of {', '.join(PROMPT_LAYOUTS)}, not {layout!r}")
    (message,) = messages
    prompt = "".join(IMAGE_TOKEN if part["type"] == "image" else part["text"] for part in message["content"])
    return [{"role": message["role"], "content": [{"type": "text", "text": " " + prompt}, {"type": "image"}]}]


def with_prompt_layout(dataset: Any, layout: str) -> Any:
    """The dataset with its `prompt` column in `layout` (in memory; the export is not touched)."""
    if layout == "rl":
        return dataset
    return dataset.map(lambda row: {"prompt": prompt_in_layout(row["prompt"], layout)}, keep_in_memory=True)


def trains_on_gpu(device: str) -> bool:
    """Whether a run with this `device` setting (auto | cuda | cpu) trains on a GPU."""
    import torch

    return device != "cpu" and torch.cuda.is_available()


def process_state(device: str) -> Any:
    """This process's place among `accelerate launch`'s (rank, world size; one process without it).
    Created with the trainer's own CPU flag: without it, accelerate takes torchrun's ranks on a machine
    without CUDA for independent single processes, and every one of them would think it is rank 0."""
    from accelerate import PartialState

    return PartialState(cpu=not trains_on_gpu(device))


def _policy(model: str, quantization: str, device: str, seed: int):
    from vla_r1_ros.core.config import load_config
    from vla_r1_ros.policies.settings import TransformersSettings
    from vla_r1_ros.policies.vla_r1 import VlaR1Policy

    on_gpu = trains_on_gpu(device)
    settings = TransformersSettings.from_config(
        load_config("model"),
        model=model,
        adapter="",  # a training run attaches its adapter trainable below, not through the inference path
        quantization=quantization if on_gpu else "none",  # bitsandbytes training needs a GPU
        device="cuda" if on_gpu else "cpu",
        dtype="bfloat16" if on_gpu else "float32",
        seed=seed,
    )
    return VlaR1Policy(settings), on_gpu


def check_init_adapter(model: str, lora: LoraSettings) -> None:
    """Refuse (TrainingInputError) an `init_adapter` made for another base model, before loading weights."""
    from vla_r1_ros.policies.adapter import AdapterError, check_adapter

    if not lora.init_adapter:
        return
    if not lora.enabled:
        raise TrainingInputError("a full fine-tune cannot start from a LoRA adapter (drop --full or --init-adapter)")
    policy, _on_gpu = _policy(model, "none", "cpu", 0)
    try:
        check_adapter(lora.init_adapter, model, policy.resolve_checkpoint())
    except AdapterError as exc:
        raise TrainingInputError(str(exc)) from None


def load_training_model(model: str, quantization: str, device: str, seed: int, lora: LoraSettings) -> TrainingModel:
    """The model to train, its processor and its LoRA (`check_init_adapter` first: this loads weights)."""
    from peft import LoraConfig, PeftModel

    policy, on_gpu = _policy(model, quantization, device, seed)
    parts = policy.components()  # one loader for inference and training: the policy's own
    processor = processor_from_parts(parts.image_processor, parts.tokenizer, parts.chat_template)
    network, peft_config = parts.model, None
    if lora.init_adapter:
        network = PeftModel.from_pretrained(parts.model, lora.init_adapter, is_trainable=True)
    elif lora.enabled:
        peft_config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=LORA_TARGET_MODULES,
            task_type="CAUSAL_LM",
        )
    return TrainingModel(network, processor, peft_config, on_gpu, policy.resolve_checkpoint())
