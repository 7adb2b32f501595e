"""How a benchmark hands over its figures: the scalars printed one a line, everything as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def report_figures(figures: dict[str, Any], json_path: Path | None, width: int, decimals: int) -> None:
    """Print each figure that is not a list (lists are per-trial series, for the JSON only), floats with
    `decimals` places, names padded to `width`; write all of them to `json_path` when given."""
    for name, value in figures.items():
        if not isinstance(value, list):
            print(f"{name:<{width}}{value:.{decimals}f}" if isinstance(value, float) else f"{name:<{width}}{value}")
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2))
        print(f"wrote {json_path}")
