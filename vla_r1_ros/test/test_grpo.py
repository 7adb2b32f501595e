"""GRPO fine-tuning end to end: simulator episodes -> episode log -> export -> 2 TRL GRPO steps on the
tiny offline Qwen2.5-VL with the logger's reward functions -> a LoRA adapter that loads back with PEFT.

The episodes are `training.sim_episodes`' (the learning bench's too): real simulator frames and ground
truth (PyBullet workcell, `reset(seed)` + `capture()`) answered by the scripted expert with the `paper`
error model, logged as dry runs. The
prompts TRL renders follow the official RL stage's layout (image where the prompt's `<image>` was, no
leading space). Part of the default suite: the tiny model trains two LoRA steps on the CPU in seconds.
"""

from __future__ import annotations

import csv
import functools
import json

from vla_r1_ros.cli.main import main
from vla_r1_ros.core import dataset, prompts
from vla_r1_ros.training import grpo, loading
from vla_r1_ros.training.sim_episodes import layout_queries, write_expert_episodes

SEEDS = (0, 1)


def write_sim_episodes(root) -> None:
    from vla_r1_ros.core.config import PackageConfig

    config = PackageConfig.load()
    write_expert_episodes(root, config, layout_queries(config, SEEDS))


def test_grpo_two_steps_on_simulator_episodes(tmp_path, monkeypatch):
    from peft import PeftModel
    from transformers import Qwen2_5_VLForConditionalGeneration

    from vla_r1_ros.testing.tiny_model import build_tiny_vla_r1

    log, data, output = tmp_path / "log", tmp_path / "data", tmp_path / "grpo"
    write_sim_episodes(log)
    summary = dataset.export_dataset(log, data)
    assert summary.by_reference_source == {"simulator": 4}
    rows = dataset.load_hf_dataset(data)
    truth_by_task = {task: {r["ground_truth"] for r in rows if r["task"] == task} for task in prompts.TASKS}
    model = build_tiny_vla_r1(tmp_path / "tiny")

    # Spy on the real reward functions (same names, so TRL's metric names stay).
    calls: dict[str, list[dict]] = {"format_reward": [], "task_reward": []}

    def spy(function):
        @functools.wraps(function)
        def recorded(completions, **kwargs):
            scores = function(completions, **kwargs)
            calls[function.__name__].append({"completions": completions, "scores": scores, **kwargs})
            return scores

        return recorded

    monkeypatch.setattr(grpo, "format_reward", spy(grpo.format_reward))
    monkeypatch.setattr(grpo, "task_reward", spy(grpo.task_reward))

    # Record the prompt texts the trainer renders through the processor's chat template.
    rendered: list[str] = []
    make_processor = loading.processor_from_parts

    def recording_processor(*args, **kwargs):
        processor = make_processor(*args, **kwargs)
        apply = processor.apply_chat_template

        def apply_and_record(*a, **k):
            result = apply(*a, **k)
            rendered.extend(r for r in (result if isinstance(result, list) else [result]) if isinstance(r, str))
            return result

        processor.apply_chat_template = apply_and_record
        return processor

    monkeypatch.setattr(loading, "processor_from_parts", recording_processor)

    argv = ["train-grpo", "--data", str(data), "--model", str(model), "--output", str(output), "--cpu-smoke"]
    argv += ["--max-completion-length", "16"]  # the pipeline is under test, not the learning: keep it short
    assert main(argv) == 0

    # The official RL layout: the text split at <image>, the image there, no leading space, no placeholder.
    prompts_seen = [text for text in rendered if "<|im_start|>user" in text]
    assert prompts_seen
    for text in prompts_seen:
        user = text.split("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]
        assert not user.startswith(" ") and " in the tray Please output the " in user and "<image>" not in user
        assert user.endswith("</output>.\n<|vision_start|><|image_pad|><|vision_end|>")

    # Two steps, each scoring one batch of 2 completions (one prompt × group of 2) with both functions.
    assert len(calls["task_reward"]) == 2 and len(calls["format_reward"]) == 2
    for call in calls["task_reward"]:
        assert len(call["completions"]) == len(call["task"]) == len(call["ground_truth"]) == 2
        assert all(c[0]["role"] == "assistant" and isinstance(c[0]["content"], str) for c in call["completions"])
        for task, truth in zip(call["task"], call["ground_truth"], strict=True):
            assert truth in truth_by_task[task]  # each completion is scored against its own row's answer
        assert set(call) >= {"episode", "image", "trainer_state"}  # every dataset column reaches the rewards
        assert all(0.0 <= score <= 1.0 for score in call["scores"])

    # Reward curves: one CSV row per step, with the format and task curves separately.
    with (output / grpo.REWARD_CSV).open() as handle:
        curve = list(csv.DictReader(handle))
    assert [row["step"] for row in curve] == ["1", "2"]
    assert all(row["rewards/task_reward/mean"] != "" and row["rewards/format_reward/mean"] != "" for row in curve)
    history = json.loads((output / grpo.LOG_HISTORY).read_text())
    assert history[-1]["step"] == 2
    assert json.loads((output / grpo.SETTINGS_FILE).read_text())["num_generations"] == 2

    # The adapter is saved and loads back onto the base model with PEFT.
    adapter = output / grpo.ADAPTER_DIR
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    base = Qwen2_5_VLForConditionalGeneration.from_pretrained(model)
    tuned = PeftModel.from_pretrained(base, adapter)
    lora_modules = [name for name, _ in tuned.named_modules() if name.endswith("lora_A")]
    assert lora_modules and all(".language_model." in name for name in lora_modules)  # vision tower untouched


def test_reward_functions_adapt_trl_calls():
    """TRL's call shape -> core.rewards, and the weights make the total of the reference."""
    box = prompts.format_answer("there", (0.5, 0.5, 0.2, 0.2))
    completions = [[{"role": "assistant", "content": box}], [{"role": "assistant", "content": "no tags"}]]
    truth = [box, box]
    tasks = [prompts.AFFORDANCE, prompts.AFFORDANCE]
    assert grpo.format_reward(completions, task=tasks, ground_truth=truth) == [1.0, 0.0]
    assert grpo.task_reward(completions, task=tasks, ground_truth=truth) == [1.0, 0.0]
    functions, weights = grpo.reward_functions()
    assert [f.__name__ for f in functions] == ["format_reward", "task_reward"] and weights == [0.1, 0.9]
