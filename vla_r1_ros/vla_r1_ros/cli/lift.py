"""`vla-r1 lift`: a `vla-r1 parse` JSON object (stdin) + an aligned depth PNG -> 3-D points (stdout JSON).

Stable contract. Input: `box_px` ([x1, y1, x2, y2]) and/or `waypoints_px` ([[x, y], ...]) in the
depth image's pixels; the depth PNG is uint16 millimetres, 0 = no depth. Output, one JSON object:
`ok`, `reason` (str or null), `grasp_camera` ([x, y, z] m, optical frame: the object's top surface
point inside the box, or null), `surface_waypoints_camera` ([[x, y, z], ...] where each waypoint's
pixel meets the surface, or null); with `--extrinsics FILE` (a camera.yaml-style file with
`extrinsics: {translation, rotation_xyzw}` = base_T_camera_optical) also `grasp_base` and
`surface_waypoints_base`. Exit 0 whether or not lifting succeeded; 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--depth", required=True, metavar="D.png", help="aligned depth, uint16 PNG in millimetres")
    for name in ("fx", "fy", "cx", "cy"):
        parser.add_argument(f"--{name}", required=True, type=float, help=f"depth/colour intrinsics: {name} (pixels)")
    parser.add_argument("--extrinsics", metavar="FILE", help="camera.yaml-style file: adds *_base outputs")
    parser.epilog = (
        "example: vla-r1 parse --task affordance --width 640 --height 480 < answer.txt | "
        "vla-r1 lift --depth depth.png --fx 615 --fy 615 --cx 320 --cy 240 --extrinsics config/camera.yaml"
    )


def _usage_error(message: str) -> int:
    print(f"vla-r1 lift: error: {message}", file=sys.stderr)
    return 2


def _as_list(array: Any) -> Any:
    return None if array is None else [[float(v) for v in row] for row in array.reshape(-1, 3)]


def run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np
    import yaml

    from vla_r1_ros.core.config import load_config
    from vla_r1_ros.core.geometry import CameraIntrinsics, RigidTransform
    from vla_r1_ros.core.lifting import LiftError, LiftParams, lift_prediction

    try:
        parsed = json.loads(sys.stdin.read())
    except ValueError as exc:
        return _usage_error(f"stdin is not JSON (pipe `vla-r1 parse` output in): {exc}")
    if not isinstance(parsed, dict):
        return _usage_error("stdin must be one JSON object (the output of `vla-r1 parse`)")
    depth = cv2.imread(args.depth, cv2.IMREAD_UNCHANGED)
    if depth is None:
        return _usage_error(f"cannot read the depth image {args.depth!r}")
    if depth.dtype != np.uint16 or depth.ndim != 2:
        return _usage_error(
            f"{args.depth} must be a single-channel uint16 PNG (got {depth.dtype}, shape {depth.shape})"
        )
    base_T_camera = None
    if args.extrinsics:
        try:
            with open(args.extrinsics, encoding="utf-8") as handle:
                base_T_camera = RigidTransform.from_config(yaml.safe_load(handle)["extrinsics"])
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
            return _usage_error(f"cannot read extrinsics from {args.extrinsics}: {exc!r}")

    output: dict[str, Any] = {"ok": False, "reason": None, "grasp_camera": None, "surface_waypoints_camera": None}
    if base_T_camera is not None:
        output.update(grasp_base=None, surface_waypoints_base=None)
    box, waypoints = parsed.get("box_px"), parsed.get("waypoints_px")
    if not parsed.get("ok", False):
        output["reason"] = f"the prediction did not parse: {parsed.get('error')}"
    elif box is None and waypoints is None:
        output["reason"] = "nothing to lift: no box_px or waypoints_px (run `vla-r1 parse` with --width/--height)"
    else:
        intrinsics = CameraIntrinsics(depth.shape[1], depth.shape[0], args.fx, args.fy, args.cx, args.cy)
        params = LiftParams.from_config(load_config("workspace"), load_config("camera"))
        try:
            lifted = lift_prediction(depth, intrinsics, box, waypoints, params)
        except LiftError as exc:
            output["reason"] = str(exc)
        else:
            grasp = None if lifted.grasp is None else lifted.grasp.point
            output.update(ok=True, grasp_camera=None if grasp is None else _as_list(grasp)[0])
            output["surface_waypoints_camera"] = _as_list(lifted.surface_waypoints)
            if base_T_camera is not None:
                output["grasp_base"] = None if grasp is None else _as_list(base_T_camera.apply(grasp))[0]
                if lifted.surface_waypoints is not None:
                    output["surface_waypoints_base"] = _as_list(base_T_camera.apply(lifted.surface_waypoints))
    print(json.dumps(output))
    return 0
