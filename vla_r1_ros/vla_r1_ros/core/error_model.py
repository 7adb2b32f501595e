"""The scripted expert's error model: how wrong its answers are, in the paper's own metrics.

An `ErrorModel` has four documented knobs, each a quantity `core.metrics` measures:
- `iou` (0–1): mean IoU of the answered box with the exact box (1 = exact). Each answer's IoU is drawn
  from Beta(iou·c, (1 − iou)·c), c = IOU_CONCENTRATION (a model's IoUs spread over the whole range), and
  the exact box is moved and resized along a random direction (centre by a multiple of its size, sides
  by a log factor) until its IoU with the exact box is that value.
- `rmse` (0–1000, the paper's scale): mean `metrics.rmse_resampled` of the answered trajectory against
  the exact one (0 = exact). Each answer's RMSE is drawn from Gamma(shape RMSE_SHAPE, mean rmse) and the
  exact waypoints are displaced along a random direction (independent per waypoint and axis, clipped to
  the image) until the RMSE is that value.
- `wrong_object` (0–1): probability that a query (one image, all its tasks) is answered about another
  visible object than the instructed one — the arm then moves the wrong object.
- `parse_fail` (0–1): probability that an answer loses its closing `</output>` (parse failure; each
  task's answer drawn on its own).

Because every answer is solved to hit its drawn value, the realized means equal the requested ones up to
sampling noise (checked in test_policies.py: `test_error_model_is_calibrated`), except where the image
border makes a value unreachable (a tiny IoU for a box filling the image, an RMSE beyond the border).

Written as a preset name (`PRESETS`), `key=value` pairs, or a preset followed by pairs:
`paper`, `iou=0.5,rmse=40,wrong_object=0.1,parse_fail=0.02`, `paper,wrong_object=0.2`. Unnamed keys
keep the exact value (iou 1, the rest 0). `paper` is VLA-R1-3B's in-domain operating point (paper
Table III: IoU 36.51, RMSE 71.12); the paper reports no wrong-object or parse-failure rate, so both are 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import numpy as np

from vla_r1_ros.core.metrics import DISTANCE_SCALE, iou, rmse_resampled

# Paper Table III, VLA-R1-3B in-domain: the `paper` preset.
PAPER_MEAN_IOU = 0.3651
PAPER_MEAN_RMSE_1000 = 71.12

IOU_CONCENTRATION = 2.0  # Beta(μc, (1 − μ)c): per-answer IoU standard deviation √(μ(1 − μ)/3)
RMSE_SHAPE = 2.0  # Gamma shape: per-answer RMSE standard deviation mean/√2
MAX_RMSE = DISTANCE_SCALE * math.sqrt(2.0)  # two points cannot be further apart inside the image
_BISECTION_STEPS = 40
_MAX_SCALE = 1e3  # the step along the error direction is searched in [0, _MAX_SCALE]


class ErrorModelError(ValueError):
    """An error-model specification that does not parse or is out of range."""


@dataclass(frozen=True)
class ErrorModel:
    iou: float = 1.0
    rmse: float = 0.0
    wrong_object: float = 0.0
    parse_fail: float = 0.0

    def __post_init__(self) -> None:
        ranges = {"iou": (0.0, 1.0), "rmse": (0.0, MAX_RMSE), "wrong_object": (0.0, 1.0), "parse_fail": (0.0, 1.0)}
        for key, (low, high) in ranges.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ErrorModelError(f"error model {key} must be a finite number, not {value!r}")
            if not low <= value <= high:
                raise ErrorModelError(f"error model {key} = {value:g} is outside [{low:g}, {high:g}]")

    @property
    def spec(self) -> str:
        """The canonical `key=value` form (what `parse_error_model` reads back to the same model)."""
        return ",".join(f"{f.name}={getattr(self, f.name):g}" for f in fields(self))

    @property
    def exact(self) -> bool:
        return self == ErrorModel()

    def draw_box(
        self, box: tuple[float, float, float, float], rng: np.random.Generator
    ) -> tuple[float, float, float, float]:
        """A normalized centre box whose IoU with `box` is drawn from the model (exact when iou = 1)."""
        target = _draw_beta(self.iou, IOU_CONCENTRATION, rng)
        if target >= 1.0:
            return tuple(float(v) for v in box)
        cx, cy, w, h = (float(v) for v in box)
        dx, dy, grow_w, grow_h = rng.normal(0.0, 1.0, 4)

        def moved(scale: float) -> tuple[float, float, float, float]:
            return (
                float(np.clip(cx + scale * dx * w, 0.0, 1.0)),
                float(np.clip(cy + scale * dy * h, 0.0, 1.0)),
                float(min(w * math.exp(min(scale * grow_w, 50.0)), 1.0)),
                float(min(h * math.exp(min(scale * grow_h, 50.0)), 1.0)),
            )

        return moved(_solve_scale(lambda scale: 1.0 - iou(moved(scale), box), 1.0 - target))

    def draw_path(self, waypoints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Normalized waypoints whose `rmse_resampled` (0–1000) to `waypoints` is drawn from the model."""
        waypoints = np.asarray(waypoints, dtype=float)
        if self.rmse <= 0.0:
            return waypoints.copy()
        target = min(float(rng.gamma(RMSE_SHAPE, self.rmse / RMSE_SHAPE)), MAX_RMSE)
        direction = rng.normal(0.0, 1.0, waypoints.shape)
        exact = waypoints * DISTANCE_SCALE

        def moved(scale: float) -> np.ndarray:
            return np.clip(waypoints + scale * direction, 0.0, 1.0)

        return moved(_solve_scale(lambda scale: rmse_resampled(moved(scale) * DISTANCE_SCALE, exact), target))


def _draw_beta(mean: float, concentration: float, rng: np.random.Generator) -> float:
    if mean >= 1.0 or mean <= 0.0:
        return float(mean)
    return float(rng.beta(mean * concentration, (1.0 - mean) * concentration))


def _solve_scale(error: Callable[[float], float], target: float) -> float:
    """The step s ≥ 0 along an error direction where `error(s)` (0 at s = 0, growing overall) reaches
    `target`: bracket by doubling, then bisect. The largest step tried when the target is out of reach."""
    if target <= 0.0:
        return 0.0
    high = 1e-3
    while error(high) < target and high < _MAX_SCALE:
        high *= 2.0
    if error(high) < target:
        return high
    low = 0.0
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2.0
        if error(middle) < target:
            low = middle
        else:
            high = middle
    return high


PRESETS: dict[str, ErrorModel] = {
    "none": ErrorModel(),
    "paper": ErrorModel(iou=PAPER_MEAN_IOU, rmse=PAPER_MEAN_RMSE_1000),
}
KEYS: tuple[str, ...] = tuple(f.name for f in fields(ErrorModel))


def parse_error_model(text: str | ErrorModel) -> ErrorModel:
    """`paper`, `iou=0.5,rmse=40`, `paper,wrong_object=0.1` → ErrorModel (raises ErrorModelError)."""
    if isinstance(text, ErrorModel):
        return text
    if not isinstance(text, str) or not text.strip():
        raise ErrorModelError(f"empty error model; expected a preset ({', '.join(PRESETS)}) or key=value pairs")
    model, assigned = ErrorModel(), {}
    for index, part in enumerate(item.strip() for item in text.split(",")):
        if "=" not in part:
            if index != 0 or part not in PRESETS:
                raise ErrorModelError(
                    f"{part!r} is not a preset ({', '.join(PRESETS)}) or a key=value pair (keys: {', '.join(KEYS)})"
                    + ("; a preset may only come first" if part in PRESETS else "")
                )
            model = PRESETS[part]
            continue
        key, _, value = (piece.strip() for piece in part.partition("="))
        if key not in KEYS:
            raise ErrorModelError(f"unknown error-model key {key!r}; expected one of {', '.join(KEYS)}")
        if key in assigned:
            raise ErrorModelError(f"error-model key {key!r} given twice")
        try:
            assigned[key] = float(value)
        except ValueError:
            raise ErrorModelError(f"error model {key} = {value!r} is not a number") from None
    return replace(model, **assigned)
