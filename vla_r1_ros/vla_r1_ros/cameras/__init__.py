"""Camera sources (one interface): RealSense, the simulator, recordings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vla_r1_ros.cameras.base import CameraError, CameraSource

SOURCES = ("sim", "realsense", "replay", "bag")
# Sources that play recorded frames: each frame is restamped at playback and keeps its recorded stamp.
REPLAYED_SOURCES = ("replay", "bag")


def make_camera(source: str, params: dict[str, Any], sim_workcell: Callable[[], Any] | None = None) -> CameraSource:
    """The camera named `source`, configured from `params` (the perception node's parameters).

    Keys: realsense: `serial`, `width`, `height`, `fps`; replay: `recording`, `repeat`, `real_time`; bag:
    `bag`, `repeat`, `real_time`; realsense and replay: `spatial_filter`, `temporal_filter`,
    `hole_filling_filter`, `frame_id`. Missing keys take the sources' defaults. Imports are lazy: the
    simulator needs no pyrealsense2 and the RealSense no PyBullet. `sim_workcell()` returns the process's
    simulated workcell, for `sim` (the caller owns it: the perception node passes its process context's
    `workcell`).
    """
    if source == "sim":
        from vla_r1_ros.cameras.sim import SimCamera

        if sim_workcell is None:
            raise CameraError("source 'sim' needs the simulated workcell (the caller's sim_workcell)")
        return SimCamera(sim_workcell())
    if source not in SOURCES:
        raise CameraError(f"unknown camera source {source!r}; choose one of {', '.join(SOURCES)}")
    if source == "bag":
        from vla_r1_ros.cameras.bag import BagCamera

        if not params.get("bag"):
            raise CameraError("source 'bag' needs a rosbag2 bag path")
        return BagCamera(
            params["bag"],
            repeat=bool(params.get("repeat", False)),
            real_time=bool(params.get("real_time", False)),
        )

    from vla_r1_ros.cameras.realsense import DepthFilters

    common: dict[str, Any] = {
        "filters": DepthFilters(
            spatial=params.get("spatial_filter", DepthFilters.spatial),
            temporal=params.get("temporal_filter", DepthFilters.temporal),
            hole_filling=params.get("hole_filling_filter", DepthFilters.hole_filling),
        )
    }
    if "frame_id" in params:
        common["frame_id"] = params["frame_id"]
    if source == "replay":
        from vla_r1_ros.cameras.replay import ReplayCamera

        if not params.get("recording"):
            raise CameraError("source 'replay' needs a recording (.db3 or .bag) path")
        return ReplayCamera(
            params["recording"],
            repeat=bool(params.get("repeat", False)),
            real_time=bool(params.get("real_time", False)),
            **common,
        )

    from vla_r1_ros.cameras.realsense import RealSenseCamera

    keys = ("serial", "width", "height", "fps")
    return RealSenseCamera(**{key: params[key] for key in keys if key in params}, **common)
