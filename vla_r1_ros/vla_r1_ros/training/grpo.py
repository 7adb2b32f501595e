"""GRPO fine-tuning of VLA-R1 with TRL's `GRPOTrainer` on an exported episode dataset.

Rewards are the logger's rewards, not a copy: `format_reward` and `task_reward` below adapt TRL's
reward-function call (`completions` as `[[{"role": "assistant", "content": str}]]` plus every dataset
column as a keyword argument) to `core.rewards`. They are two functions with `reward_weights`
[0.1, 0.9], so TRL logs the format and task curves separately (`rewards/format_reward/mean`,
`rewards/task_reward/mean`) while their weighted sum is exactly `score_completion(...).score`, the
reference's total `0.9 · task + 0.1 · format`.

Defaults are the official run's (verl, `run_vla_r1_3b.sh`): group size 5, lr 3e-5, KL coefficient
0.01 with the low-variance (k3) estimator — TRL's `beta` — entropy 0, clip 0.2, completions up to
2048 tokens, advantages normalized by the group's std (`scale_rewards="group"`), rollout temperature
1.0 (verl's default; 0.7 / top-p 0.9 are the inference settings). verl's `data.max_prompt_length=2048`
with `filter_overlong_prompts` is reproduced by dropping longer prompts (image tokens included) before
training, since TRL ≥ 0.25 never truncates prompts. Differences, on purpose: LoRA on the language
model instead of a full fine-tune (a 3B model then trains on one GPU), nf4 QLoRA on GPU, and TRL's
default token-level loss aggregation (`dapo`), which is verl's `token-mean`.

Model, processor and LoRA come from `training.loading`, shared with SFT (`training.sft`): the inference
loader's model, and a new LoRA or, with `init_adapter`, the SFT stage's adapter trained on. Heavy
libraries are imported inside the functions.
"""

from __future__ import annotations

import csv
import functools
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from vla_r1_ros.core import rewards
from vla_r1_ros.core.episodes import write_json_atomic
from vla_r1_ros.training import loading, ranks
from vla_r1_ros.training.loading import ADAPTER_DIR, TrainingSettings

log = logging.getLogger(__name__)

REWARD_CSV = "rewards.csv"
LOG_HISTORY = "log_history.json"
SETTINGS_FILE = "grpo_settings.json"
# Columns of rewards.csv, one row per logging step (TRL's metric names).
REWARD_COLUMNS = (
    "step",
    "epoch",
    "reward",
    "reward_std",
    "rewards/format_reward/mean",
    "rewards/task_reward/mean",
    "kl",
    "loss",
    "learning_rate",
    "completions/mean_length",
)


def _completion_texts(completions: Sequence[Any]) -> list[str]:
    """TRL passes conversational completions as one-message lists; plain strings for text datasets."""
    return [c if isinstance(c, str) else c[0]["content"] for c in completions]


def format_reward(completions: Sequence[Any], **_columns: Any) -> list[float]:
    """VLA-R1's format reward of each completion (1: `<think>…</think>` and a JSON `<output>`)."""
    return [float(rewards.format_reward(text)) for text in _completion_texts(completions)]


def task_reward(
    completions: Sequence[Any], task: Sequence[str], ground_truth: Sequence[str], **_columns: Any
) -> list[float]:
    """Region (GIoU) or trajectory (Fréchet) score of each completion against its row's ground truth."""
    return [
        rewards.score_completion(row_task, text, truth).task_score
        for text, row_task, truth in zip(_completion_texts(completions), task, ground_truth, strict=True)
    ]


def reward_functions() -> tuple[list[Any], list[float]]:
    """The reward functions and their weights, in TRL's `reward_funcs` / `reward_weights` form."""
    return [format_reward, task_reward], [rewards.FORMAT_WEIGHT, rewards.TASK_WEIGHT]


def _recording_episodes(function: Any, seen: list[str]) -> Any:
    """`function` (same name, so TRL's metric names stay) also noting the row (`episode/task`) of every
    completion it scores: on each process, the rows of its own shard — what shows each rank trained."""

    @functools.wraps(function)
    def recorded(completions: Sequence[Any], **columns: Any) -> list[float]:
        seen.extend(ranks.row_names(columns["episode"], columns["task"]))
        return function(completions, **columns)

    return recorded


@dataclass
class GrpoSettings(TrainingSettings):
    CPU_SMOKE: ClassVar[dict[str, Any]] = {
        "num_generations": 2,
        "max_completion_length": 32,
    }

    num_generations: int = 5
    learning_rate: float = 3e-5
    beta: float = 0.01  # KL coefficient
    epsilon: float = 0.2  # PPO clip range
    max_prompt_length: int = 2048
    max_completion_length: int = 2048
    temperature: float = 1.0
    top_p: float = 1.0  # rollout nucleus sampling (verl's default 1.0: the whole distribution)
    # No dropout while the policy's and the reference's log-probs are computed (the official run has none: a
    # full fine-tune of a model whose attention dropout is 0). With LoRA dropout on, the two see different
    # masks, and the k3 KL estimate of a policy equal to its reference came out at 13 nats a token (the
    # bench's first GRPO step), a pull that swamped the rewards' gradient.
    disable_dropout: bool = True
    per_device_train_batch_size: int = 5  # one group of 5 per device step
    num_train_epochs: float = 1.0
    # Rollouts through vLLM (TRL's `use_vllm`, GPU labs): none (model.generate) | server (a `vllm serve`
    # of the base model at vllm_server_base_url; TRL pushes the weights) | colocate (vLLM in each process).
    vllm_mode: str = "none"
    vllm_server_base_url: str = "http://127.0.0.1:8000"


@dataclass
class TrainResult:
    output: Path
    adapter: Path
    steps: int
    log_history: list[dict[str, Any]]
    dropped_overlong: int


def _prompt_length(processor: Any, example: dict[str, Any]) -> int:
    """Tokens of one dataset row's prompt as the model sees it: chat template + expanded image tokens."""
    from trl.data_utils import prepare_multimodal_messages

    messages = prepare_multimodal_messages(example["prompt"], images=[example["image"]])
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(processor(text=[text], images=[example["image"]])["input_ids"][0])


def _reward_curve_callback(path: Path) -> Any:
    """A TrainerCallback appending TRL's reward metrics to a CSV at every log, so the curve survives a
    crash and can be plotted while training runs."""
    from transformers import TrainerCallback

    class RewardCurve(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "reward" not in logs or not state.is_world_process_zero:
                return
            new = not path.exists()
            with path.open("a", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=REWARD_COLUMNS, extrasaction="ignore")
                if new:
                    writer.writeheader()
                writer.writerow({**logs, "step": state.global_step})

    return RewardCurve()


VLLM_MODES = ("none", "server", "colocate")


def _check_vllm(mode: str) -> None:
    """vLLM rollouts need the `vllm` package (and a GPU): refused before anything loads without it."""
    from trl.import_utils import is_vllm_available

    if mode not in VLLM_MODES:
        raise ValueError(f"vllm_mode must be one of {', '.join(VLLM_MODES)}, not {mode!r}")
    if mode != "none" and not is_vllm_available():
        raise ValueError(f"vllm_mode {mode} needs the vllm package (pip install vllm, on a CUDA machine)")


def _vllm_options(settings: GrpoSettings) -> dict[str, Any]:
    if settings.vllm_mode == "none":
        return {"use_vllm": False}
    options = {"use_vllm": True, "vllm_mode": settings.vllm_mode}
    if settings.vllm_mode == "server":
        options["vllm_server_base_url"] = settings.vllm_server_base_url
    return options


def train(settings: GrpoSettings) -> TrainResult:
    """Run GRPO; writes `adapter/` (or the full model), `rewards.csv`, `log_history.json` and
    `grpo_settings.json` in `settings.output`."""
    from trl import GRPOConfig, GRPOTrainer

    from vla_r1_ros.core.dataset import load_hf_dataset

    loading.check_init_adapter(settings.model, settings.lora_settings())
    _check_vllm(settings.vllm_mode)
    output = Path(settings.output)
    state = loading.process_state(settings.device)  # under `accelerate launch` only the main process writes
    output.mkdir(parents=True, exist_ok=True)  # every rank: the trainer writes into it too
    if state.is_main_process:
        write_json_atomic(output / SETTINGS_FILE, asdict(settings) | {"world_size": state.num_processes})
        (output / REWARD_CSV).unlink(missing_ok=True)  # a new run starts a new curve
    loaded = loading.load_training_model(
        settings.model, settings.quantization, settings.device, settings.seed, settings.lora_settings()
    )
    processor, on_gpu = loaded.processor, loaded.on_gpu

    dataset = loading.with_prompt_layout(load_hf_dataset(settings.data), settings.prompt_layout)
    before = len(dataset)
    dataset = dataset.filter(  # in memory: no cache files written into the export directory
        lambda row: _prompt_length(processor, row) <= settings.max_prompt_length, keep_in_memory=True
    )
    dropped = before - len(dataset)
    if dropped:
        log.warning("dropped %d of %d prompts longer than %d tokens", dropped, before, settings.max_prompt_length)
    if len(dataset) == 0:
        raise ValueError(f"no prompt in {settings.data} fits in {settings.max_prompt_length} tokens")

    reward_funcs, reward_weights = reward_functions()
    seen: list[str] = []
    reward_funcs = [
        _recording_episodes(function, seen) if function is task_reward else function for function in reward_funcs
    ]
    config = GRPOConfig(
        output_dir=str(output),
        use_cpu=not on_gpu,
        bf16=on_gpu,
        num_generations=settings.num_generations,
        learning_rate=settings.learning_rate,
        beta=settings.beta,
        epsilon=settings.epsilon,
        entropy_coef=0.0,
        scale_rewards="group",
        max_completion_length=settings.max_completion_length,
        temperature=settings.temperature,
        top_p=settings.top_p,
        disable_dropout=settings.disable_dropout,
        per_device_train_batch_size=settings.per_device_train_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        gradient_checkpointing=settings.gradient_checkpointing,
        num_train_epochs=settings.num_train_epochs,
        max_steps=settings.max_steps,
        reward_weights=reward_weights,
        logging_steps=settings.logging_steps,
        save_steps=settings.save_steps,
        seed=settings.seed,
        report_to="none",
        **_vllm_options(settings),
    )
    trainer = GRPOTrainer(
        model=loaded.model,
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=dataset,
        processing_class=processor,  # explicit: with None TRL would pick a tokenizer and drop the images
        peft_config=loaded.peft_config,
        callbacks=[_reward_curve_callback(output / REWARD_CSV)],
    )
    trainer.train()
    adapter = output / ADAPTER_DIR
    trainer.save_model(str(adapter))  # by the main process only
    ranks.write_ranks(output, state, trainer.state.global_step, seen)
    if state.is_main_process:
        write_json_atomic(output / LOG_HISTORY, trainer.state.log_history)
    return TrainResult(output, adapter, trainer.state.global_step, trainer.state.log_history, dropped)
