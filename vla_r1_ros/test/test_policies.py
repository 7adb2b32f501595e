"""Policies: the real vla_r1 loading/generation path on offline tiny checkpoints, and the scripted expert."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from vla_r1_ros.core import metrics
from vla_r1_ros.core.config import PackageConfig
from vla_r1_ros.core.error_model import PRESETS, ErrorModel, ErrorModelError, parse_error_model
from vla_r1_ros.core.geometry import CameraIntrinsics, camera_extrinsics
from vla_r1_ros.core.parsing import parse_answer
from vla_r1_ros.core.prompts import AFFORDANCE, TASKS, TRAJECTORY
from vla_r1_ros.core.scene import ObjectState, Scene, project_to_normalized, reference_box, reference_waypoints
from vla_r1_ros.policies import answer_format, make_policy
from vla_r1_ros.policies.scripted import ScriptedExpertPolicy, ScriptedPolicyError, error_statistics, sim_scenes
from vla_r1_ros.policies.settings import AUTO_QUANTIZATION, BACKENDS, TransformersSettings, setting_names
from vla_r1_ros.policies.vla_r1 import ModelUnavailableError, VlaR1Policy, chats_for, smart_resize
from vla_r1_ros.testing.tiny_model import build_tiny_vla_r1

INSTRUCTION = "put the red cube in the tray"


CONFIG = PackageConfig.load()
MODEL_CONFIG, CAMERA = CONFIG.model, CONFIG.camera


def tiny_settings(model, **overrides) -> TransformersSettings:
    return TransformersSettings.from_config(MODEL_CONFIG, model=str(model), device="cpu", **overrides)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    # One build per session: test_inference_node.py asks for the same directory and reuses it.
    return build_tiny_vla_r1(tmp_path_factory.getbasetemp() / "tiny-vla-r1-bpe", tokenizer="bpe")


@pytest.fixture(scope="module")
def tiny_policy(tiny_model):
    policy = VlaR1Policy(tiny_settings(tiny_model, quantization="none", max_new_tokens=8))
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
    inputs = tiny_policy.build_inputs(frame(), chats_for(INSTRUCTION, [AFFORDANCE]))
    assert inputs["image_grid_thw"].tolist() == [[1, 34, 46]]  # 476/14 × 644/14 patches
    image_token = tiny_policy.components().model.config.image_token_id
    assert int((inputs["input_ids"][0] == image_token).sum()) == 391
    # The processor's modality marks: M-RoPE gives exactly these tokens 3-D positions.
    assert inputs["mm_token_type_ids"][0].tolist() == (inputs["input_ids"][0] == image_token).int().tolist()


def test_image_tokens_get_3d_positions(tiny_policy):
    """Without mm_token_type_ids transformers falls back to 1-D positions for the image (a different
    model input than the official processor's): the logits must depend on them."""
    import torch

    inputs = tiny_policy.build_inputs(frame(), chats_for(INSTRUCTION, [AFFORDANCE]))
    model = tiny_policy.components().model
    with torch.inference_mode():
        with_types = model(**inputs).logits[0, -1]
        without = model(**{k: v for k, v in inputs.items() if k != "mm_token_type_ids"}).logits[0, -1]
    assert float((with_types - without).abs().max()) > 0.1


def test_two_tasks_are_one_left_padded_batch(tiny_policy):
    inputs = tiny_policy.build_inputs(frame(), chats_for(INSTRUCTION, list(TASKS)))
    mask = inputs["attention_mask"]
    assert mask.shape[0] == 2 and bool(mask[:, -1].all())  # every prompt ends at the last column
    assert not bool(mask[:, 0].all())  # the prompts differ in length: the shorter is padded on the left
    pad = tiny_policy.components().tokenizer.pad_token_id
    assert bool((inputs["input_ids"][mask == 0] == pad).all())
    assert inputs["pixel_values"].shape[0] == 1564 and inputs["image_grid_thw"].shape[0] == 2  # patches once


def test_batched_generate_returns_one_text_per_task_and_streams_them(tiny_policy):
    streamed = {task: "" for task in TASKS}

    def on_text(task, text):
        streamed[task] += text

    texts = tiny_policy.predict(frame(), INSTRUCTION, list(TASKS), on_text=on_text)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert [streamed[task] for task in TASKS] == texts
    assert not parse_answer(texts[0], AFFORDANCE).ok  # random weights: gibberish, rejected by the parser


def test_each_speed_lever_gives_the_plain_paths_greedy_answers(tiny_policy):
    """Plain = one request per task, vision encoded per row, dynamic cache. Every lever alone (and all
    the defaults together) must give the same greedy tokens on the real transformers classes."""
    plain = tiny_policy.variant(
        greedy=True, max_new_tokens=12, vision_once=False, static_cache=False, stop_at_output=False
    )
    image = frame()
    reference = [plain.predict(image, INSTRUCTION, [task])[0] for task in TASKS]
    assert len(set(reference[0])) > 3  # the tiny model's greedy text varies: the comparison means something
    levers = {
        "batched": {},
        "vision_once": {"vision_once": True},
        "static_cache": {"static_cache": True},
        "stop_at_output": {"stop_at_output": True},
    }
    for name, changes in levers.items():
        assert plain.variant(**changes).predict(image, INSTRUCTION, list(TASKS)) == reference, name


@pytest.mark.slow
def test_compiled_decoding_gives_the_plain_paths_greedy_answers(tiny_policy):
    plain = tiny_policy.variant(greedy=True, max_new_tokens=8, vision_once=False, stop_at_output=False)
    reference = plain.predict(frame(), INSTRUCTION, list(TASKS))
    compiled = plain.variant(static_cache=True, compile=True)
    assert compiled.predict(frame(), INSTRUCTION, list(TASKS)) == reference


def test_each_row_stops_at_its_output_close(tiny_policy):
    """A grammar (xgrammar) writes `<output>…</output>` and then lets the model go on freely: with
    stop_at_output the row ends right at `</output>`, without it the text goes on."""
    tag = {
        "type": "structural_tag",
        "format": {
            "type": "sequence",
            "elements": [{"type": "const_string", "value": "<output>[[0.5, 0.5]]</output>"}, {"type": "any_text"}],
        },
    }
    chats = chats_for(INSTRUCTION, list(TASKS))
    greedy = tiny_policy.variant(greedy=True, max_new_tokens=24)
    stopped = greedy.variant(stop_at_output=True).generate(frame(), chats, list(TASKS), [tag, None])
    running = greedy.variant(stop_at_output=False).generate(frame(), chats, list(TASKS), [tag, None])
    # The row ends with the token that completes `</output>` (a BPE token may carry a character more).
    before, closed, after = stopped[0].partition("</output>")
    assert before == "<output>[[0.5, 0.5]]" and closed and len(after) <= 2
    assert running[0].startswith(stopped[0]) and len(running[0]) > len(stopped[0]) + 5
    assert stopped[1] == running[1]  # the other row is untouched by its neighbour's stop


def test_think_budget_closes_the_reasoning_after_n_tokens(tiny_policy):
    """The first N tokens are the model's own (greedy: exactly the unconstrained path's), then the
    reasoning is closed and the answer begins."""
    greedy = tiny_policy.variant(greedy=True, stop_at_output=False)
    free = [greedy.variant(max_new_tokens=5).predict(frame(), INSTRUCTION, [task])[0] for task in TASKS]
    budget = greedy.variant(max_new_tokens=30, think_budget=5).predict(frame(), INSTRUCTION, list(TASKS))
    for reasoning, text in zip(free, budget, strict=True):
        assert text.startswith(reasoning + answer_format.THINK_CLOSE + answer_format.ANSWER_LEAD), (reasoning, text)


def test_constrained_answers_always_parse_with_numbers_in_0_1(tiny_policy):
    constrained = tiny_policy.variant(max_new_tokens=300, think_budget=8, constrained=True)
    for seed in range(2):
        import torch

        torch.manual_seed(seed)  # sampled: different answers, every one in the official format
        texts = constrained.predict(frame(), INSTRUCTION, list(TASKS))
        box, path = (parse_answer(text, task) for text, task in zip(texts, TASKS, strict=True))
        assert box.ok and path.ok and box.format_reward == path.format_reward == 1.0, texts
        numbers = np.concatenate([np.ravel(box.box), np.ravel(path.waypoints)])
        assert ((numbers >= 0) & (numbers <= 1)).all()
        assert all(text.endswith(answer_format.OUTPUT_CLOSE) for text in texts)


@pytest.mark.parametrize("constrained", [True, False])
def test_the_reasoning_cannot_write_the_output_close(tiny_policy, constrained):
    """The learning bench's seed-1 SFT adapter, looping, wrote `</output>` inside its reasoning:
    `stop_at_output` ended the row there, `generate` wrote padding into it, and xgrammar's processor
    asserted (its grammar, still in the reasoning, refuses an end token). The grammar now refuses the
    token that would complete `</output>` in the reasoning, so the stop string cannot fire there."""
    import torch

    tokenizer = tiny_policy.components().tokenizer
    vocab = tiny_policy.components().model.config.text_config.vocab_size
    compiler = answer_format.make_compiler(tokenizer, vocab)
    tag = answer_format.structural_tag(AFFORDANCE, 0 if constrained else 8, constrained)  # budget-only: 8
    processor = answer_format.logits_processor(compiler, [tag])
    opening = answer_format.THINK_OPEN if constrained else ""
    written = tokenizer(opening + "it is on the left</output", add_special_tokens=False)["input_ids"]
    closing = tokenizer(answer_format.OUTPUT_CLOSE, add_special_tokens=False)["input_ids"][-1]
    prompt = tokenizer("answer:", add_special_tokens=False)["input_ids"]
    scores = torch.zeros(1, vocab)
    processor(torch.tensor([prompt]), scores.clone())  # the first step: nothing sampled yet
    for n in range(1, len(written) + 1):  # each token written is one the grammar allowed
        allowed = processor(torch.tensor([prompt + written[:n]]), scores.clone())
    assert allowed[0, closing] == -float("inf")
    assert (allowed[0] > -float("inf")).sum() > 10  # the reasoning goes on freely otherwise


def test_answer_grammar_accepts_the_official_examples_and_rejects_out_of_range():
    import xgrammar

    for task, good, bad in (
        (AFFORDANCE, '{"x": 0.563749, "y": 0.638217, "width": 0.094696, "height": 0.123233}', '{"x": 1.5, '),
        (TRAJECTORY, "[[0.41, 0.52], [0.47, 0.44], [0.55, 0.4], [1, 0]]", "[[0.41, 2"),
    ):
        grammar = xgrammar.Grammar.from_ebnf(answer_format.ANSWER_GRAMMARS[task])
        assert xgrammar.testing._is_grammar_accept_string(grammar, good)
        assert not xgrammar.testing._is_grammar_accept_string(grammar, bad)


@pytest.mark.parametrize("quantization", ["int8", "nf4"])
def test_tiny_model_loads_quantized_and_generates(tiny_model, quantization):
    policy = VlaR1Policy(tiny_settings(tiny_model, quantization=quantization, max_new_tokens=4))
    policy.load()
    assert type(policy.components().model.model.visual.blocks[0].mlp.up_proj).__name__ == "Linear"  # skipped
    quantized = type(policy.components().model.model.language_model.layers[0].mlp.up_proj).__name__
    assert quantized == {"int8": "Linear8bitLt", "nf4": "Linear4bit"}[quantization]
    assert policy.components().model.generation_config.eos_token_id  # read from the checkpoint
    assert len(policy.predict(frame(), INSTRUCTION, list(TASKS))) == 2


def dequantize_int4(codes, scales, zeros):
    """The float32 weight that `quantize_int4`'s codes, scales and zeros stand for."""
    out_features, in_features = codes.shape
    group_size = in_features // scales.shape[1]
    groups = codes.reshape(out_features, -1, group_size).float()
    return ((groups - 8) * scales.unsqueeze(-1) + zeros.unsqueeze(-1)).reshape(out_features, in_features)


def test_int4_decode_linear_uses_its_4bit_copy_for_few_rows_only():
    """Up to MAX_DECODE_ROWS rows go through torch's int4 kernel, whose result is the matmul with the
    dequantized 4-bit weight; more rows (a prefill) are the bf16 layer's own result, bit for bit."""
    import torch

    from vla_r1_ros.policies.int4_decode import MAX_DECODE_ROWS, Int4DecodeLinear, quantize_int4

    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 96).to(torch.bfloat16).requires_grad_(False)
    layer = Int4DecodeLinear(linear, group_size=64)
    decode = torch.randn(1, 2, 256, dtype=torch.bfloat16)
    dequantized = dequantize_int4(*quantize_int4(linear.weight, 64))
    reference = decode.float() @ dequantized.t() + linear.bias.float()
    relative = lambda a, b: float((a.float() - b.float()).norm() / b.float().norm())  # noqa: E731
    assert relative(layer(decode), reference) < 0.01  # the 4-bit weight (bf16 rounding of scales only)
    assert relative(layer(decode), linear(decode)) > 0.02  # ... and not the bf16 one
    prefill = torch.randn(1, MAX_DECODE_ROWS + 1, 256, dtype=torch.bfloat16)
    assert torch.equal(layer(prefill), linear(prefill))
    with pytest.raises(ValueError, match="in_features must divide by the group size"):
        Int4DecodeLinear(torch.nn.Linear(100, 96), group_size=64)


def test_int4_decode_keeps_the_prefill_in_bf16_and_generates(tiny_model, tiny_policy):
    """quantization int4_decode on the real transformers model: every decoder projection gets a 4-bit
    copy (the vision tower and lm_head none), and a prefill gives the bf16 model's logits exactly."""
    import torch

    from vla_r1_ros.policies.int4_decode import Int4DecodeLinear

    policy = VlaR1Policy(tiny_settings(tiny_model, quantization="int4_decode", int4_group_size=32, max_new_tokens=6))
    model = policy.components().model
    packed = [m for m in model.model.language_model.modules() if isinstance(m, Int4DecodeLinear)]
    assert len(packed) == 7 * len(model.model.language_model.layers)  # q k v o gate up down
    assert not any(isinstance(m, Int4DecodeLinear) for m in model.model.visual.modules())
    assert type(model.lm_head).__name__ == "Linear"
    inputs = policy.build_inputs(frame(), chats_for(INSTRUCTION, [AFFORDANCE]))
    with torch.inference_mode():
        assert torch.equal(model(**inputs).logits, tiny_policy.components().model(**inputs).logits)
    assert len(policy.predict(frame(), INSTRUCTION, list(TASKS))) == 2
    with pytest.raises(ValueError, match="CPU"):
        TransformersSettings.from_config(MODEL_CONFIG, model=str(tiny_model), quantization="int4_decode", device="cuda")


def test_auto_quantization_follows_the_device(tiny_model):
    policy = VlaR1Policy(tiny_settings(tiny_model, quantization="auto", int4_group_size=32))
    assert policy.components().quantization == AUTO_QUANTIZATION["cpu"] == "int4_decode"
    # The tiny model's layers (64 and 128 wide) take no 256-channel groups: auto runs it as loaded,
    # int4_decode refuses.
    wide = {"int4_group_size": 256}
    assert VlaR1Policy(tiny_settings(tiny_model, quantization="auto", **wide)).components().quantization == "none"
    with pytest.raises(ModelUnavailableError, match="can be packed in groups of 256"):
        VlaR1Policy(tiny_settings(tiny_model, quantization="int4_decode", **wide)).load()


def test_missing_weights_fail_at_load_with_the_download_command(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    for model in ("GigaAI-Research/vla-r1", "someone/other-checkpoint"):
        policy = VlaR1Policy(TransformersSettings.from_config(MODEL_CONFIG, model=model, local_files_only=True))
        with pytest.raises(ModelUnavailableError) as error:
            policy.load()
        assert f"huggingface-cli download {model}" in str(error.value)
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        VlaR1Policy(tiny_settings(tmp_path / "nowhere")).load()


def test_settings_default_to_the_official_generation_settings():
    policy = VlaR1Policy(TransformersSettings.from_config(MODEL_CONFIG))
    assert policy.settings.model == "GigaAI-Research/vla-r1"
    assert policy.generation_kwargs() == {
        "max_new_tokens": 2048,
        "do_sample": True,
        "repetition_penalty": 1.1,
        "temperature": 0.7,
        "top_p": 0.9,
        "stop_strings": ["</output>"],
    }
    greedy = TransformersSettings.from_config(MODEL_CONFIG, greedy=True, stop_at_output=False)
    assert VlaR1Policy(greedy).generation_kwargs() == {
        "max_new_tokens": 2048,
        "do_sample": False,
        "repetition_penalty": 1.1,
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"quantization": "fp8"}, "quantization must be one of"),
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ({"think_budget": 5000}, "think_budget must be in"),
        ({"compile": True}, "compile needs static_cache"),
        ({"greedy": "maybe"}, "greedy must be a bool"),
        ({"top_p": 0}, "0 < top_p <= 1"),
        ({"nonsense": 1}, "unknown setting"),
    ],
)
def test_bad_settings_are_refused_by_name(overrides, message):
    with pytest.raises(ValueError, match=message):
        TransformersSettings.from_config(MODEL_CONFIG, **overrides)


def test_settings_need_every_key_of_their_section():
    broken = {**MODEL_CONFIG, "transformers": {k: v for k, v in MODEL_CONFIG["transformers"].items() if k != "dtype"}}
    with pytest.raises(ValueError, match="`transformers:` lacks dtype"):
        TransformersSettings.from_config(broken)


def test_every_setting_is_in_config_model_yaml():
    from vla_r1_ros.nodes.inference_node import model_parameter_defaults

    assert set(model_parameter_defaults(MODEL_CONFIG)) == set(setting_names())
    assert MODEL_CONFIG["backend"] in BACKENDS


def test_tiny_model_build_is_cached(tiny_model):
    stamp = (tiny_model / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_vla_r1(tiny_model) == tiny_model
    assert (tiny_model / "model.safetensors").stat().st_mtime_ns == stamp
    for name in ("config.json", "tokenizer.json", "preprocessor_config.json", "chat_template.json"):
        assert (tiny_model / name).is_file()


def test_tiny_model_with_the_real_qwen_vocabulary(tmp_path):
    path = build_tiny_vla_r1(tmp_path / "tiny-qwen", tokenizer="qwen")
    policy = VlaR1Policy(tiny_settings(path, quantization="none", max_new_tokens=4))
    policy.load()
    tokenizer = policy.components().tokenizer
    assert tokenizer.encode("Hello, world!") == [9707, 11, 1879, 0]
    assert tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|image_pad|>"]) == [151645, 151655]
    assert len(policy.predict(frame(), INSTRUCTION, list(TASKS))) == 2


def test_make_policy():
    assert make_policy("scripted", CONFIG).name == "scripted"
    policy = make_policy("vla_r1", CONFIG, {"model": "x/y", "quantization": "none"})
    assert isinstance(policy, VlaR1Policy) and policy.model_id == "vla_r1:x/y"
    remote = make_policy("vla_r1", CONFIG, {"backend": "openai", "server_url": "http://127.0.0.1:9/v1"})
    assert remote.model_id.startswith("vla_r1:openai:") and remote.settings.server_url == "http://127.0.0.1:9/v1"
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("gpt", CONFIG)
    with pytest.raises(ValueError, match="backend must be one of"):
        make_policy("vla_r1", CONFIG, {"backend": "onnx"})


@pytest.mark.slow  # builds and runs the 3B architecture's quick variants; the bench's own smoke test
def test_bench_inference_quick_smoke(tmp_path, capsys):
    from vla_r1_ros.bench import inference

    parser = argparse.ArgumentParser()
    inference.configure(parser)
    out = tmp_path / "bench.json"
    args = parser.parse_args(
        ["--quick", "--precisions", "bf16,int4", "--levers", "vision_once", "--new-tokens", "2", "--json", str(out)]
    )
    assert inference.run(args) == 0
    report = json.loads(out.read_text())
    rows = [(row["precision"], row["row"]) for row in report["rows"]]
    assert rows == [("bf16", n) for n in ("official", "batched", "vision_once", "default")] + [("int4", "default")]
    assert set(report["peak_rss_gb"]) == {"bf16", "int4"}
    official = report["rows"][0]
    assert official["requests"] == 2 and official["prefill_s"] > 0 and official["total_s"] > 0
    assert report["speedup_vs_official"] > 0 and report["peak_rss_gb"]["bf16"] > 0
    assert set(report["lever_saving_s"]) == {"batched", "vision_once"}
    assert "speedup_vs_official" in capsys.readouterr().out


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
    policy = ScriptedExpertPolicy(CAMERA, scene_source=lambda: scene)
    texts = policy.predict(frame(), INSTRUCTION, list(TASKS), on_text=lambda t, s: streamed.append((t, s)))
    assert streamed == list(zip(TASKS, texts, strict=True))
    camera = CAMERA
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
    camera = CAMERA
    intrinsics, base_T_camera = CameraIntrinsics.from_config(camera), camera_extrinsics(camera)
    carry = ScriptedExpertPolicy(CAMERA, lambda: scene).predict(frame(), INSTRUCTION, [TRAJECTORY])[0]
    sharerobot = ScriptedExpertPolicy(CAMERA, lambda: scene, path_convention="sharerobot")
    path = parse_answer(sharerobot.predict(frame(), INSTRUCTION, [TRAJECTORY])[0], TRAJECTORY).waypoints
    gripper = project_to_normalized(np.array([scene.ee_position]), intrinsics, base_T_camera)[0]
    np.testing.assert_allclose(path[0], np.clip(gripper, 0.0, 1.0), atol=1e-6)
    np.testing.assert_allclose(path[1:], parse_answer(carry, TRAJECTORY).waypoints, atol=1e-6)
    assert "sharerobot" in sharerobot.model_id
    with pytest.raises(ValueError, match="path_convention"):
        ScriptedExpertPolicy(CAMERA, path_convention="backwards")


def test_scripted_says_so_when_it_cannot_answer():
    policy = ScriptedExpertPolicy(CAMERA, scene_source=make_scene)
    for instruction in ("put the green mug in the tray", "put the blue ball in the tray"):
        text = policy.predict(frame(), instruction, [AFFORDANCE])[0]
        answer = parse_answer(text, AFFORDANCE)
        assert not answer.ok and answer.error == "no <output> tag" and "cannot locate" in answer.reasoning
    assert "not visible" in policy.predict(frame(), "put the blue ball in the tray", [AFFORDANCE])[0]
    with pytest.raises(ScriptedPolicyError, match="no ground-truth scene"):
        ScriptedExpertPolicy(CAMERA, scene_source=lambda: None).predict(frame(), INSTRUCTION, list(TASKS))


def test_scripted_errors_are_seeded():
    scene = make_scene()

    def answers(seed):
        policy = ScriptedExpertPolicy(CAMERA, lambda: scene, noise="paper,parse_fail=0.5", seed=seed)
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
        ScriptedExpertPolicy(CAMERA, noise="loud")


@pytest.fixture(scope="module")
def layouts():
    return sim_scenes(CONFIG, 12, seed=1000)


@pytest.mark.parametrize("spec", ["paper", "iou=0.8,rmse=20", "iou=0.15,rmse=200"])
def test_error_model_is_calibrated(layouts, spec):
    """The realized mean IoU / RMSE of the expert's answers, scored by core.metrics, is the requested one."""
    requested = parse_error_model(spec)
    stats = error_statistics(CAMERA, layouts, requested, draws=12, seed=7)
    assert stats["n"] >= 500 and stats["parse_fail"] == 0.0
    assert stats["iou"] == pytest.approx(requested.iou, abs=0.03)
    assert stats["rmse"] == pytest.approx(requested.rmse, rel=0.1)


def test_error_model_rates_are_realized(layouts):
    stats = error_statistics(CAMERA, layouts, "wrong_object=0.3,parse_fail=0.1", draws=12, seed=3)
    assert stats["parse_fail"] == pytest.approx(0.1, abs=0.03)
    assert stats["wrong_object"] == pytest.approx(0.3, abs=0.05)
    assert stats["rmse"] > 0  # a wrong object's path is far from the instructed one's
    assert error_statistics(CAMERA, layouts, "none", draws=2)["wrong_object"] == 0.0
