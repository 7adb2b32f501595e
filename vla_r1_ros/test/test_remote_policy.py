"""The openai backend against a real HTTP server: `testing/openai_server.py` serves the tiny model
(real transformers classes) on 127.0.0.1, streaming included, started here per test."""

from __future__ import annotations

import logging
import socket
import time

import numpy as np
import pytest

from vla_r1_ros.core.config import load_config
from vla_r1_ros.core.parsing import parse_answer
from vla_r1_ros.core.prompts import AFFORDANCE, TASKS
from vla_r1_ros.policies.remote import RemotePolicy, RemoteServerError, jpeg_data_url
from vla_r1_ros.policies.settings import OpenAISettings, TransformersSettings
from vla_r1_ros.policies.vla_r1 import VlaR1Policy
from vla_r1_ros.testing.openai_server import OpenAICompatibleServer, _image_from_url
from vla_r1_ros.testing.tiny_model import build_tiny_vla_r1

INSTRUCTION = "put the red cube in the tray"
SERVED = "GigaAI-Research/vla-r1"
MODEL_CONFIG = load_config("model")


@pytest.fixture(scope="module")
def served_policy(tmp_path_factory):
    model = build_tiny_vla_r1(tmp_path_factory.getbasetemp() / "tiny-vla-r1-bpe", tokenizer="bpe")
    policy = VlaR1Policy(TransformersSettings.from_config(MODEL_CONFIG, model=str(model), device="cpu"))
    policy.load()
    return policy


def frame() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)


def remote(url: str, **overrides) -> RemotePolicy:
    settings = {"greedy": True, "max_new_tokens": 10, "connect_timeout_s": 2.0, "read_timeout_s": 20.0}
    return RemotePolicy(OpenAISettings.from_config(MODEL_CONFIG, server_url=url, **(settings | overrides)))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_both_tasks_stream_concurrently_and_match_the_model_in_process(served_policy, caplog):
    with OpenAICompatibleServer(served_policy, SERVED) as server:
        policy = remote(server.url)
        with caplog.at_level(logging.INFO, logger="vla_r1_ros.policies.remote"):
            policy.load()
        assert f"serves {SERVED}" in caplog.text  # the server's model id is logged ...
        assert policy.model_id == f"vla_r1:openai:{SERVED}@{server.url}"  # ... and names the predictions
        streamed = {task: "" for task in TASKS}

        def on_text(task, text):
            streamed[task] += text

        texts = policy.predict(frame(), INSTRUCTION, list(TASKS), on_text=on_text)
    assert [streamed[task] for task in TASKS] == texts
    assert server.max_in_flight == 2  # both requests were open at once
    # What the server received is the official request: text first, then the frame as JPEG q90.
    body = server.requests[0]
    (message,) = body["messages"]
    assert message["role"] == "user" and [part["type"] for part in message["content"]] == ["text", "image_url"]
    assert message["content"][0]["text"].startswith(" " + INSTRUCTION) and body["stream"] is True
    assert body["temperature"] == 0.0 and body["stop"] == ["</output>"] and "response_format" not in body
    # The same greedy answers as the model in this process, on the same (JPEG-decoded) frame.
    decoded = _image_from_url(jpeg_data_url(frame(), 90))
    greedy = served_policy.variant(greedy=True, max_new_tokens=10)
    assert texts == [greedy.predict(decoded, INSTRUCTION, [task])[0] for task in TASKS]


def test_constrained_answers_go_to_the_server_as_a_structural_tag(served_policy):
    with OpenAICompatibleServer(served_policy, SERVED) as server:
        policy = remote(server.url, max_new_tokens=200, think_budget=6, constrained=True, greedy=False)
        texts = policy.predict(frame(), INSTRUCTION, list(TASKS))
    assert all(body["response_format"]["type"] == "structural_tag" for body in server.requests)
    assert all(parse_answer(text, task).ok for text, task in zip(texts, TASKS, strict=True)), texts


def test_a_server_dying_mid_answer_is_a_clear_error(served_policy):
    with OpenAICompatibleServer(served_policy, SERVED, die_after_chunks=2) as server:
        policy = remote(server.url)
        policy.load()
        with pytest.raises(RemoteServerError, match=r"died mid-answer \(task (affordance|trajectory), after \d+"):
            policy.predict(frame(), INSTRUCTION, list(TASKS))
        assert len(server.requests) == 2  # text had arrived: not retried (it would repeat the answer)


def test_no_server_fails_after_the_retries_with_the_address():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    policy = remote(url, retries=1)
    started = time.monotonic()
    with pytest.raises(RemoteServerError, match=r"cannot reach .*\(after 2 attempts\)"):
        policy.load()
    assert time.monotonic() - started < 10


def test_a_silent_server_times_out_and_is_retried(served_policy):
    with OpenAICompatibleServer(served_policy, SERVED, stall_s=1.0) as server:
        policy = remote(server.url, read_timeout_s=0.3, retries=1, served_model=SERVED)
        with pytest.raises(RemoteServerError, match=r"task affordance: .*(timed out|Timeout).*\(after 2 attempts\)"):
            policy.predict(frame(), INSTRUCTION, [AFFORDANCE])
        assert len(server.requests) == 2


def test_wrong_model_and_refused_requests_are_errors_not_retries(served_policy):
    with OpenAICompatibleServer(served_policy, SERVED) as server:
        with pytest.raises(RemoteServerError, match=f"serves {SERVED}, not served_model 'other'"):
            remote(server.url, served_model="other").load()
        policy = remote(server.url, served_model=SERVED, retries=3)
        policy.served_model = "not-served"  # the server refuses the request with HTTP 400
        with pytest.raises(RemoteServerError, match="HTTP 400"):
            policy.predict(frame(), INSTRUCTION, [AFFORDANCE])
        assert len(server.requests) == 1


def test_bad_remote_settings_are_refused():
    with pytest.raises(ValueError, match="server_url must be an http"):
        OpenAISettings.from_config(MODEL_CONFIG, server_url="gpu-host:8000")
    with pytest.raises(ValueError, match="retries must be >= 0"):
        OpenAISettings.from_config(MODEL_CONFIG, retries=-1)
