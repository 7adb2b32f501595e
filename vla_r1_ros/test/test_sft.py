"""Chain-of-thought SFT end to end: simulator episodes -> export -> 2 TRL SFT steps on the tiny offline
Qwen2.5-VL -> a LoRA adapter that `train-grpo --init-adapter` goes on training; and the refusals (no
usable record, an adapter of another base model) before anything trains.

The episodes are `test_grpo.write_sim_episodes`' (real simulator frames and ground truth answered by the
scripted expert). The collator TRL uses is spied on, not replaced, to check what the model was taught.
"""

from __future__ import annotations

import json

import pytest
from test_grpo import write_sim_episodes

from vla_r1_ros.cli.main import main
from vla_r1_ros.core import dataset, prompts
from vla_r1_ros.policies.adapter import ADAPTER_CONFIG
from vla_r1_ros.training import grpo, sft
from vla_r1_ros.training.loading import ADAPTER_DIR


def refusals(stderr: str) -> list[str]:
    """The command's error lines (the `datasets` progress bars write to stderr too)."""
    return [line for line in stderr.splitlines() if line.startswith("vla-r1 ")]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft-data")
    write_sim_episodes(root / "log")
    dataset.export_dataset(root / "log", root / "data")
    return root / "data"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from vla_r1_ros.testing.tiny_model import build_tiny_vla_r1

    return build_tiny_vla_r1(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def sft_run(export, tiny_model, tmp_path_factory):
    """One `train-sft --cpu-smoke` run, with the texts TRL's collator turned into training examples."""
    from trl.trainer import sft_trainer

    seen: list[dict] = []
    collate = sft_trainer.DataCollatorForVisionLanguageModeling._collate_prompt_completion

    def recording(self, examples):
        batch = collate(self, examples)
        seen.append({"examples": examples, "batch": batch})
        return batch

    output = tmp_path_factory.mktemp("sft") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sft_trainer.DataCollatorForVisionLanguageModeling, "_collate_prompt_completion", recording)
        argv = ["train-sft", "--data", str(export), "--model", str(tiny_model), "--output", str(output), "--cpu-smoke"]
        assert main(argv) == 0
    return output, seen


def test_sft_teaches_reasoning_and_reference_answer_after_the_official_prompt(sft_run, export, tiny_model):
    from peft import PeftModel
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    output, seen = sft_run
    truths = set(dataset.load_hf_dataset(export)["ground_truth"])
    assert len(seen) == 2  # two steps of one batch each
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    image_token = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for call in seen:
        batch = call["batch"]
        assert "pixel_values" in batch and "image_grid_thw" in batch  # the image went in
        for ids, mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"], strict=True):
            # The loss is on the completion only: prompt (and image) tokens are masked out of the labels.
            assert ((labels == -100) | (labels == ids)).all() and (labels[ids == image_token] == -100).all()
            text = tokenizer.decode(ids[mask.bool()])
            target = tokenizer.decode(labels[labels != -100])
            # The user turn is the official prompt with the image at its end...
            user = text.split("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]
            assert " in the tray Please output the " in user
            assert user.endswith("</output>.\n<|vision_start|>" + "<|image_pad|>" * 391 + "<|vision_end|>")
            # ...and what is learnt is a logged reasoning + reference answer of the export, then the turn's end.
            assert target.removesuffix("\n").removesuffix("<|im_end|>") in truths
            assert target.startswith("<think> ") and text.endswith(target)

    history = json.loads((output / sft.LOG_HISTORY).read_text())
    assert history[-1]["step"] == 2 and any("loss" in entry for entry in history)
    settings = json.loads((output / sft.SETTINGS_FILE).read_text())
    assert settings["max_steps"] == 2 and settings["lora"] is True
    adapter = output / ADAPTER_DIR
    config = json.loads((adapter / ADAPTER_CONFIG).read_text())
    assert config["base_model_name_or_path"] == str(tiny_model)
    tuned = PeftModel.from_pretrained(Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model), adapter)
    lora_modules = [name for name, _ in tuned.named_modules() if name.endswith("lora_A")]
    assert lora_modules and all(".language_model." in name for name in lora_modules)


def test_grpo_goes_on_from_the_sft_adapter(sft_run, export, tiny_model, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    # 8 tokens never hold a parsable answer: every real reward is 0, the advantages are 0, and GRPO (no
    # dropout, so the policy's KL to its reference copy is exactly 0) rightly leaves the weights alone. A
    # reward that differs between completions gives the step a gradient, to show the adapter is trained on.
    def format_reward(completions, **_columns):
        return [float(sum(map(ord, text)) % 7) for text in grpo._completion_texts(completions)]

    monkeypatch.setattr(grpo, "format_reward", format_reward)
    sft_adapter = sft_run[0] / ADAPTER_DIR
    output = tmp_path / "grpo"
    argv = ["train-grpo", "--data", str(export), "--model", str(tiny_model), "--output", str(output), "--cpu-smoke"]
    argv += ["--max-completion-length", "8", "--init-adapter", str(sft_adapter)]
    assert main(argv) == 0
    assert json.loads((output / grpo.SETTINGS_FILE).read_text())["init_adapter"] == str(sft_adapter)
    before = load_file(sft_adapter / "adapter_model.safetensors")
    after = load_file(output / ADAPTER_DIR / "adapter_model.safetensors")
    assert set(before) == set(after)  # the same LoRA (rank, modules), trained on
    lora_b = [key for key in before if "lora_B" in key]
    assert lora_b and any(not before[key].equal(after[key]) for key in lora_b)


def test_an_export_without_a_usable_record_is_refused(export, tiny_model, tmp_path, capsys):
    rows = dataset.load_hf_dataset(export)
    no_reasoning = rows.map(
        lambda row: {"ground_truth": prompts.format_answer("", (0.5, 0.5, 0.2, 0.2))}, keep_in_memory=True
    )
    no_reasoning.save_to_disk(str(tmp_path / "bad" / dataset.HF_DIR))
    output = tmp_path / "out"
    argv = ["train-sft", "--data", str(tmp_path / "bad"), "--model", str(tiny_model), "--output", str(output)]
    assert main([*argv, "--cpu-smoke"]) == 2
    (error,) = refusals(capsys.readouterr().err)
    assert "no usable record" in error and "no reasoning in <think>" in error
    assert not output.exists()  # refused before anything was written


def test_an_adapter_of_another_base_model_is_refused(sft_run, export, tiny_model, tmp_path, capsys):
    other = tmp_path / "other-adapter"
    other.mkdir()
    config = json.loads((sft_run[0] / ADAPTER_DIR / ADAPTER_CONFIG).read_text())
    (other / ADAPTER_CONFIG).write_text(json.dumps(config | {"base_model_name_or_path": "Qwen/Qwen2.5-VL-3B"}))
    for command in ("train-sft", "train-grpo"):
        output = tmp_path / command
        argv = [command, "--data", str(export), "--model", str(tiny_model), "--output", str(output), "--cpu-smoke"]
        assert main([*argv, "--init-adapter", str(other)]) == 2
        (error,) = refusals(capsys.readouterr().err)
        assert "trained on Qwen/Qwen2.5-VL-3B, not on" in error
        assert not output.exists()


def test_the_inference_prompt_layout_trains_on_the_message_the_policy_sends(export):
    from vla_r1_ros.policies.vla_r1 import chats_for
    from vla_r1_ros.training.loading import prompt_in_layout

    instruction = "put the red cube in the tray"
    for task in prompts.TASKS:
        rl = dataset.prompt_messages(instruction, task)
        assert prompt_in_layout(rl, "rl") == rl
        (sent,) = chats_for(instruction, [task])
        # The policy's message, text then image, with the image left for TRL to fill from the row.
        assert prompt_in_layout(rl, "inference") == [
            {"role": "user", "content": [sent[0]["content"][0], {"type": "image"}]}
        ]
    with pytest.raises(ValueError, match="prompt_layout"):
        prompt_in_layout(rl, "verl")
    with pytest.raises(ValueError, match="prompt_layout"):
        sft.SftSettings("data", "model", "out", prompt_layout="verl")
    rows, _dropped = sft.sft_dataset(str(export), "inference")
    records = dataset.load_hf_dataset(export)
    for row, record in zip(rows, records, strict=True):
        (text, image) = row["prompt"][0]["content"]
        assert text["text"] == " " + "".join(part["text"] or "<image>" for part in record["prompt"][0]["content"])
        assert text["text"].endswith("</output>.\n<image>") and image["type"] == "image"
