"""VLA-R1 on a remote OpenAI-compatible server: `vllm serve GigaAI-Research/vla-r1` (or SGLang).

The official VLA-R1 code is itself a server with the robot as its client; this backend is that client
for the servers labs already run. Per decision it sends one chat-completions request per task, all
at once (the server batches them, as this package's in-process path batches its two rows), each
streamed (server-sent events) so the reasoning arrives as it is generated.

What goes over the wire is what the official client sends the model: one user message, text
(`" " + instruction + suffix`, the literal `<image>` kept) before the image, the frame JPEG-encoded
(quality 90) as a data URL, the official sampling settings (or greedy: temperature 0), and — when the
think budget or constrained answers are on — the answer format as an xgrammar structural tag in
`response_format`, which vLLM and SGLang compile with xgrammar themselves.

Failures are errors with the server and the task in the message, never a hang: connection and
silence timeouts, retries (with back-off) of a request that failed before its first streamed text,
and a stream that ends without the server's end marker ("the server died mid-answer").
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from vla_r1_ros.policies import answer_format
from vla_r1_ros.policies.base import TextCallback
from vla_r1_ros.policies.settings import OpenAISettings
from vla_r1_ros.policies.vla_r1 import chats_for

log = logging.getLogger(__name__)

RETRY_BACKOFF_S = 0.5  # first retry after this, doubling
RETRIED_STATUS = (429, 500, 502, 503, 504)  # overloaded or restarting: worth another try


class RemoteServerError(RuntimeError):
    """The server is unreachable, refused a request, or stopped mid-answer; the message says which."""


class _Stopped(RemoteServerError):
    """This task's stream was ended because the other task's failed (the other error is the cause)."""


class _Retryable(Exception):
    """A failure before the first streamed text: the request can be sent again."""


def jpeg_data_url(image: np.ndarray, quality: int) -> str:
    """The frame as the official client sends it: JPEG (PIL, `quality`), base64 data URL."""
    from PIL import Image

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def openai_messages(chat: list[dict], image_url: str) -> list[dict]:
    """core/prompts' chat with its image slot as an OpenAI `image_url` part (order kept: text, image)."""
    messages = []
    for message in chat:
        content = [
            {"type": "image_url", "image_url": {"url": image_url}} if part["type"] == "image" else part
            for part in message["content"]
        ]
        messages.append({"role": message["role"], "content": content})
    return messages


class RemotePolicy:
    """The `vla_r1` policy answered by an OpenAI-compatible chat-completions server."""

    name = "vla_r1"

    def __init__(self, settings: OpenAISettings):
        import requests

        self.settings = settings
        self.base_url = settings.server_url.rstrip("/")
        self.served_model = settings.served_model
        self.model_id = f"{self.name}:openai:{settings.served_model or '?'}@{self.base_url}"
        self._session = requests.Session()
        token = os.environ.get(settings.api_key_env, "") if settings.api_key_env else ""
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        self._callback_lock = threading.Lock()

    # ---- loading: ask the server what it serves --------------------------------------------------

    def load(self) -> None:
        """Check the server answers and learn its model id (`GET /models`); logs it."""
        listing = self._with_retries("GET /models", lambda: self._get_models())
        served = [entry.get("id", "") for entry in listing.get("data", [])]
        if not served:
            raise RemoteServerError(f"{self.base_url}/models lists no model")
        if self.settings.served_model and self.settings.served_model not in served:
            raise RemoteServerError(
                f"{self.base_url} serves {', '.join(served)}, not served_model {self.settings.served_model!r}"
            )
        self.served_model = self.settings.served_model or served[0]
        self.model_id = f"{self.name}:openai:{self.served_model}@{self.base_url}"
        log.info("OpenAI-compatible server %s serves %s; using %s", self.base_url, ", ".join(served), self.served_model)

    def _get_models(self) -> dict[str, Any]:
        import requests

        try:
            response = self._session.get(f"{self.base_url}/models", timeout=self._timeouts())
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retryable(f"cannot reach {self.base_url}: {exc}") from exc
        self._check_status(response, "GET /models")
        return response.json()

    # ---- prediction --------------------------------------------------------------------------------

    def request_body(self, chat: list[dict], task: str, image_url: str) -> dict[str, Any]:
        """The chat-completions request for one task (streamed)."""
        generation = self.settings.generation
        body: dict[str, Any] = {
            "model": self.served_model,
            "messages": openai_messages(chat, image_url),
            "stream": True,
            "max_tokens": generation.max_new_tokens,
            "temperature": 0.0 if generation.greedy else generation.temperature,
            "top_p": 1.0 if generation.greedy else generation.top_p,
            "repetition_penalty": generation.repetition_penalty,  # vLLM / SGLang sampling extension
            "seed": generation.seed,
        }
        if generation.stop_at_output:
            # vLLM's extension keeps the stop string, so the answer still ends in </output>.
            body.update(stop=[answer_format.OUTPUT_CLOSE], include_stop_str_in_output=True)
        tag = answer_format.structural_tag(task, generation.think_budget, generation.constrained)
        if tag is not None:
            body["response_format"] = tag
        return body

    def predict(
        self,
        image: np.ndarray,
        instruction: str,
        tasks: Sequence[str],
        on_text: TextCallback | None = None,
    ) -> list[str]:
        if self.served_model == "":
            self.load()
        tasks = list(tasks)
        chats = chats_for(instruction, tasks)
        if not tasks:
            return []
        image_url = jpeg_data_url(image, self.settings.jpeg_quality)
        stop = threading.Event()  # one task failing (or a cancel from on_text) ends the other stream too
        with ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="openai") as pool:
            futures = [
                pool.submit(self._answer, task, self.request_body(chat, task, image_url), on_text, stop)
                for chat, task in zip(chats, tasks, strict=True)
            ]
            failures = [future.exception() for future in futures]
        # The error worth reporting is the one that stopped the others, not their "stopped".
        for failure in sorted((f for f in failures if f is not None), key=lambda f: isinstance(f, _Stopped)):
            raise failure
        return [future.result() for future in futures]

    def _answer(self, task: str, body: dict[str, Any], on_text: TextCallback | None, stop: threading.Event) -> str:
        try:
            return self._with_retries(f"task {task}", lambda: self._stream(task, body, on_text, stop))
        except BaseException:
            stop.set()
            raise

    def _stream(self, task: str, body: dict[str, Any], on_text: TextCallback | None, stop: threading.Event) -> str:
        """One streamed completion; `_Retryable` until its first text arrives, then errors are final."""
        import requests

        url = f"{self.base_url}/chat/completions"
        try:
            response = self._session.post(url, json=body, stream=True, timeout=self._timeouts())
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retryable(f"cannot reach {self.base_url}: {exc}") from exc
        text: list[str] = []
        finished = False
        with response:
            self._check_status(response, f"task {task}")
            try:
                for line in response.iter_lines(decode_unicode=True):
                    if stop.is_set():
                        raise _Stopped(f"task {task}: stopped, the other task's request failed")
                    if not line or not line.startswith("data:"):
                        continue  # SSE keep-alive comments and blank separators
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        finished = True
                        break
                    piece, reason = self._delta(json.loads(data), task)
                    if piece:
                        text.append(piece)
                        if on_text is not None:
                            with self._callback_lock:
                                on_text(task, piece)
                    finished = finished or reason is not None
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                failure = f"{type(exc).__name__}: {exc}"
            else:
                failure = "" if finished else "the stream ended without a finish_reason or [DONE]"
        if failure:
            message = f"{self.base_url} died mid-answer (task {task}, after {len(''.join(text))} characters): {failure}"
            if not text:
                raise _Retryable(message)
            raise RemoteServerError(message)
        return "".join(text)

    def _delta(self, chunk: dict[str, Any], task: str) -> tuple[str, str | None]:
        if "error" in chunk:
            raise RemoteServerError(f"{self.base_url} reported an error for task {task}: {chunk['error']}")
        choices = chunk.get("choices") or [{}]
        return (choices[0].get("delta") or {}).get("content") or "", choices[0].get("finish_reason")

    # ---- plumbing ------------------------------------------------------------------------------------

    def _timeouts(self) -> tuple[float, float]:
        return self.settings.connect_timeout_s, self.settings.read_timeout_s

    def _check_status(self, response: Any, what: str) -> None:
        if response.status_code == 200:
            return
        detail = response.text[:300]
        message = f"{self.base_url} answered {what} with HTTP {response.status_code}: {detail}"
        if response.status_code in RETRIED_STATUS:
            raise _Retryable(message)
        raise RemoteServerError(message)

    def _with_retries(self, what: str, attempt: Any) -> Any:
        delay, failures = RETRY_BACKOFF_S, 0
        while True:
            try:
                return attempt()
            except _Retryable as exc:
                failures += 1
                if failures > self.settings.retries:
                    raise RemoteServerError(f"{what}: {exc} (after {failures} attempts)") from exc
                log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
                time.sleep(delay)
                delay *= 2
