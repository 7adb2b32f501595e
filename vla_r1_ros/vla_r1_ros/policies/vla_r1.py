"""The VLA-R1 model (Qwen2.5-VL-3B fine-tune) through transformers, optionally 4/8-bit via bitsandbytes.

What it reproduces from the official client (scripts/inference.py): one user message per task, text
before the image, no system message; the image through Qwen's smart resize (as
`qwen_vl_utils.process_vision_info`); the official sampling settings; the answer decoded with
`skip_special_tokens=True`. What it adds: both task prompts of one image go through ONE batched
`generate` call (left padding), and the text streams per task while it is generated.

The processor is assembled from its parts — image processor, tokenizer, chat template — rather than
`AutoProcessor`: without torchvision `AutoProcessor` silently returns a bare tokenizer and
`Qwen2_5_VLProcessor` refuses to build without a video processor. The parts work either way (the
image processor picks its torchvision or PIL backend itself).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_r1_ros.core import prompts
from vla_r1_ros.core.config import load_config
from vla_r1_ros.policies.base import TextCallback

log = logging.getLogger(__name__)

DEFAULT_MODEL = "GigaAI-Research/vla-r1"
QUANTIZATIONS = ("nf4", "int8", "none")
DEVICES = ("auto", "cuda", "cpu")
DTYPES = ("bfloat16", "float16", "float32")
# Modules bitsandbytes must leave unquantized: the vision tower (its MLP width 3420 breaks the 4-bit
# CPU kernels: "N must be divisible by block_n") and the output head. Full module paths: the bare name
# "visual" does not match in transformers 5.
BNB_SKIP_MODULES = ["model.visual", "lm_head"]
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")  # "org/name"; anything else is a local path
IMAGE_FACTOR = 28  # patch 14 × spatial merge 2: image sides are multiples of this
MAX_ASPECT_RATIO = 200


class ModelUnavailableError(RuntimeError):
    """The checkpoint cannot be found or loaded; the message says how to get it."""


def download_command(model: str) -> str:
    return f"huggingface-cli download {model}"


def model_defaults() -> dict[str, Any]:
    """config/model.yaml: the model id, quantization, device, dtype, resize bounds, generation settings."""
    return load_config("model")


def smart_resize(
    height: int, width: int, min_pixels: int, max_pixels: int, factor: int = IMAGE_FACTOR
) -> tuple[int, int]:
    """Qwen's resize rule (qwen_vl_utils.smart_resize): sides rounded to multiples of `factor`, then
    scaled, keeping the aspect ratio, until the pixel count is within [min_pixels, max_pixels]."""
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"image aspect ratio must be below {MAX_ASPECT_RATIO}, got {width}x{height}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def resize_for_model(image: np.ndarray, min_pixels: int, max_pixels: int):
    """RGB array -> PIL image at the smart-resize size (bicubic, as PIL's default in qwen_vl_utils)."""
    from PIL import Image

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    new_h, new_w = smart_resize(height, width, min_pixels, max_pixels)
    pil = Image.fromarray(image, mode="RGB")
    return pil if (new_h, new_w) == (height, width) else pil.resize((new_w, new_h), Image.Resampling.BICUBIC)


class BatchTextStreamer:
    """A transformers streamer for a batch: decodes each row separately and reports new text per task.

    `generate` calls `put` first with the prompt ids (batch, seq), then once per step with the new token
    of every row (batch,). `TextIteratorStreamer` only handles batch size 1; this keeps one token list
    per row and emits the growth of each row's decoded text. Text ending in an incomplete UTF-8
    sequence (U+FFFD) is held back until the next token completes it.
    """

    def __init__(self, tokenizer: Any, tasks: Sequence[str], on_text: TextCallback):
        self.tokenizer = tokenizer
        self.tasks = list(tasks)
        self.on_text = on_text
        self._tokens: list[list[int]] = [[] for _ in self.tasks]
        self._emitted = [0] * len(self.tasks)
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # the prompt is not part of the answer
            self._prompt_seen = True
            return
        new_tokens = value.reshape(len(self.tasks), -1).tolist()
        for row, tokens in enumerate(new_tokens):
            self._tokens[row].extend(tokens)
            self._emit(row, final=False)

    def end(self) -> None:
        for row in range(len(self.tasks)):
            self._emit(row, final=True)

    def _emit(self, row: int, final: bool) -> None:
        text = self.tokenizer.decode(self._tokens[row], skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):
            return
        if len(text) > self._emitted[row]:
            self.on_text(self.tasks[row], text[self._emitted[row] :])
            self._emitted[row] = len(text)


@dataclass
class LoadedModel:
    """What `VlaR1Policy.load()` builds; `components()` hands it to other users (GRPO training)."""

    model: Any
    tokenizer: Any
    image_processor: Any
    chat_template: str
    device: Any


class VlaR1Policy:
    """VLA-R1 through `Qwen2_5_VLForConditionalGeneration`. Construction is cheap; `load()` loads."""

    name = "vla_r1"

    def __init__(
        self,
        model: str | None = None,
        local_files_only: bool | None = None,
        quantization: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        max_new_tokens: int | None = None,
        do_sample: bool | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        repetition_penalty: float | None = None,
        seed: int | None = None,
    ):
        """Every argument left None takes its value from config/model.yaml."""
        given = {k: v for k, v in locals().items() if k != "self" and v is not None}
        settings = {**model_defaults(), **given}
        self.model = str(settings["model"] or DEFAULT_MODEL)
        self.local_files_only = bool(settings["local_files_only"])
        self.quantization = str(settings["quantization"]).lower()
        self.device = str(settings["device"]).lower()
        self.dtype = str(settings["dtype"]).lower()
        self.min_pixels = int(settings["min_pixels"])
        self.max_pixels = int(settings["max_pixels"])
        self.max_new_tokens = int(settings["max_new_tokens"])
        self.do_sample = bool(settings["do_sample"])
        self.temperature = float(settings["temperature"])
        self.top_p = float(settings["top_p"])
        self.repetition_penalty = float(settings["repetition_penalty"])
        self.seed = int(settings["seed"])
        for value, allowed, what in (
            (self.quantization, QUANTIZATIONS, "quantization"),
            (self.device, DEVICES, "device"),
            (self.dtype, DTYPES, "dtype"),
        ):
            if value not in allowed:
                raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(f"need 0 < min_pixels <= max_pixels, got {self.min_pixels}, {self.max_pixels}")
        self.model_id = f"{self.name}:{self.model}"
        self._loaded: LoadedModel | None = None
        self._load_lock = threading.Lock()

    # ---- loading -------------------------------------------------------------------------------

    def resolve_checkpoint(self) -> Path:
        """The local directory of the checkpoint: `model` itself, or its Hugging Face cache snapshot.

        Raises ModelUnavailableError naming the download command when the weights are not there.
        """
        local = Path(self.model).expanduser()
        if local.is_dir():
            directory = local
        elif not HUB_ID.fullmatch(self.model):
            raise ModelUnavailableError(f"model directory {self.model} does not exist")
        else:
            from huggingface_hub import snapshot_download
            from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

            try:
                directory = Path(snapshot_download(self.model, local_files_only=self.local_files_only))
            except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
                raise ModelUnavailableError(
                    f"VLA-R1 weights for {self.model!r} are not in the Hugging Face cache"
                    f"{' (local_files_only is set)' if self.local_files_only else ''}. Download them first:\n"
                    f"    {download_command(self.model)}\n"
                    f"or set the `model` parameter to a local checkpoint directory. ({type(exc).__name__})"
                ) from exc
        if not (directory / "config.json").is_file() or not any(directory.glob("*.safetensors")):
            raise ModelUnavailableError(
                f"{directory} is not a complete checkpoint (needs config.json and *.safetensors). "
                f"Download it again:\n    {download_command(self.model)}"
            )
        return directory

    def load(self) -> None:
        """Load tokenizer, image processor, chat template and weights once (thread-safe, idempotent)."""
        with self._load_lock:
            if self._loaded is None:
                self._loaded = self._load()

    def components(self) -> LoadedModel:
        """The loaded model, tokenizer, image processor, chat template and device (loads if needed), so
        other code (GRPO training, the benchmark) uses exactly this loader."""
        self.load()
        return self._loaded

    def _load(self) -> LoadedModel:
        import torch
        from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration

        directory = self.resolve_checkpoint()
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ModelUnavailableError("device is 'cuda' but torch sees no CUDA device (use device: auto or cpu)")
        if self.device == "auto":
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            device = torch.device(self.device)
        dtype = getattr(torch, self.dtype)

        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        tokenizer.padding_side = "left"  # generation appends on the right: prompts must end aligned
        image_processor = AutoImageProcessor.from_pretrained(directory, local_files_only=True)
        chat_template = self._chat_template(directory, tokenizer)

        kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True, "device_map": {"": str(device)}}
        if self.quantization != "none":
            from transformers import BitsAndBytesConfig

            if self.quantization == "nf4":
                kwargs["quantization_config"] = BitsAndBytesConfig(
                    load_in_4bit=True,
                    bnb_4bit_quant_type="nf4",
                    bnb_4bit_compute_dtype=dtype,
                    llm_int8_skip_modules=BNB_SKIP_MODULES,
                )
            else:
                kwargs["quantization_config"] = BitsAndBytesConfig(
                    load_in_8bit=True, llm_int8_skip_modules=BNB_SKIP_MODULES
                )
                # LLM.int8 computes in float16 by design; bitsandbytes warns about the bf16 -> fp16 cast
                # on every matmul call, which would drown the node's log.
                warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast")
        try:
            model = Qwen2_5_VLForConditionalGeneration.from_pretrained(directory, **kwargs).eval()
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(f"cannot load {directory}: {exc}") from exc
        torch.manual_seed(self.seed)
        log.info("VLA-R1 loaded from %s on %s (%s, quantization %s)", directory, device, self.dtype, self.quantization)
        return LoadedModel(model, tokenizer, image_processor, chat_template, device)

    @staticmethod
    def _chat_template(directory: Path, tokenizer: Any) -> str:
        """The checkpoint's chat template: in the tokenizer config, or chat_template.jinja / .json."""
        if tokenizer.chat_template:
            return tokenizer.chat_template
        if (directory / "chat_template.jinja").is_file():
            return (directory / "chat_template.jinja").read_text(encoding="utf-8")
        if (directory / "chat_template.json").is_file():
            return json.loads((directory / "chat_template.json").read_text(encoding="utf-8"))["chat_template"]
        raise ModelUnavailableError(f"{directory} has no chat template (tokenizer_config.json or chat_template.*)")

    # ---- inference -----------------------------------------------------------------------------

    def build_inputs(self, image: np.ndarray, instruction: str, tasks: Sequence[str]) -> dict[str, Any]:
        """Model inputs for one image and one prompt per task, as ONE left-padded batch.

        Does what `Qwen2_5_VLProcessor.__call__` does: the chat template leaves one <|image_pad|> per
        image, which is expanded to the image's token count (patch grid / merge²).
        """
        loaded = self.components()
        pil = resize_for_model(image, self.min_pixels, self.max_pixels)
        vision = loaded.image_processor(images=[pil], return_tensors="pt")
        n_image_tokens = int(vision["image_grid_thw"][0].prod()) // loaded.image_processor.merge_size**2
        image_token = "<|image_pad|>"
        texts = []
        for task in tasks:
            chat = loaded.tokenizer.apply_chat_template(
                prompts.build_messages(instruction, task),
                chat_template=loaded.chat_template,
                tokenize=False,
                add_generation_prompt=True,
            )
            if chat.count(image_token) != 1:
                raise RuntimeError(f"chat template produced {chat.count(image_token)} image slots, expected 1")
            texts.append(chat.replace(image_token, image_token * n_image_tokens))
        batch = loaded.tokenizer(texts, padding=True, return_tensors="pt")
        # Every row shows the same image: repeat its patches and grid once per row.
        batch["pixel_values"] = vision["pixel_values"].repeat(len(texts), 1)
        batch["image_grid_thw"] = vision["image_grid_thw"].repeat(len(texts), 1)
        return {k: v.to(loaded.device) for k, v in batch.items()}

    def generation_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.do_sample:  # temperature/top_p only mean something when sampling
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        return kwargs

    def predict(
        self,
        image: np.ndarray,
        instruction: str,
        tasks: Sequence[str],
        on_text: TextCallback | None = None,
    ) -> list[str]:
        import torch

        tasks = list(tasks)
        for task in tasks:
            if task not in prompts.TASKS:
                raise ValueError(f"unknown task {task!r}; expected one of {', '.join(prompts.TASKS)}")
        if not tasks:
            return []
        inputs = self.build_inputs(image, instruction, tasks)
        loaded = self.components()
        streamer = BatchTextStreamer(loaded.tokenizer, tasks, on_text) if on_text else None
        with torch.inference_mode():
            output = loaded.model.generate(
                **inputs,
                **self.generation_kwargs(),
                streamer=streamer,
                pad_token_id=loaded.tokenizer.pad_token_id,
            )
        answers = output[:, inputs["input_ids"].shape[1] :]
        return loaded.tokenizer.batch_decode(answers, skip_special_tokens=True)
