"""The VLA-R1 model (Qwen2.5-VL-3B fine-tune) through transformers, optionally 4/8-bit via bitsandbytes.

What it reproduces from the official client (scripts/inference.py): one user message per task, text
before the image, no system message; the image through Qwen's smart resize (as
`qwen_vl_utils.process_vision_info`); the official sampling settings; the answer decoded with
`skip_special_tokens=True`. What it adds (each measured in `vla-r1 bench inference`, docs/inference.md):
- both task prompts of one image go through ONE batched `generate` call (left padding), and the
  text streams per task while it is generated;
- the vision tower runs once per image and its output is shared by both rows (`vision_once`);
- each row ends at its `</output>` (`stop_at_output`); greedy decoding as an option (`greedy`);
- a preallocated KV cache and `torch.compile` as options (`static_cache`, `compile`);
- a think budget and grammar-constrained answers (`policies/answer_format.py`, xgrammar);
- 4/8-bit weights loaded tensor by tensor with `pread`, so no bf16 copy of the checkpoint is ever
  resident (the nf4 peak stays under 5 GB for the 3B model).

The processor is assembled from its parts — image processor, tokenizer, chat template — rather than
`AutoProcessor`: without torchvision `AutoProcessor` silently returns a bare tokenizer and
`Qwen2_5_VLProcessor` refuses to build without a video processor. The parts work either way (the
image processor picks its torchvision or PIL backend itself).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from vla_r1_ros.core import prompts
from vla_r1_ros.core.prediction import model_id_with_adapter
from vla_r1_ros.policies import answer_format
from vla_r1_ros.policies.adapter import AdapterError, check_adapter
from vla_r1_ros.policies.base import TextCallback
from vla_r1_ros.policies.settings import TransformersSettings

log = logging.getLogger(__name__)

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
    quantization: str  # what `quantization: auto` resolved to on this device: nf4 | int8 | int4_decode | none


def chats_for(instruction: str, tasks: Sequence[str]) -> list[list[dict]]:
    """The official chat of each task (core/prompts), after checking the task names."""
    for task in tasks:
        if task not in prompts.TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(prompts.TASKS)}")
    return [prompts.build_messages(instruction, task) for task in tasks]


class VlaR1Policy:
    """VLA-R1 through `Qwen2_5_VLForConditionalGeneration`. Construction is cheap; `load()` loads."""

    name = "vla_r1"

    def __init__(self, settings: TransformersSettings):
        self.settings = settings
        # Every prediction (and so every episode) names what produced it: checkpoint and adapter.
        self.model_id = model_id_with_adapter(f"{self.name}:{settings.model}", settings.adapter)
        self._loaded: LoadedModel | None = None
        self._load_lock = threading.Lock()
        self._grammar_compiler: Any = None

    def variant(self, **changes: Any) -> VlaR1Policy:
        """This policy with other speed levers or generation settings, sharing the loaded model (the
        benchmark and the tests compare levers on one set of weights). Loading settings cannot change."""
        loading = {"model", "adapter", "local_files_only", "quantization", "device", "dtype"} & set(changes)
        if loading:
            raise ValueError(f"a variant shares the loaded weights: cannot change {', '.join(sorted(loading))}")
        generation = {k: v for k, v in changes.items() if hasattr(self.settings.generation, k)}
        levers = {k: v for k, v in changes.items() if k not in generation}
        settings = replace(self.settings, **levers, generation=replace(self.settings.generation, **generation))
        other = VlaR1Policy(settings)
        other._loaded, other._load_lock = self.components(), self._load_lock
        other._grammar_compiler = self._grammar_compiler
        return other

    # ---- loading -------------------------------------------------------------------------------

    def resolve_checkpoint(self) -> Path:
        """The local directory of the checkpoint: `model` itself, or its Hugging Face cache snapshot.

        Raises ModelUnavailableError naming the download command when the weights are not there.
        """
        model, local_files_only = self.settings.model, self.settings.local_files_only
        local = Path(model).expanduser()
        if local.is_dir():
            directory = local
        elif not HUB_ID.fullmatch(model):
            raise ModelUnavailableError(f"model directory {model} does not exist")
        else:
            from huggingface_hub import snapshot_download
            from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

            try:
                directory = Path(snapshot_download(model, local_files_only=local_files_only))
            except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
                raise ModelUnavailableError(
                    f"VLA-R1 weights for {model!r} are not in the Hugging Face cache"
                    f"{' (local_files_only is set)' if local_files_only else ''}. Download them first:\n"
                    f"    {download_command(model)}\n"
                    f"or set the `model` parameter to a local checkpoint directory. ({type(exc).__name__})"
                ) from exc
        if not (directory / "config.json").is_file() or not any(directory.glob("*.safetensors")):
            raise ModelUnavailableError(
                f"{directory} is not a complete checkpoint (needs config.json and *.safetensors). "
                f"Download it again:\n    {download_command(model)}"
            )
        return directory

    def checked_adapter(self) -> Path | None:
        """The `adapter` directory after checking it was made for this checkpoint (AdapterError if not);
        None without one. Cheap: callers run it before starting anything."""
        if not self.settings.adapter:
            return None
        return check_adapter(self.settings.adapter, self.settings.model, self.resolve_checkpoint())

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
        from transformers import (
            AutoConfig,
            AutoImageProcessor,
            AutoTokenizer,
            GenerationConfig,
            Qwen2_5_VLForConditionalGeneration,
        )

        settings = self.settings
        directory = self.resolve_checkpoint()
        try:
            adapter = self.checked_adapter()
        except AdapterError as exc:
            raise ModelUnavailableError(str(exc)) from None
        if settings.device == "cuda" and not torch.cuda.is_available():
            raise ModelUnavailableError("device is 'cuda' but torch sees no CUDA device (use device: auto or cpu)")
        if settings.device == "auto":
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            device = torch.device(settings.device)
        dtype = getattr(torch, settings.dtype)
        quantization = settings.resolve_quantization(device.type)

        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        tokenizer.padding_side = "left"  # generation appends on the right: prompts must end aligned
        image_processor = AutoImageProcessor.from_pretrained(directory, local_files_only=True)
        chat_template = self._chat_template(directory, tokenizer)

        if device.type == "cpu":
            _map_large_buffers_apart()
        kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True, "device_map": {"": str(device)}}
        try:
            if quantization in ("none", "int4_decode"):
                model = Qwen2_5_VLForConditionalGeneration.from_pretrained(directory, **kwargs)
            else:
                with contextlib.ExitStack() as shards:
                    # transformers takes a state dict only without a checkpoint path: config and
                    # generation config come from the directory explicitly.
                    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                        None,
                        config=AutoConfig.from_pretrained(directory, local_files_only=True),
                        state_dict=_read_with_pread(directory, shards),
                        quantization_config=_bnb_config(quantization, dtype),
                        **kwargs,
                    )
                model.generation_config = GenerationConfig.from_pretrained(directory, local_files_only=True)
                _release_freed_memory()
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(f"cannot load {directory}: {exc}") from exc
        if adapter is not None:
            from peft import PeftModel

            # Merged into the weights: generation then runs the plain model's (and int4_decode's) code path
            # (int4_decode then packs the merged weights; on nf4 / int8 PEFT merges with rounding).
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
            log.info("LoRA adapter %s merged into %s", adapter, directory)
        if quantization == "int4_decode":
            from vla_r1_ros.policies.int4_decode import attach_int4_decode

            packed = attach_int4_decode(model, settings.int4_group_size)
            if not packed and settings.quantization != "auto":
                raise ModelUnavailableError(
                    f"quantization int4_decode: no decoder projection of {directory} can be packed in groups of "
                    f"{settings.int4_group_size} (int4_group_size)"
                )
            if not packed:  # auto: a model too narrow for the groups runs as it loaded
                log.warning(
                    "int4_decode: no projection fits groups of %d; running %s", settings.int4_group_size, settings.dtype
                )
                quantization = "none"
            else:
                log.info("int4_decode: %d decoder projections got a 4-bit copy for decode steps", packed)
        model.eval()
        torch.manual_seed(settings.generation.seed)
        log.info("VLA-R1 loaded from %s on %s (%s, quantization %s)", directory, device, settings.dtype, quantization)
        return LoadedModel(model, tokenizer, image_processor, chat_template, device, quantization)

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

    def build_inputs(self, image: np.ndarray, chats: Sequence[list[dict]]) -> dict[str, Any]:
        """Model inputs for one image and one chat per row, as ONE left-padded batch.

        Does what `Qwen2_5_VLProcessor.__call__` does: the chat template leaves one <|image_pad|> per
        image, which is expanded to the image's token count (patch grid / merge²), and
        `mm_token_type_ids` marks the image tokens (M-RoPE gives them 3-D positions from it). The
        image's patches are in `pixel_values` ONCE; `image_grid_thw` has one row per chat.
        """
        loaded = self.components()
        pil = resize_for_model(image, self.settings.min_pixels, self.settings.max_pixels)
        vision = loaded.image_processor(images=[pil], return_tensors="pt")
        n_image_tokens = int(vision["image_grid_thw"][0].prod()) // loaded.image_processor.merge_size**2
        image_token = "<|image_pad|>"
        texts = []
        for chat in chats:
            text = loaded.tokenizer.apply_chat_template(
                chat, chat_template=loaded.chat_template, tokenize=False, add_generation_prompt=True
            )
            if text.count(image_token) != 1:
                raise ValueError(f"a chat must show the image once; the template gave {text.count(image_token)} slots")
            texts.append(text.replace(image_token, image_token * n_image_tokens))
        batch = loaded.tokenizer(texts, padding=True, return_tensors="pt")
        batch["mm_token_type_ids"] = (batch["input_ids"] == loaded.model.config.image_token_id).int()
        batch["pixel_values"] = vision["pixel_values"]
        batch["image_grid_thw"] = vision["image_grid_thw"].repeat(len(texts), 1)
        return {k: v.to(loaded.device) for k, v in batch.items()}

    def _vision_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The image part of `generate`'s inputs: the vision tower's output computed once and shared by
        every row (`vision_once`), or the patches repeated per row for the model to encode (plain)."""
        rows = inputs["input_ids"].shape[0]
        pixel_values = inputs["pixel_values"]
        if not self.settings.vision_once:
            return {"pixel_values": pixel_values.repeat(rows, 1)}
        features = self.components().model.model.get_image_features(
            pixel_values, inputs["image_grid_thw"][:1], return_dict=True
        )
        features.pooler_output = tuple(features.pooler_output) * rows
        return {"mm_encoder_outputs": {"image": features}}

    def generation_kwargs(self) -> dict[str, Any]:
        """`generate` settings from `generation:` and the cache levers (without the per-call grammar)."""
        generation = self.settings.generation
        kwargs: dict[str, Any] = {
            "max_new_tokens": generation.max_new_tokens,
            "do_sample": not generation.greedy,
            "repetition_penalty": generation.repetition_penalty,
        }
        if not generation.greedy:  # temperature/top_p only mean something when sampling
            kwargs.update(temperature=generation.temperature, top_p=generation.top_p)
        if generation.stop_at_output:
            kwargs["stop_strings"] = [answer_format.OUTPUT_CLOSE]
        if self.settings.static_cache:
            kwargs["cache_implementation"] = "static"
        if self.settings.compile:
            from transformers import CompileConfig

            # transformers compiles only on accelerators unless told otherwise; the CPU gets it too.
            compile_config = CompileConfig(fullgraph=False, dynamic=False)
            compile_config._compile_all_devices = True
            kwargs["compile_config"] = compile_config
        return kwargs

    def _grammar(self, answer_tags: Sequence[dict | None]):
        if all(tag is None for tag in answer_tags):
            return None
        loaded = self.components()
        if self._grammar_compiler is None:
            vocab_size = loaded.model.config.text_config.vocab_size
            self._grammar_compiler = answer_format.make_compiler(loaded.tokenizer, vocab_size)
        return answer_format.logits_processor(self._grammar_compiler, answer_tags)

    def generate(
        self,
        image: np.ndarray,
        chats: Sequence[list[dict]],
        rows: Sequence[str],
        answer_tags: Sequence[dict | None] | None = None,
        on_text: TextCallback | None = None,
        forced_tokens: int | None = None,
    ) -> list[str]:
        """One batched `generate` over `chats` (one row each, named by `rows` for `on_text`), all about
        `image`. `answer_tags`: an xgrammar structural tag per row (None: free text).
        `forced_tokens` (benchmarks): exactly this many new tokens, ignoring end tokens."""
        import torch
        from transformers import LogitsProcessorList

        if not chats:
            return []
        loaded = self.components()
        inputs = self.build_inputs(image, chats)
        kwargs = self.generation_kwargs()
        if forced_tokens is not None:
            kwargs.update(max_new_tokens=forced_tokens, min_new_tokens=forced_tokens)
            kwargs.pop("stop_strings", None)
        grammar = self._grammar(answer_tags or [None] * len(chats))
        if grammar is not None:
            kwargs["logits_processor"] = LogitsProcessorList([grammar])
        streamer = BatchTextStreamer(loaded.tokenizer, rows, on_text) if on_text else None
        text_inputs = {k: inputs[k] for k in ("input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw")}
        with torch.inference_mode():
            output = loaded.model.generate(
                **text_inputs,
                **self._vision_inputs(inputs),
                **kwargs,
                tokenizer=loaded.tokenizer,
                streamer=streamer,
                pad_token_id=loaded.tokenizer.pad_token_id,
            )
        answers = output[:, inputs["input_ids"].shape[1] :]
        return loaded.tokenizer.batch_decode(answers, skip_special_tokens=True)

    def predict(
        self,
        image: np.ndarray,
        instruction: str,
        tasks: Sequence[str],
        on_text: TextCallback | None = None,
    ) -> list[str]:
        tasks = list(tasks)
        chats = chats_for(instruction, tasks)
        generation = self.settings.generation
        tags = [answer_format.structural_tag(task, generation.think_budget, generation.constrained) for task in tasks]
        return self.generate(image, chats, tasks, tags, on_text)


def _bnb_config(quantization: str, dtype: Any):
    from transformers import BitsAndBytesConfig

    if quantization == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=dtype,
            llm_int8_skip_modules=BNB_SKIP_MODULES,
        )
    # LLM.int8 computes in float16 by design; bitsandbytes warns about the bf16 -> fp16 cast on every
    # matmul call, which would drown the node's log.
    warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast")
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=BNB_SKIP_MODULES)


def _read_with_pread(directory: Path, shards: contextlib.ExitStack) -> dict[str, Any]:
    """The checkpoint's tensors as lazy slices read with `pread`, for a quantized load.

    transformers memory-maps safetensors shards: every page it touches stays in the process's resident
    set until the shard is closed at the end of loading, so a 4-bit load peaked at the bf16 file size
    plus the 4-bit copy (9.6 GB for the 3B model). With `pread` each tensor is read into its own
    buffer, quantized and freed: only the 4-bit model and the tensors in flight are resident."""
    from safetensors import safe_open

    state: dict[str, Any] = {}
    for path in sorted(directory.glob("*.safetensors")):
        handle = shards.enter_context(safe_open(str(path), framework="pt", device="cpu", backend="pread"))
        state.update({key: handle.get_slice(key) for key in handle.keys()})  # noqa: SIM118 (not iterable)
    return state


# Tensor buffers of at least this size get their own mmap, returned to the OS when freed.
LARGE_BUFFER_BYTES = 4 * 1024 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)


def _map_large_buffers_apart() -> None:
    """Large tensor buffers in their own mappings instead of glibc's heap. glibc raises its mmap
    threshold as mmapped buffers are freed (up to 32 MB), so the model's per-layer buffers (dequantized
    4-bit weights, activations) land in the heap, where freed ones stay resident: measured on the 3B
    model with nf4, the peak over a decision was 5.06 GiB with glibc's default and 4.36 GiB with a fixed
    4 MiB threshold (docs/inference.md). Process-wide; the node's process holds only the model. No-op off
    glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).mallopt(_M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES)


def _release_freed_memory() -> None:
    """Hand the heap the quantizing load freed back to the OS (glibc keeps it otherwise: the read
    buffers of ~3 GB of bf16 tensors would stay in the node's resident set). No-op off glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).malloc_trim(0)
