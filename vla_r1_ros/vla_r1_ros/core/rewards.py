"""VLA-R1's verifiable rewards, exactly as the reference code (robot_bbox_traj_norm.py) computes them.

- format: `<think>…</think>` plus an `<output>` that `json.loads` accepts and that is not `null` → 1,
  else 0 (`format_reward`, defined next to the strict reader in `core/parsing.py`, re-exported here).
- region: GIoU of centre boxes clipped to [0, 1], score (GIoU + 1) / 2.
- trajectory: orientation-sensitive discrete Fréchet distance (ALAF), normalized, score 1 − min(1, D/norm).
- total: 0.9 · task score + 0.1 · format score.

The task score reads the STRICT output (`json.loads`), like the reference: a sloppy answer that the
lenient parser would accept still gets task score 0 here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_r1_ros.core.metrics import as_path, box_overlap, frechet_from_costs, pairwise_distances
from vla_r1_ros.core.parsing import NO_JSON, format_reward, strict_output_json
from vla_r1_ros.core.prompts import AFFORDANCE, BOX_KEYS, TASKS

TASK_WEIGHT = 0.9
FORMAT_WEIGHT = 0.1

# Orientation-sensitive Fréchet: weight of the tangent angle (radians) and of |ln(length ratio)|.
LAMBDA_ANGLE = 0.25
LAMBDA_LENGTH_RATIO = 0.10
# Bound of one point-pair cost: distance ≤ √2, angle ≤ π, |ln ratio| capped at ln 10 (reference's choice).
TRAJECTORY_NORMALIZER = math.sqrt(2.0) + LAMBDA_ANGLE * math.pi + LAMBDA_LENGTH_RATIO * math.log(10.0)
EPS = 1e-12


def region_reward(pred_box: Any, ref_box: Any) -> float:
    """(GIoU + 1) / 2 of two normalized centre boxes (cx, cy, w, h), each clipped to [0, 1] first.
    IoU is 0 when the union is empty; union and enclosing area are floored at 1e-12."""
    intersection, union, enclosing = box_overlap(pred_box, ref_box)
    overlap = intersection / union if union > 0.0 else 0.0
    enclosing = max(enclosing, EPS)
    giou = overlap - (enclosing - max(union, EPS)) / enclosing
    return (min(1.0, max(-1.0, giou)) + 1.0) / 2.0


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; rows shorter than EPS become (0, 0)."""
    norms = np.hypot(vectors[:, 0], vectors[:, 1])[:, None]
    return np.where(norms >= EPS, vectors / np.where(norms >= EPS, norms, 1.0), 0.0)


def tangents_and_lengths(path: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-point tangent and local length of a path, as the reference defines them.

    Tangent: first/last point the unit first/last segment; inside, the normalized sum of the unit
    incoming and outgoing segments, or the unit incoming one when they cancel (a reversal). Length: the
    outgoing segment, the incoming one for the last point. A single point: tangent (0, 0), length 0.
    """
    if len(path) == 1:
        return np.zeros((1, 2)), np.zeros(1)
    segments = np.diff(path, axis=0)
    segment_lengths = np.hypot(segments[:, 0], segments[:, 1])
    unit_segments = _unit(segments)
    summed = unit_segments[:-1] + unit_segments[1:]
    cancelled = np.hypot(summed[:, 0], summed[:, 1])[:, None] < EPS
    inner = np.where(cancelled, unit_segments[:-1], _unit(summed))
    tangents = np.concatenate([unit_segments[:1], inner, unit_segments[-1:]])
    lengths = np.concatenate([segment_lengths, segment_lengths[-1:]])
    return tangents, lengths


def orientation_frechet_costs(reference: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Point-pair cost ‖p − q‖ + λθ·angle(t_p, t_q) + λr·|ln(l_p / l_q)| for every (reference, prediction) pair."""
    tangents_p, lengths_p = tangents_and_lengths(reference)
    tangents_q, lengths_q = tangents_and_lengths(prediction)
    norms_p = np.hypot(tangents_p[:, 0], tangents_p[:, 1])[:, None]
    norms_q = np.hypot(tangents_q[:, 0], tangents_q[:, 1])[None, :]
    both_directed = (norms_p >= EPS) & (norms_q >= EPS)
    # Elementwise products in the reference's order rather than a matmul: near cos = 1, arccos turns
    # last-bit differences into ~1e-8 rad. (Even so, identical paths can score 1 − 1e-9, as in the reference.)
    dot = tangents_p[:, :1] * tangents_q[None, :, 0] + tangents_p[:, 1:] * tangents_q[None, :, 1]
    cosine = dot / np.where(both_directed, norms_p * norms_q, 1.0)
    angle = np.where(both_directed, np.arccos(np.clip(cosine, -1.0, 1.0)), 0.0)
    # |ln(l_p / l_q)|, or the reference's |ln((l_p + EPS) / (l_q + EPS))| when either length is ~0 (a
    # repeated point). Written as differences of per-point logarithms: n logs instead of m·n.
    long_p, long_q = lengths_p > EPS, lengths_q > EPS
    log_p, log_q = np.log(np.where(long_p, lengths_p, 1.0)), np.log(np.where(long_q, lengths_q, 1.0))
    log_p_eps, log_q_eps = np.log(lengths_p + EPS), np.log(lengths_q + EPS)
    ratio = np.abs(
        np.where(
            long_p[:, None] & long_q[None, :], log_p[:, None] - log_q[None, :], log_p_eps[:, None] - log_q_eps[None, :]
        )
    )
    return pairwise_distances(reference, prediction) + LAMBDA_ANGLE * angle + LAMBDA_LENGTH_RATIO * ratio


def orientation_frechet_distance(reference: Any, prediction: Any) -> float:
    """Orientation-sensitive discrete Fréchet distance D (not normalized); coordinates clipped to [0, 1]."""
    reference_path, prediction_path = np.clip(as_path(reference), 0.0, 1.0), np.clip(as_path(prediction), 0.0, 1.0)
    return frechet_from_costs(orientation_frechet_costs(reference_path, prediction_path))


def trajectory_reward(pred: Any, ref: Any) -> float:
    """1 − min(1, D / normalizer) with D the orientation-sensitive discrete Fréchet distance between the
    reference and the prediction (normalized (x, y) waypoints, no resampling). Raises ValueError on an
    empty path or one that is not (x, y) pairs."""
    return 1.0 - min(1.0, orientation_frechet_distance(ref, pred) / TRAJECTORY_NORMALIZER)


@dataclass(frozen=True)
class RewardBreakdown:
    """score = TASK_WEIGHT · task_score + FORMAT_WEIGHT · format."""

    score: float
    format: float
    task_score: float

    def to_json(self) -> dict:
        """The `vla-r1 reward` line."""
        return {"score": self.score, "format": int(self.format), "task_score": self.task_score}


def _is_box(value: Any) -> bool:
    return isinstance(value, dict) and all(key in value for key in BOX_KEYS)


def _is_pair_list(value: Any) -> bool:
    # The reference's check: a list whose items are all 2-element lists (an empty list passes here and
    # then fails in the distance, which gives task score 0 there too).
    return isinstance(value, list) and all(isinstance(item, list | tuple) and len(item) == 2 for item in value)


def _task_score(prediction: Any, reference: Any) -> float:
    """Task score of strict-JSON values, the reference's branches: two boxes → region reward, two lists
    of pairs → trajectory reward, anything else → 0. Values go through `float()` as in the reference; one
    that does not convert, or an empty path, gives 0.

    Deviation: any non-finite value reached while scoring gives 0 — a NaN or ±Infinity in the input, a
    box corner that overflows (centre ± half size, e.g. inf − inf), or a non-finite score. The
    reference's comparisons let `{"x": NaN, …}` through as a degenerate box whose GIoU clips to 1 (a
    perfect score a policy could learn to farm), and score an infinite box 0.25.
    """
    try:
        if _is_box(prediction) and _is_box(reference):
            values = [[float(box[key]) for key in BOX_KEYS] for box in (prediction, reference)]
            reward = region_reward
        elif _is_pair_list(prediction) and _is_pair_list(reference) and prediction and reference:
            values = [[[float(x), float(y)] for x, y in path] for path in (prediction, reference)]
            reward = trajectory_reward
        else:
            return 0.0
    except (TypeError, ValueError, OverflowError):
        return 0.0
    with np.errstate(all="ignore"):  # overflow is detected below, not warned about
        arrays = [np.asarray(value, dtype=float) for value in values]
        if reward is region_reward:  # the unclipped corners centre ± |size| / 2 must exist too
            arrays += [box[:2] + sign * np.abs(box[2:]) / 2.0 for box in arrays[:2] for sign in (-1.0, 1.0)]
        if not all(np.isfinite(array).all() for array in arrays):
            return 0.0
        score = reward(*values)
    return score if math.isfinite(score) else 0.0


def score_completion(task: str, completion: str, ground_truth: str) -> RewardBreakdown:
    """Reward of one completion against a ground-truth answer text (the dataset's `gpt` turn).

    Raises ValueError when the ground truth is unusable (unknown task, no JSON `<output>`, or an output
    of the wrong kind for `task`) and TypeError for non-string texts: those are data errors, not model
    errors.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if not isinstance(completion, str) or not isinstance(ground_truth, str):
        raise TypeError("completion and ground_truth must be strings")
    reference = strict_output_json(ground_truth)
    if reference is NO_JSON:
        raise ValueError("ground truth has no <output> with JSON content")
    expected_kind = _is_box if task == AFFORDANCE else _is_pair_list
    if not expected_kind(reference) or not reference:
        raise ValueError(f"ground truth output is not a {'box' if task == AFFORDANCE else 'list of [x, y] pairs'}")
    format_score = format_reward(completion)
    prediction = strict_output_json(completion)
    task_score = 0.0 if prediction is NO_JSON else _task_score(prediction, reference)
    return RewardBreakdown(
        score=TASK_WEIGHT * task_score + FORMAT_WEIGHT * format_score, format=format_score, task_score=task_score
    )
