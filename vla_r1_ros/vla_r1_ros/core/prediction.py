"""`Prediction`: one policy answer to one instruction about one image — the one type from parsing to disk.

It holds what cannot be derived (the instruction, the tasks, the raw text per task, the image size, who
answered and how long it took, or why the policy gave no answer) and derives everything else by parsing
the raw texts with `core.parsing.parse_answer`: the normalized box and waypoints as floats, pixels (never
rounded: lifting works on sub-pixel coordinates), validity, errors and the format reward. Whoever builds a
Prediction from the wire therefore re-validates it with the same contract as the parser; nothing a
publisher claims about validity or pixels is trusted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla_r1_ros.core.parsing import ParsedAnswer, box_to_pixels, parse_answer, waypoints_to_pixels
from vla_r1_ros.core.prompts import AFFORDANCE, TRAJECTORY

# A model id names what answered: "<policy>:<checkpoint>", then "+adapter:<directory>" when a LoRA
# adapter was loaded onto it. Written by `model_id_with_adapter`, read back by `checkpoint_and_adapter` (the report).
ADAPTER_MARK = "+adapter:"


def model_id_with_adapter(checkpoint: str, adapter: str = "") -> str:
    """The model id of a checkpoint ("<policy>:<checkpoint>") with the adapter loaded onto it ("" = none)."""
    return checkpoint + (ADAPTER_MARK + adapter if adapter else "")


def checkpoint_and_adapter(model_id: str) -> tuple[str, str]:
    """(checkpoint, adapter) of a model id; the adapter is "" when none was loaded."""
    checkpoint, mark, adapter = model_id.rpartition(ADAPTER_MARK)
    return (checkpoint, adapter) if mark else (model_id, "")


@dataclass(frozen=True)
class Prediction:
    instruction: str
    tasks: tuple[str, ...]
    raw_texts: tuple[str, ...]  # one per task, in order ("" where the policy gave nothing)
    image_size: tuple[int, int]  # (width, height) of the image the policy saw
    model_id: str = ""
    latency_s: float = 0.0
    policy_error: str = ""  # why the policy gave no answer at all ("" when it answered)
    answers: tuple[ParsedAnswer, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "raw_texts", tuple(self.raw_texts))
        object.__setattr__(self, "image_size", (int(self.image_size[0]), int(self.image_size[1])))
        if len(self.raw_texts) != len(self.tasks):
            raise ValueError(f"{len(self.tasks)} tasks but {len(self.raw_texts)} answer texts")
        answers = () if self.policy_error else tuple(map(parse_answer, self.raw_texts, self.tasks))
        object.__setattr__(self, "answers", answers)

    @classmethod
    def failed(
        cls, instruction: str, tasks: Sequence[str], error: str, image_size=(0, 0), model_id: str = ""
    ) -> Prediction:
        """A prediction the policy never answered (no frame, not ready, policy crashed, cancelled)."""
        return cls(instruction, tuple(tasks), ("",) * len(tasks), image_size, model_id, policy_error=error)

    def answer(self, task: str) -> ParsedAnswer | None:
        return next((a for a in self.answers if a.task == task), None)

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        """Normalized centre box (cx, cy, w, h) of a parsed affordance answer."""
        answer = self.answer(AFFORDANCE)
        return answer.box if answer is not None and answer.ok else None

    @property
    def waypoints(self) -> np.ndarray | None:
        """(N, 2) normalized waypoints of a parsed trajectory answer."""
        answer = self.answer(TRAJECTORY)
        ok = answer is not None and answer.ok and answer.waypoints is not None
        return np.asarray(answer.waypoints, dtype=float).reshape(-1, 2) if ok else None

    @property
    def box_px(self) -> tuple[float, float, float, float] | None:
        """The box as float pixel corners (x1, y1, x2, y2), clipped to the image."""
        box = self.box
        return None if box is None else box_to_pixels(box, *self.image_size)

    @property
    def waypoints_px(self) -> np.ndarray | None:
        waypoints = self.waypoints
        return None if waypoints is None else waypoints_to_pixels(waypoints, *self.image_size)

    @property
    def reasoning(self) -> dict[str, str]:
        return {a.task: a.reasoning or "" for a in self.answers}

    @property
    def error(self) -> str:
        if self.policy_error:
            return self.policy_error
        if not self.tasks:
            return "no task was answered"
        return "; ".join(f"{a.task}: {a.error}" for a in self.answers if not a.ok)

    @property
    def valid(self) -> bool:
        return not self.error

    @property
    def format_reward(self) -> float:
        return float(np.mean([a.format_reward for a in self.answers])) if self.answers else 0.0

    def to_json(self) -> dict[str, Any]:
        """episode.json's `prediction`: the inputs, then what parsing derived from them (for readers)."""
        box, waypoints = self.box, self.waypoints
        box_px, waypoints_px = self.box_px, self.waypoints_px
        return {
            "instruction": self.instruction,
            "tasks": list(self.tasks),
            "raw_texts": dict(zip(self.tasks, self.raw_texts, strict=True)),
            "image_size": list(self.image_size),
            "model_id": self.model_id,
            "inference_latency_s": float(self.latency_s),
            "policy_error": self.policy_error,
            "parsed": {
                "valid": self.valid,
                "error": self.error,
                "format_reward": self.format_reward,
                "box_normalized": None if box is None else list(box),
                "box_px": None if box_px is None else [float(v) for v in box_px],
                "waypoints_normalized": None if waypoints is None else waypoints.tolist(),
                "waypoints_px": None if waypoints_px is None else waypoints_px.tolist(),
                "reasoning": self.reasoning,
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Prediction:
        tasks = tuple(data["tasks"])
        return cls(
            instruction=data.get("instruction", ""),
            tasks=tasks,
            raw_texts=tuple(data["raw_texts"].get(task, "") for task in tasks),
            image_size=tuple(data.get("image_size") or (0, 0)),
            model_id=data.get("model_id", ""),
            latency_s=float(data.get("inference_latency_s", 0.0)),
            policy_error=data.get("policy_error", ""),
        )
