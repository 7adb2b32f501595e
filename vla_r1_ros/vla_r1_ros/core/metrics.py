"""The paper's evaluation metrics: IoU for affordance boxes; DFD, HD, RMSE for trajectories.

Conventions (paper, Table III): IoU is reported ×100; trajectory distances are computed on waypoints
scaled ×1000 (normalized → [0, 1000)); Avg is the mean of DFD, HD and RMSE. A prediction that does not
parse scores IoU 0 and is left out of the distance means, but counted in `parse_failures`.

`frechet_from_costs` is the one discrete-Fréchet dynamic programme of the package; the trajectory reward
(`core/rewards.py`) feeds it its orientation-sensitive cost matrix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from vla_r1_ros.core.parsing import format_reward, parse_answer
from vla_r1_ros.core.prompts import AFFORDANCE, TASKS, TRAJECTORY

IOU_SCALE = 100.0
DISTANCE_SCALE = 1000.0


def as_path(points: Any) -> np.ndarray:
    """(N, 2) float array of a sequence of (x, y) points; raises ValueError if empty or not pairs."""
    path = np.asarray(points, dtype=float)
    if path.ndim != 2 or path.shape[1] != 2 or len(path) == 0:
        raise ValueError(f"expected a non-empty sequence of (x, y) points, got shape {path.shape}")
    return path


def box_corners(box: Any) -> tuple[float, float, float, float]:
    """Centre box (cx, cy, w, h) → corners (x1, y1, x2, y2) clipped to [0, 1] (sizes taken as absolute
    values, as the reference's reward does). Plain floats: for four numbers numpy only adds overhead."""
    cx, cy, w, h = (float(value) for value in box)
    half_w, half_h = abs(w) / 2.0, abs(h) / 2.0
    x1, y1, x2, y2 = (min(1.0, max(0.0, v)) for v in (cx - half_w, cy - half_h, cx + half_w, cy + half_h))
    return x1, y1, x2, y2


def _area(x1: float, y1: float, x2: float, y2: float) -> float:
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def box_overlap(box_a: Any, box_b: Any) -> tuple[float, float, float]:
    """(intersection, union, enclosing-box area) of two centre boxes after clipping to [0, 1]."""
    a, b = box_corners(box_a), box_corners(box_b)
    intersection = _area(max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    enclosing = _area(min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
    return intersection, _area(*a) + _area(*b) - intersection, enclosing


def iou(box_a: Any, box_b: Any) -> float:
    """Intersection over union of two normalized centre boxes (0 when the union is empty)."""
    intersection, union, _ = box_overlap(box_a, box_b)
    return intersection / union if union > 0.0 else 0.0


def frechet_from_costs(cost: np.ndarray) -> float:
    """Discrete Fréchet value of a point-pair cost matrix (rows: path P, columns: path Q):
    `C(i, j) = max(cost(i, j), min(C(i−1, j), C(i−1, j−1), C(i, j−1)))`, returns C(m−1, n−1).

    Cells on one anti-diagonal i + j = k depend only on diagonals k−1 and k−2, so each diagonal is one
    vectorized step: m + n − 1 numpy steps instead of m·n Python steps. Diagonals are stored indexed by
    row i, with +inf in cells outside the matrix so they never win a min.
    """
    cost = np.asarray(cost, dtype=float)
    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        raise ValueError("discrete Fréchet needs two non-empty paths")
    row_index = np.arange(rows)[:, None]
    diagonals = np.full((rows + cols - 1, rows), np.inf)
    diagonals[row_index + np.arange(cols)[None, :], row_index] = cost
    before_previous = np.full(rows, np.inf)  # diagonal k−2
    previous = diagonals[0].copy()  # diagonal 0: C(0, 0) = cost(0, 0)
    best = np.empty(rows)
    for k in range(1, rows + cols - 1):
        # best[i] = min(C(i, j−1), C(i−1, j), C(i−1, j−1)) with j = k − i
        best[0] = previous[0]
        np.minimum(previous[1:], previous[:-1], out=best[1:])
        np.minimum(best[1:], before_previous[:-1], out=best[1:])
        current = np.maximum(diagonals[k], best)
        before_previous, previous = previous, current
    return float(previous[rows - 1])


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between every point of `a` (rows) and of `b` (columns)."""
    difference = a[:, None, :] - b[None, :, :]
    return np.hypot(difference[..., 0], difference[..., 1])


def discrete_frechet(a: Any, b: Any) -> float:
    """Discrete Fréchet distance between two point sequences (order matters)."""
    return frechet_from_costs(pairwise_distances(as_path(a), as_path(b)))


def hausdorff(a: Any, b: Any) -> float:
    """Symmetric Hausdorff distance between two point sets."""
    distances = pairwise_distances(as_path(a), as_path(b))
    return float(max(distances.min(axis=1).max(), distances.min(axis=0).max()))


def resample_polyline(points: np.ndarray, count: int) -> np.ndarray:
    """`count` points spaced uniformly by arc length along a polyline of any dimension (N, D), ends
    included. A path of zero length (one point, or all points equal) gives `count` copies of its first
    point."""
    points = np.asarray(points, dtype=float)
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1) if len(points) > 1 else np.zeros(0)
    # np.interp needs strictly increasing positions: drop points that repeat their predecessor.
    keep = np.concatenate([[True], steps > 0.0])
    points = points[keep]
    arc = np.concatenate([[0.0], np.cumsum(steps[steps > 0.0])])
    if arc[-1] == 0.0:
        return np.repeat(points[:1], count, axis=0)
    targets = np.linspace(0.0, arc[-1], count)
    return np.column_stack([np.interp(targets, arc, points[:, k]) for k in range(points.shape[1])])


def resample_by_arc_length(path: Any, count: int) -> np.ndarray:
    """`resample_polyline` of a validated 2-D waypoint path."""
    return resample_polyline(as_path(path), count)


def rmse_resampled(a: Any, b: Any) -> float:
    """Root mean squared point distance after resampling both polylines by arc length to max(len) points."""
    path_a, path_b = as_path(a), as_path(b)
    count = max(len(path_a), len(path_b))
    difference = resample_by_arc_length(path_a, count) - resample_by_arc_length(path_b, count)
    return float(np.sqrt(np.mean(np.sum(difference**2, axis=1))))


def score_sample(sample: Mapping[str, Any]) -> dict:
    """Per-sample record of `vla-r1 eval`: {"id", "task", "ok", "format", "iou" | "dfd", "hd", "rmse",
    "error"}. `sample` holds "task", "prediction" (model text) and "reference" (answer text).

    Raises ValueError when the sample itself is unusable (unknown task, missing field, a reference that
    does not parse); a prediction that does not parse is a normal result (ok=False).
    """
    task = sample.get("task")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected {AFFORDANCE} or {TRAJECTORY}")
    prediction_text, reference_text = sample.get("prediction"), sample.get("reference")
    if not isinstance(prediction_text, str) or not isinstance(reference_text, str):
        raise ValueError('"prediction" and "reference" must both be strings')
    reference = parse_answer(reference_text, task)
    if not reference.ok:
        raise ValueError(f"reference does not parse: {reference.error}")
    prediction = parse_answer(prediction_text, task)
    record: dict[str, Any] = {
        "id": sample.get("id"),
        "task": task,
        "ok": prediction.ok,
        "format": int(format_reward(prediction_text)),
    }
    if task == AFFORDANCE:
        record["iou"] = iou(prediction.box, reference.box) * IOU_SCALE if prediction.ok else 0.0
    elif prediction.ok:
        predicted = np.asarray(prediction.waypoints) * DISTANCE_SCALE
        expected = np.asarray(reference.waypoints) * DISTANCE_SCALE
        record["dfd"] = discrete_frechet(predicted, expected)
        record["hd"] = hausdorff(predicted, expected)
        record["rmse"] = rmse_resampled(predicted, expected)
    else:
        record.update(dfd=None, hd=None, rmse=None)
    record["error"] = prediction.error
    return record


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def summarize(records: Iterable[Mapping[str, Any]]) -> dict:
    """Summary of per-sample records, the `vla-r1 eval` object. Means are null when no sample counts."""
    records = list(records)
    affordance = [record for record in records if record["task"] == AFFORDANCE]
    trajectory = [record for record in records if record["task"] == TRAJECTORY]
    parsed_trajectory = [record for record in trajectory if record["ok"]]
    distances = {name: _mean([record[name] for record in parsed_trajectory]) for name in ("dfd", "hd", "rmse")}
    average = float(np.mean(list(distances.values()))) if parsed_trajectory else None
    return {
        "affordance": {"n": len(affordance), "iou": _mean([record["iou"] for record in affordance])},
        "trajectory": {"n": len(trajectory), **distances, "avg": average},
        "format_rate": _mean([record["format"] for record in records]),
        "parse_failures": sum(1 for record in records if not record["ok"]),
    }


def evaluate(samples: Iterable[Mapping[str, Any]]) -> dict:
    """The `vla-r1 eval` summary of samples {"id", "task", "prediction", "reference"} (see `summarize`)."""
    return summarize(score_sample(sample) for sample in samples)
