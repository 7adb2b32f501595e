"""Chain-of-thought SFT of VLA-R1 with TRL's `SFTTrainer` on an exported episode dataset: the paper's
first stage, before GRPO (`training.grpo`, which can start from the adapter this writes).

Each export record becomes a prompt-completion pair: the prompt is the export's `prompt` column (the
official prompt as the user turn, the image where its `<image>` was), the completion the record's
`ground_truth` — the logged reasoning and the reference answer in the model's layout,
`<think> … </think> so, the answer is <output> … </output>` (`core.prompts.format_answer`). The loss
is on the completion only (TRL's default for prompt-completion data). A record is usable when its
target has the official format and non-empty reasoning; the others are dropped with a count, and an
export with none is refused (`TrainingInputError`) before the model loads.

Model, processor and LoRA (nf4 QLoRA on GPU) come from `training.loading`, as for GRPO. Defaults are
the usual LoRA SFT ones (lr 1e-4, 3 epochs); the official SFT stage fine-tunes the full model.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vla_r1_ros.core import rewards
from vla_r1_ros.core.episodes import write_json_atomic
from vla_r1_ros.training import loading, ranks
from vla_r1_ros.training.loading import ADAPTER_DIR, TrainingInputError, TrainingSettings

log = logging.getLogger(__name__)

LOG_HISTORY = "log_history.json"
SETTINGS_FILE = "sft_settings.json"
ROW_COLUMN = "row"  # each training row's `episode/task`, noted per process for ranks.json
_REASONING = re.compile(r"<think>(.*?)</think>", re.DOTALL)


@dataclass
class SftSettings(TrainingSettings):
    """SFT's settings are the shared ones (`loading.TrainingSettings`) with their defaults."""


@dataclass
class SftResult:
    output: Path
    adapter: Path
    steps: int
    records: int
    dropped_unusable: int
    log_history: list[dict[str, Any]]


def target_problem(ground_truth: str) -> str | None:
    """Why a record's target cannot teach the answer layout, or None: it must be in the official format
    and carry reasoning (an empty `<think>` would teach the model to skip it)."""
    if rewards.format_reward(ground_truth) != 1.0:
        return "not in the <think>…</think> … <output>…</output> format"
    match = _REASONING.search(ground_truth)
    if match is None or not match.group(1).strip():
        return "no reasoning in <think>"
    return None


def sft_dataset(data: str, prompt_layout: str = "rl"):
    """The export's usable records as TRL prompt-completion rows (`prompt` in `prompt_layout`, `completion`,
    `image`, and `row`: which one) and how many were dropped; TrainingInputError when none is usable or the
    export cannot be read."""
    from vla_r1_ros.core.dataset import load_hf_dataset

    try:
        dataset = load_hf_dataset(data)
    except (FileNotFoundError, ValueError) as exc:
        raise TrainingInputError(f"{data} is not a `vla-r1 export-dataset` output ({exc})") from None
    missing = {"prompt", "image", "ground_truth"} - set(dataset.column_names)
    if missing:
        raise TrainingInputError(f"{data}: the export lacks column(s) {', '.join(sorted(missing))}")
    before = len(dataset)
    usable = dataset.filter(lambda row: target_problem(row["ground_truth"]) is None, keep_in_memory=True)
    if len(usable) == 0:
        reasons = sorted({target_problem(text) for text in dataset["ground_truth"]} - {None})
        raise TrainingInputError(
            f"no usable record in {data} ({before} record(s): {'; '.join(reasons) or 'the export is empty'})"
        )
    rows = usable.map(
        lambda row: {
            "completion": [{"role": "assistant", "content": [{"type": "text", "text": row["ground_truth"]}]}],
            ROW_COLUMN: ranks.row_names([row["episode"]], [row["task"]])[0],
        },
        keep_in_memory=True,
    )
    rows = loading.with_prompt_layout(rows, prompt_layout)
    keep = ("prompt", "completion", "image", ROW_COLUMN)
    return rows.remove_columns([c for c in rows.column_names if c not in keep]), before - len(usable)


def train(settings: SftSettings) -> SftResult:
    """Run SFT; writes `adapter/` (or the full model), `log_history.json`, `sft_settings.json` and
    `ranks.json` in `settings.output`. Input is checked (records, `init_adapter`) before the model loads."""
    from trl import SFTConfig, SFTTrainer

    dataset, dropped = sft_dataset(settings.data, settings.prompt_layout)
    if dropped:
        log.warning("dropped %d of %d records without a usable target", dropped, dropped + len(dataset))
    loading.check_init_adapter(settings.model, settings.lora_settings())
    output = Path(settings.output)
    state = loading.process_state(settings.device)  # under `accelerate launch` only the main process writes
    output.mkdir(parents=True, exist_ok=True)  # every rank: the trainer writes into it too
    if state.is_main_process:
        write_json_atomic(output / SETTINGS_FILE, asdict(settings) | {"world_size": state.num_processes})
    loaded = loading.load_training_model(
        settings.model, settings.quantization, settings.device, settings.seed, settings.lora_settings()
    )
    config = SFTConfig(
        output_dir=str(output),
        use_cpu=not loaded.on_gpu,
        bf16=loaded.on_gpu,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.per_device_train_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        gradient_checkpointing=settings.gradient_checkpointing,
        num_train_epochs=settings.num_train_epochs,
        max_steps=settings.max_steps,
        max_length=None,  # truncation would cut image tokens or the answer; the export's prompts are short
        logging_steps=settings.logging_steps,
        save_steps=settings.save_steps,
        seed=settings.seed,
        report_to="none",
        remove_unused_columns=False,  # the row column reaches the collator, which notes and drops it
    )
    trainer = SFTTrainer(
        model=loaded.model,
        args=config,
        train_dataset=dataset,
        processing_class=loaded.processor,
        peft_config=loaded.peft_config,
    )
    seen: list[str] = []
    trainer.data_collator = ranks.recording_rows(trainer.data_collator, ROW_COLUMN, seen)
    trainer.train()
    adapter = output / ADAPTER_DIR
    trainer.save_model(str(adapter))  # by the main process only
    ranks.write_ranks(output, state, trainer.state.global_step, seen)
    if state.is_main_process:
        write_json_atomic(output / LOG_HISTORY, trainer.state.log_history)
    return SftResult(output, adapter, trainer.state.global_step, len(dataset), dropped, trainer.state.log_history)
