"""Draw a VLA-R1 answer on the image it answers: affordance box, numbered waypoints, reasoning.

Used by the inference node (`vla_r1/annotated_image`, for RViz / image viewers) and by the HTML report,
so both show the same picture.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import cv2
import numpy as np

BOX_COLOUR = (0, 220, 0)  # RGB
PATH_COLOUR = (255, 140, 0)
TEXT_COLOUR = (255, 255, 255)
# Logged text is data of any size (an instruction of 1 MB took the report > 120 s and 11 GB in
# matplotlib's layout): what is drawn or shown is cut to these many characters, the files keep all.
SHOWN_TEXT_CHARS = 4000  # a paragraph: model output, a message, a note
SHOWN_LABEL_CHARS = 120  # one line: an instruction as a heading, a chart label, a list entry


def capped(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with how many more there were."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


def annotate(
    image: np.ndarray,
    box: Sequence[float] | None = None,
    waypoints: Sequence[Sequence[float]] | None = None,
    caption: str = "",
    caption_lines: int = 3,
) -> np.ndarray:
    """A copy of `image` (H, W, 3 RGB uint8) with the normalized centre box (cx, cy, w, h), the
    normalized waypoints numbered from 1, and the first `caption_lines` lines of `caption`."""
    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    height, width = out.shape[:2]
    scale = np.array([width, height], dtype=float)
    if box is not None:
        cx, cy, w, h = box
        top_left = np.round(np.array([cx - w / 2, cy - h / 2]) * scale).astype(int)
        bottom_right = np.round(np.array([cx + w / 2, cy + h / 2]) * scale).astype(int)
        cv2.rectangle(out, tuple(int(v) for v in top_left), tuple(int(v) for v in bottom_right), BOX_COLOUR, 2)
    if waypoints is not None and len(waypoints):
        points = np.round(np.asarray(waypoints, dtype=float).reshape(-1, 2) * scale).astype(np.int32)
        cv2.polylines(out, [points.reshape(-1, 1, 2)], isClosed=False, color=PATH_COLOUR, thickness=2)
        for number, (x, y) in enumerate(points, start=1):
            cv2.circle(out, (int(x), int(y)), 5, PATH_COLOUR, -1)
            cv2.putText(
                out, str(number), (int(x) + 6, int(y) - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, PATH_COLOUR, 1, cv2.LINE_AA
            )
    line_chars = max(20, width // 9)
    lines = textwrap.wrap(" ".join(caption[: line_chars * caption_lines * 2].split()), width=line_chars)
    lines = lines[:caption_lines]
    if lines:
        band = 8 + 18 * len(lines)
        out[:band] = (out[:band] * 0.35).astype(np.uint8)  # darken under the text so it reads on any scene
        for row, line in enumerate(lines):
            cv2.putText(out, line, (6, 18 + 18 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.5, TEXT_COLOUR, 1, cv2.LINE_AA)
    return out
