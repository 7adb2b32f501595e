"""The policy interface: one image + one instruction -> the raw answer text for each task.

A policy only produces text in VLA-R1's answer format; `core.parsing.parse_answer` turns it into
boxes and waypoints, so the real model and the simulator's scripted expert go through the same parser,
validation and messages. `make_policy` (policies/__init__.py) builds one. Implementations:
- `vla_r1` (`policies/vla_r1.py`): the VLA-R1 model through transformers (+ bitsandbytes), or
  (`policies/remote.py`) on an OpenAI-compatible server.
- `scripted` (`policies/scripted.py`): a simulator-only expert that writes answers from ground truth,
  for tests and teaching. It is not the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

# on_text(task, new_text): called while a policy generates, with the text added since the last call.
TextCallback = Callable[[str, str], None]


class Policy(Protocol):
    name: str  # "vla_r1" | "scripted"
    model_id: str  # what answered, for VlaPrediction.model_id: "<name>:<checkpoint or variant>"

    def load(self) -> None:
        """Heavy, one-time preparation (model weights). Raises with an actionable message on failure."""
        ...

    def predict(
        self,
        image: np.ndarray,
        instruction: str,
        tasks: Sequence[str],
        on_text: TextCallback | None = None,
    ) -> list[str]:
        """Answer `instruction` about `image` (H, W, 3 RGB uint8) once per task, in order.

        Returns the raw answer text per task. `on_text(task, new_text)` streams the text as it is
        generated (policies that do not generate token by token call it once per task).
        """
        ...
