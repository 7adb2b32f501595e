"""A small OpenAI-compatible chat-completions server around a `VlaR1Policy`, for tests.

It speaks the subset of the API `vllm serve` exposes that the remote backend uses: `GET /v1/models`,
`POST /v1/chat/completions` with `stream: true` (server-sent events, `data: {...}` chunks carrying
`choices[0].delta.content`, a last chunk with `finish_reason`, then `data: [DONE]`) or without
streaming; `max_tokens`, `temperature` (0 = greedy), `top_p`, `repetition_penalty`, `seed`, `stop` +
`include_stop_str_in_output` (only `</output>` is understood), and `response_format` as an xgrammar
structural tag. Messages are applied to the model's own chat template, like vLLM does, with the
image from a base64 `image_url`. Requests run one at a time on the model (a lock).

`die_after_chunks=N` makes the server drop the connection after N content chunks of a stream — a
server process that dies mid-answer; `stall_s` makes it wait that long before answering (a hung or
overloaded server). `max_in_flight` is the most requests it had open at once. Binds 127.0.0.1 on an
ephemeral port.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from vla_r1_ros.policies.answer_format import OUTPUT_CLOSE
from vla_r1_ros.policies.vla_r1 import VlaR1Policy


class _Dropped(Exception):
    """Raised from the streaming callback to abandon generation after the connection was dropped."""


def _image_from_url(url: str) -> np.ndarray:
    from PIL import Image

    prefix, _, payload = url.partition(",")
    if not prefix.startswith("data:image/") or ";base64" not in prefix:
        raise ValueError("only base64 data URLs are served here")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))


def _chat_and_image(messages: list[dict]) -> tuple[list[dict], np.ndarray]:
    """OpenAI messages -> the model's chat (image slots as {"type": "image"}) and the one image."""
    images, chat = [], []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        parts = []
        for part in content:
            if part["type"] == "image_url":
                images.append(_image_from_url(part["image_url"]["url"]))
                parts.append({"type": "image"})
            else:
                parts.append({"type": "text", "text": part["text"]})
        chat.append({"role": message["role"], "content": parts})
    if len(images) != 1:
        raise ValueError(f"exactly one image per request is served here, got {len(images)}")
    return chat, images[0]


class OpenAICompatibleServer:
    """`with OpenAICompatibleServer(policy, "vla-r1") as server: server.url` -> "http://127.0.0.1:PORT/v1"."""

    def __init__(self, policy: VlaR1Policy, model_name: str, die_after_chunks: int | None = None, stall_s: float = 0.0):
        self.policy = policy
        self.model_name = model_name
        self.die_after_chunks = die_after_chunks
        self.stall_s = stall_s
        self.requests: list[dict[str, Any]] = []  # every chat-completions body received, in order
        self.max_in_flight = 0
        self._in_flight = 0
        self._count_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="openai-test-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> OpenAICompatibleServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def completion_settings(self, body: dict[str, Any]) -> dict[str, Any]:
        """The request's sampling fields as `VlaR1Policy.variant` changes."""
        stop = body.get("stop") or []
        if set(stop) - {OUTPUT_CLOSE}:
            raise ValueError(f"only stop=[{OUTPUT_CLOSE!r}] is served here, got {stop}")
        temperature = float(body.get("temperature", 1.0))
        changes: dict[str, Any] = {
            "max_new_tokens": int(body.get("max_tokens", 16)),
            "greedy": temperature == 0.0,
            "repetition_penalty": float(body.get("repetition_penalty", 1.0)),
            "stop_at_output": OUTPUT_CLOSE in stop,
        }
        if temperature > 0:
            changes.update(temperature=temperature, top_p=float(body.get("top_p", 1.0)))
        return changes

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:  # keep test output clean
                pass

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/") != "/v1/models":
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                self._json(200, {"object": "list", "data": [{"id": server.model_name, "object": "model"}]})

            def do_POST(self) -> None:
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                with server._count_lock:
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                try:
                    self._complete()
                finally:
                    with server._count_lock:
                        server._in_flight -= 1

            def _complete(self) -> None:
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                    server.requests.append(body)
                    if body.get("model") != server.model_name:
                        raise ValueError(f"model {body.get('model')!r} is not served (only {server.model_name!r})")
                    chat, image = _chat_and_image(body["messages"])
                    variant = server.policy.variant(**server.completion_settings(body))
                except (KeyError, TypeError, ValueError) as exc:
                    self._json(400, {"error": {"message": str(exc)}})
                    return
                time.sleep(server.stall_s)
                tag = body.get("response_format")
                created = int(time.time())
                if not body.get("stream"):
                    with server._model_lock:
                        text = variant.generate(image, [chat], ["answer"], [tag])[0]
                    message = {"role": "assistant", "content": text}
                    choice = {"index": 0, "message": message, "finish_reason": "stop"}
                    self._json(200, {"object": "chat.completion", "created": created, "choices": [choice]})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                chunks = 0

                def event(delta: dict[str, Any], finish_reason: str | None) -> None:
                    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
                    payload = {"object": "chat.completion.chunk", "created": created, "choices": [choice]}
                    self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
                    self.wfile.flush()

                def on_text(_row: str, text: str) -> None:
                    nonlocal chunks
                    if server.die_after_chunks is not None and chunks >= server.die_after_chunks:
                        raise _Dropped
                    event({"content": text}, None)
                    chunks += 1

                try:
                    with server._model_lock:
                        variant.generate(image, [chat], ["answer"], [tag], on_text=on_text)
                    event({}, "stop")
                    self.wfile.write(b"data: [DONE]\n\n")
                except _Dropped:
                    self.close_connection = True  # the socket closes with the answer half sent
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away

        return Handler
