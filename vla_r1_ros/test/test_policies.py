"""Policies: the real vla_r1 loading/generation path on offline tiny checkpoints, and the scripted expert."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from vla_r1_ros.core import metrics
from vla_r1_ros.core.config import load_config
from vla_r1_ros.core.error_model import PRESETS, ErrorModel, ErrorModelError, parse_error_model
from vla_r1_ros.core.geometry import CameraIntrinsics, camera_extrinsics
from vla_r1_ros.core.parsing import parse_answer
from vla_r1_ros.core.prompts import AFFORDANCE, TASKS, TRAJECTORY
from vla_r1_ros.core.scene import ObjectState, Scene, project_to_normalized, reference_box, reference_waypoints
from vla_r1_ros.policies.base import make_policy
from vla_r1_ros.policies.scripted import ScriptedExpertPolicy, ScriptedPolicyError, error_statistics, sim_scenes
from vla_r1_ros.policies.vla_r1 import ModelUnavailableError, VlaR1Policy, smart_resize
from vla_r1_ros.testing.tiny_model import build_tiny_vla_r1

INSTRUCTION = "put the red cube in the tray"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    # One build per session: test_inference_node.py asks for the same directory and reuses it.
    return build_tiny_vla_r1(tmp_path_factory.getbasetemp() / "tiny-vla-r1-bpe", tokenizer="bpe")


@pytest.fixture(scope="module")
def tiny_policy(tiny_model):
    policy = VlaR1Policy(model=str(tiny_model), quantization="none", device="cpu", max_new_tokens=8)
    policy.load()
    return policy


def frame(width: int = 640, height: int = 480) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_smart_resize_matches_qwen_vl_utils():
    assert smart_resize(480, 640, 3136, 12845056) == (476, 644)
    assert smart_resize(448, 448, 3136, 12845056) == (448, 448)
    assert smart_resize(10, 10, 3136, 12845056) == (56, 56)  # scaled up to min_pixels
    h, w = smart_resize(4000, 3000, 3136, 1003520)  # scaled down under max_pixels
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 1003520


def test_640x480_frame_becomes_391_image_tokens(tiny_policy):
    inputs = tiny_policy.build_inputs(frame(), INSTRUCTION, [AFFORDANCE])
    assert inputs["image_grid_thw"].tolist() == [[1, 34, 46]]  # 476/14 × 644/14 patches
    image_token = tiny_policy.components().model.config.image_token_id
    assert int((inputs["input_ids"][0] == image_token).sum()) == 391


def test_two_tasks_are_one_left_padded_batch(tiny_policy):
    inputs = tiny_policy.build_inputs(frame(), INSTRUCTION, list(TASKS))
    mask = inputs["attention_mask"]
    assert mask.shape[0] == 2 and bool(mask[:, -1].all())  # every prompt ends at the last column
    assert not bool(mask[:, 0].all())  # the prompts differ in length: the shorter is padded on the left
    pad = tiny_policy.components().tokenizer.pad_token_id
    assert bool((inputs["input_ids"][mask == 0] == pad).all())


def test_batched_generate_returns_one_text_per_task_and_streams_them(tiny_policy):
    streamed = {task: "" for task in TASKS}

    def on_text(task, text):
        streamed[task] += text

    texts = tiny_policy.predict(frame(), INSTRUCTION, list(TASKS), on_text=on_text)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert [streamed[task] for task in TASKS] == texts
    assert not parse_answer(texts[0], AFFORDANCE).ok  # random weights: gibberish, rejected by the parser


@pytest.mark.parametrize("quantization", ["int8", "nf4"])
def test_tiny_model_loads_quantized_and_generates(tiny_model, quantization):
    policy = VlaR1Policy(model=str(tiny_model), quantization=quantization, device="cpu", max_new_tokens=4)
    policy.load()
    assert type(policy.components().model.model.visual.blocks[0].mlp.up_proj).__name__ == "Linear"  # skipped
    quantized = type(policy.components().model.model.language_model.layers[0].mlp.up_proj).__name__
    assert quantized == {"int8": "Linear8bitLt", "nf4": "Linear4bit"}[quantization]
    assert len(policy.predict(frame(), INSTRUCTION, list(TASKS))) == 2


def test_missing_weights_fail_at_load_with_the_download_command(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    for model in ("GigaAI-Research/vla-r1", "someone/other-checkpoint"):
        policy = VlaR1Policy(model=model, local_files_only=True)
        with pytest.raises(ModelUnavailableError) as error:
            policy.load()
        assert f"huggingface-cli download {model}" in str(error.value)
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        VlaR1Policy(model=str(tmp_path / "nowhere")).load()


def test_policy_settings_default_to_the_official_generation_settings():
    policy = VlaR1Policy()
    assert policy.model == "GigaAI-Research/vla-r1"
    assert policy.generation_kwargs() == {
        "max_new_tokens": 2048,
        "do_sample": True,
        "repetition_penalty": 1.1,
        "temperature": 0.7,
        "top_p": 0.9,
    }
    assert VlaR1Policy(do_sample=False).generation_kwargs().keys() == {
        "max_new_tokens",
        "do_sample",
        "repetition_penalty",
    }
    with pytest.raises(ValueError, match="quantization"):
        VlaR1Policy(quantization="fp8")


def test_tiny_model_build_is_cached(tiny_model):
    stamp = (tiny_model / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_vla_r1(tiny_model) == tiny_model
    assert (tiny_model / "model.safetensors").stat().st_mtime_ns == stamp
    for name in ("config.json", "tokenizer.json", "preprocessor_config.json", "chat_template.json"):
        assert (tiny_model / name).is_file()


def test_tiny_model_with_the_real_qwen_vocabulary(tmp_path):
    path = build_tiny_vla_r1(tmp_path / "tiny-qwen", tokenizer="qwen")
    policy = VlaR1Policy(model=str(path), quantization="none", device="cpu", max_new_tokens=4)
    policy.load()
    tokenizer = policy.components().tokenizer
    assert tokenizer.encode("Hello, world!") == [9707, 11, 1879, 0]
    assert tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|image_pad|>"]) == [151645, 151655]
    assert len(policy.predict(frame(), INSTRUCTION, list(TASKS))) == 2


def test_make_policy():
    assert make_policy("scripted").name == "scripted"
    assert make_policy("vla_r1", {"model": "x/y", "quantization": "none"}).model_id == "vla_r1:x/y"
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("gpt")


def test_bench_inference_quick_smoke(tmp_path, capsys):
    from vla_r1_ros.bench import inference

    parser = argparse.ArgumentParser()
    inference.configure(parser)
    out = tmp_path / "bench.json"
    args = parser.parse_args(["--quick", "--precisions", "bf16", "--new-tokens", "2", "--json", str(out)])
    assert inference.run(args) == 0
    report = json.loads(out.read_text())
    (result,) = report["results"]
    assert result["precision"] == "bf16" and result["prefill_s"] > 0 and result["batched_speedup"] > 0
    assert "decode_tok_s" in capsys.readouterr().out


# ---- scripted expert (simulator-only test policy) ----------------------------------------------------


def make_scene() -> Scene:
    red = ObjectState(
        "red_cube", "red", "cube", (0.45, 0.05, 0.025), (0, 0, 0, 1), (0.05, 0.05, 0.05), (300.0, 250.0, 336.0, 290.0)
    )
    blue = ObjectState(
        "blue_sphere", "blue", "sphere", (0.5, -0.1, 0.025), (0, 0, 0, 1), (0.05,) * 3, None, visible=False
    )
    tray = ObjectState(
        "tray", "grey", "tray", (0.46, -0.32, 0.028), (0, 0, 0, 1), (0.24, 0.24, 0.056), (0.0, 150.0, 170.0, 290.0)
    )
    return Scene(seed=0, objects=(red, blue), tray=tray, ee_position=(0.3, 0.0, 0.5))


def test_scripted_answers_parse_and_match_the_reference_exactly():
    scene = make_scene()
    streamed = []
    policy = ScriptedExpertPolicy(scene_source=lambda: scene)
    texts = policy.predict(frame(), INSTRUCTION, list(TASKS), on_text=lambda t, s: streamed.append((t, s)))
    assert streamed == list(zip(TASKS, texts, strict=True))
    camera = load_config("camera")
    intrinsics = CameraIntrinsics.from_config(camera)
    box = parse_answer(texts[0], AFFORDANCE)
    assert box.ok and box.format_reward == 1.0 and "red cube" in box.reasoning
    target = scene.object("red_cube")
    assert metrics.iou(box.box, reference_box(target, intrinsics)) == pytest.approx(1.0, abs=1e-4)
    path = parse_answer(texts[1], TRAJECTORY)
    expected = reference_waypoints(scene, target, intrinsics, camera_extrinsics(camera))
    assert path.ok and np.allclose(path.waypoints, expected, atol=1e-6)


def test_scripted_sharerobot_paths_start_at_the_grippers_projection():
    scene = make_scene()
    camera = load_config("camera")
    intrinsics, base_T_camera = CameraIntrinsics.from_config(camera), camera_extrinsics(camera)
    carry = ScriptedExpertPolicy(lambda: scene).predict(frame(), INSTRUCTION, [TRAJECTORY])[0]
    sharerobot = ScriptedExpertPolicy(lambda: scene, path_convention="sharerobot")
    path = parse_answer(sharerobot.predict(frame(), INSTRUCTION, [TRAJECTORY])[0], TRAJECTORY).waypoints
    gripper = project_to_normalized(np.array([scene.ee_position]), intrinsics, base_T_camera)[0]
    np.testing.assert_allclose(path[0], np.clip(gripper, 0.0, 1.0), atol=1e-6)
    np.testing.assert_allclose(path[1:], parse_answer(carry, TRAJECTORY).waypoints, atol=1e-6)
    assert "sharerobot" in sharerobot.model_id
    with pytest.raises(ValueError, match="path_convention"):
        ScriptedExpertPolicy(path_convention="backwards")


def test_scripted_says_so_when_it_cannot_answer():
    policy = ScriptedExpertPolicy(scene_source=make_scene)
    for instruction in ("put the green mug in the tray", "put the blue ball in the tray"):
        text = policy.predict(frame(), instruction, [AFFORDANCE])[0]
        answer = parse_answer(text, AFFORDANCE)
        assert not answer.ok and answer.error == "no <output> tag" and "cannot locate" in answer.reasoning
    assert "not visible" in policy.predict(frame(), "put the blue ball in the tray", [AFFORDANCE])[0]
    with pytest.raises(ScriptedPolicyError, match="no ground-truth scene"):
        ScriptedExpertPolicy(scene_source=lambda: None).predict(frame(), INSTRUCTION, list(TASKS))


def test_scripted_errors_are_seeded():
    scene = make_scene()

    def answers(seed):
        policy = ScriptedExpertPolicy(lambda: scene, noise="paper,parse_fail=0.5", seed=seed)
        return [policy.predict(frame(), INSTRUCTION, list(TASKS)) for _ in range(6)]

    assert answers(1) == answers(1) != answers(2)
    parsed = [parse_answer(text, task) for pair in answers(1) for text, task in zip(pair, TASKS, strict=True)]
    assert any(not p.ok and "not closed" in p.error for p in parsed) and any(p.ok for p in parsed)


def test_error_model_syntax():
    assert parse_error_model("none") == ErrorModel() and ErrorModel().exact
    assert parse_error_model("paper") == PRESETS["paper"] == ErrorModel(iou=0.3651, rmse=71.12)
    spec = "iou=0.5,rmse=40,wrong_object=0.1,parse_fail=0.02"
    model = parse_error_model(spec)
    assert (model.iou, model.rmse, model.wrong_object, model.parse_fail) == (0.5, 40.0, 0.1, 0.02)
    assert model.spec == spec and parse_error_model(model.spec) == model
    assert parse_error_model(" paper , wrong_object=0.2 ") == ErrorModel(0.3651, 71.12, 0.2, 0.0)
    assert parse_error_model("wrong_object=1") == ErrorModel(wrong_object=1.0)
    for bad, message in [
        ("", "empty"),
        ("loud", "not a preset"),
        ("iou=0.5,paper", "preset may only come first"),
        ("iou=1.5", "outside"),
        ("rmse=-1", "outside"),
        ("iou=nan", "finite"),
        ("jitter=0.3", "unknown error-model key"),
        ("iou=0.4,iou=0.5", "twice"),
        ("iou=lots", "not a number"),
    ]:
        with pytest.raises(ErrorModelError, match=message):
            parse_error_model(bad)
    with pytest.raises(ValueError, match="not a preset"):
        ScriptedExpertPolicy(noise="loud")


@pytest.fixture(scope="module")
def layouts():
    return sim_scenes(12, seed=1000)


@pytest.mark.parametrize("spec", ["paper", "iou=0.8,rmse=20", "iou=0.15,rmse=200"])
def test_error_model_is_calibrated(layouts, spec):
    """The realized mean IoU / RMSE of the expert's answers, scored by core.metrics, is the requested one."""
    requested = parse_error_model(spec)
    stats = error_statistics(layouts, requested, draws=12, seed=7)
    assert stats["n"] >= 500 and stats["parse_fail"] == 0.0
    assert stats["iou"] == pytest.approx(requested.iou, abs=0.03)
    assert stats["rmse"] == pytest.approx(requested.rmse, rel=0.1)


def test_error_model_rates_are_realized(layouts):
    stats = error_statistics(layouts, "wrong_object=0.3,parse_fail=0.1", draws=12, seed=3)
    assert stats["parse_fail"] == pytest.approx(0.1, abs=0.03)
    assert stats["wrong_object"] == pytest.approx(0.3, abs=0.05)
    assert stats["rmse"] > 0  # a wrong object's path is far from the instructed one's
    assert error_statistics(layouts, "none", draws=2)["wrong_object"] == 0.0
