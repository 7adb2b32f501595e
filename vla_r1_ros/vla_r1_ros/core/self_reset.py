"""The arm puts the scene back between trials, planned from one RGB-D frame set: no person, no simulator.

`plan_reset(view, registry, rng, settings)` finds every object in the tray and every object on the
table outside the spawn area (the area trials start from), and gives each a free random spot inside
it: its footprint (bounding circle) keeps `clearance_m` from every other object seen, from the spots
already chosen and from the tray, so an open finger fits beside it. Each `ResetMove` carries the
object's grasp (core/tabletop.py) and surface waypoints from it across to the table at the spot, so
`core.planning.plan_pick_and_place` plans it and the executor's validation checks it as any trial's.
`ResetImpossible` says why when there is no free spot or an object is wider than the open gripper.
An object still in the hand (fingers neither closed nor open, as the camera judge reads them, and a
registered object seen nowhere: a wrong-object grasp that was never released, an object wedged between
the fingers) is set down on a free spot first (`put_down_plan`): the camera cannot see it, the reset
can still carry it.

`check_layout(view, registry, settings)` is the reset's own check afterwards: every registered object
seen once, on the table inside the spawn area, and nothing in the tray.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_r1_ros.core.geometry import RigidTransform
from vla_r1_ros.core.lifting import GraspSurface
from vla_r1_ros.core.object_registry import MatchSettings, ObjectRegistry, RegisteredObject
from vla_r1_ros.core.planning import (
    PickPlacePlan,
    PlanningParams,
    PlanRejected,
    SafetyLimits,
    check_grasp_width,
    plan_pick_and_place,
)
from vla_r1_ros.core.tabletop import Blob, RgbdView, TabletopScene, TabletopSettings, measure_tray_in, segment_tabletop
from vla_r1_ros.core.tray import TrayNotFound, TrayPose


class ResetImpossible(RuntimeError):
    """The scene cannot be put back by the arm; the message says why (then the operator resets it)."""


@dataclass(frozen=True)
class ResetSettings:
    """`self_reset:` of config/workspace.yaml, with the segmentation and matching of `vision_judge:`, the
    planning and safety sections, and how wide the executor's gripper opens."""

    segmentation: TabletopSettings
    match: MatchSettings
    spawn_x_range: tuple[float, float]  # object centres, base frame
    spawn_y_range: tuple[float, float]
    area_margin_m: float  # a centre measured from depth this far outside the area is still inside it
    clearance_m: float  # free gap between footprints (bounding circles)
    attempts: int  # random spots tried per object
    waypoint_spacing_m: float  # between the carry path's surface waypoints
    planning: PlanningParams
    limits: SafetyLimits
    gripper_opening_m: float
    holding_width_m: float  # `vision_judge.holding_width_m`: fingers this far from closed and from open hold something

    @classmethod
    def from_config(
        cls, workspace_config: Mapping[str, Any], camera_config: Mapping[str, Any], gripper_opening_m: float
    ) -> ResetSettings:
        reset = workspace_config["self_reset"]
        return cls(
            segmentation=TabletopSettings.from_config(workspace_config, camera_config),
            match=MatchSettings.from_config(workspace_config),
            spawn_x_range=tuple(float(v) for v in reset["spawn_x_range"]),
            spawn_y_range=tuple(float(v) for v in reset["spawn_y_range"]),
            area_margin_m=float(reset["area_margin_m"]),
            clearance_m=float(reset["clearance_m"]),
            attempts=int(reset["attempts"]),
            waypoint_spacing_m=float(reset["waypoint_spacing_m"]),
            planning=PlanningParams.from_config(workspace_config),
            limits=SafetyLimits.from_config(workspace_config),
            gripper_opening_m=float(gripper_opening_m),
            holding_width_m=float(workspace_config["vision_judge"]["holding_width_m"]),
        )

    def holds_something(self, finger_width_m: float) -> bool:
        """Fingers neither closed nor open (the camera judge's reading of the gripper)."""
        return self.holding_width_m < finger_width_m < self.gripper_opening_m - self.holding_width_m

    def in_spawn_area(self, xy: np.ndarray) -> bool:
        """Whether an object whose centre is measured at `xy` stands in the spawn area (`area_margin_m`)."""
        (x0, x1), (y0, y1), m = self.spawn_x_range, self.spawn_y_range, self.area_margin_m
        return bool(x0 - m <= xy[0] <= x1 + m and y0 - m <= xy[1] <= y1 + m)


@dataclass(frozen=True)
class Hand:
    """The arm's hand as the reset is planned (at its observe pose): the TCP and the fingers' width."""

    tcp: RigidTransform  # base frame
    finger_width_m: float


@dataclass(frozen=True)
class ResetMove:
    object_name: str
    grasp: GraspSurface | None  # base frame; None: the object is already in the hand
    surface_waypoints: np.ndarray  # (N, 3) base frame: the grasp point, then across to the table at place_xy
    place_xy: np.ndarray  # (2,)
    reason: str  # "in the tray" / "outside the spawn area" / "in the hand"
    plan: PickPlacePlan


@dataclass(frozen=True)
class LayoutCheck:
    ok: bool
    message: str
    positions: dict[str, tuple[float, float, float]]  # name -> (x, y, yaw) of every object recognised on the table


def _look(
    view: RgbdView, registry: ObjectRegistry, settings: ResetSettings
) -> tuple[TabletopScene, list[tuple[Blob, RegisteredObject | None]]]:
    """The view segmented around the tray as it stands in it, each blob with the object it is (or None)."""
    try:
        tray = measure_tray_in(view, registry.tray, registry.table_z, settings.segmentation.lift)
    except TrayNotFound as exc:
        raise ResetImpossible(f"the tray is not where it was registered: {exc}") from None
    scene = segment_tabletop(view, registry.table_z, tray, settings.segmentation)
    return scene, [(blob, registry.match(blob, settings.match)[0]) for blob in scene.blobs]


def _radius(blob: Blob) -> float:
    return float(np.hypot(blob.length_m, blob.width_m) / 2)


def _gap_to_tray(xy: np.ndarray, tray: TrayPose) -> float:
    c, s = np.cos(tray.yaw_rad), np.sin(tray.yaw_rad)
    local = (xy - tray.centre[:2]) @ np.array([[c, -s], [s, c]])
    return float(np.linalg.norm(np.maximum(np.abs(local) - tray.size[:2] / 2, 0.0)))


def free_spot(
    radius: float,
    occupied: list[tuple[np.ndarray, float]],
    tray: TrayPose,
    rng: np.random.Generator,
    settings: ResetSettings,
) -> np.ndarray | None:
    """A random spot in the spawn area for a footprint of `radius`, `clearance_m` clear of every
    (centre, radius) in `occupied` and of the tray; None after `attempts` tries. The spot keeps
    `area_margin_m` inside the area: an object set down at its edge is measured up to that far out (a
    duck's top is not above where it was held), and the layout check must still find it inside."""
    margin = settings.area_margin_m
    low = np.array([settings.spawn_x_range[0], settings.spawn_y_range[0]]) + margin
    high = np.array([settings.spawn_x_range[1], settings.spawn_y_range[1]]) - margin
    if np.any(high < low):  # an area narrower than its margins holds no spot
        return None
    for _ in range(settings.attempts):
        xy = rng.uniform(low, high)
        clear = all(np.linalg.norm(xy - c) >= radius + r + settings.clearance_m for c, r in occupied)
        if clear and _gap_to_tray(xy, tray) >= radius + settings.clearance_m:
            return xy
    return None


def carry_waypoints(grasp_point: np.ndarray, place_xy: np.ndarray, table_z: float, spacing_m: float) -> np.ndarray:
    """The grasp point, then points on the table along the straight line to `place_xy`, at most
    `spacing_m` apart (the planner carries `carry_height_m` above each and places at the last)."""
    start = np.array([*grasp_point[:2], table_z])
    end = np.array([*place_xy, table_z])
    steps = max(1, int(np.ceil(np.linalg.norm(end - start) / spacing_m)))
    return np.vstack([grasp_point, start + (end - start) * np.arange(1, steps + 1)[:, None] / steps])


def put_down_plan(hand: Hand, held_height_m: float, place_xy: np.ndarray, settings: ResetSettings) -> PickPlacePlan:
    """The object in the hand set down at `place_xy`: the grasp is where the hand holds it now (the fingers
    close on it again, so a wedged object is gripped), then straight down to carry height and across in
    steps of at most `waypoint_spacing_m`, lowered until the object — assumed to hang its whole height
    below the TCP, since where it is held is unknown — is `release_gap_m` above the table, released."""
    params, table_z = settings.planning, settings.limits.table_z
    start, orientation = np.asarray(hand.tcp.translation, dtype=float), hand.tcp.rotation
    carry_z = table_z + params.carry_height_m
    spacing = settings.waypoint_spacing_m
    down = max(1, int(np.ceil(max(start[2] - carry_z, 0.0) / spacing)))
    descent = [np.array([*start[:2], start[2] + (carry_z - start[2]) * k / down]) for k in range(1, down + 1)]
    table_path = carry_waypoints(start, place_xy, table_z, spacing)[1:]
    carry = [*descent, *(point + np.array([0.0, 0.0, params.carry_height_m]) for point in table_path)]
    return PickPlacePlan(
        grasp_surface_point=start.copy(),
        pre_grasp=hand.tcp,
        grasp=hand.tcp,
        carry_waypoints=tuple(RigidTransform(orientation, point) for point in carry),
        place=RigidTransform(orientation, np.array([*place_xy, table_z + held_height_m + params.release_gap_m])),
        speed_scaling=params.speed_scaling,
        grasp_width_m=float(hand.finger_width_m),  # what the fingers span now
        held_height_m=float(held_height_m),
    )


def plan_reset(
    view: RgbdView,
    registry: ObjectRegistry,
    rng: np.random.Generator,
    settings: ResetSettings,
    hand: Hand | None = None,
) -> list[ResetMove]:
    """The moves that put the scene back (module docstring): first whatever the hand still holds, then
    the tray's objects, then the table's strays. ResetImpossible when an object is unknown, too wide to
    grasp, or has no free spot, or the hand holds something while every registered object is seen."""
    scene, named = _look(view, registry, settings)
    unknown = [blob for blob, obj in named if obj is None]
    if unknown:
        where = ", ".join(f"({b.centroid[0]:.2f}, {b.centroid[1]:.2f})" for b in unknown)
        raise ResetImpossible(f"objects at {where} m match no registered object")
    in_tray = {id(blob) for blob in scene.in_tray}
    to_move = [
        (blob, obj, "in the tray" if id(blob) in in_tray else "outside the spawn area")
        for blob, obj in named
        if id(blob) in in_tray or not settings.in_spawn_area(blob.centroid[:2])
    ]
    # Every object where it stands now is in the way, even one that will move (it may still be there).
    occupied = [(blob.centroid[:2], _radius(blob)) for blob in scene.on_table]
    moves = []
    if hand is not None and settings.holds_something(hand.finger_width_m):
        moves.append(_put_down(hand, named, registry, occupied, scene.tray, rng, settings))
    for blob, obj, reason in to_move:
        grasp = blob.grasp_surface()
        place = free_spot(_radius(blob), occupied, scene.tray, rng, settings)
        if place is None:
            raise ResetImpossible(
                f"no free spot for {obj.name} in the spawn area after {settings.attempts} tries "
                f"({len(occupied)} footprints in the way, {settings.clearance_m * 100:.1f} cm apart)"
            )
        waypoints = carry_waypoints(grasp.point, place, registry.table_z, settings.waypoint_spacing_m)
        plan = plan_pick_and_place(grasp, waypoints, settings.planning)
        try:
            check_grasp_width(plan, settings.limits, settings.gripper_opening_m)
        except PlanRejected as exc:
            raise ResetImpossible(f"cannot grasp {obj.name} ({reason}): {exc.reason}") from None
        occupied.append((place, _radius(blob)))
        moves.append(ResetMove(obj.name, grasp, waypoints, place, reason, plan))
    return moves


def _put_down(
    hand: Hand,
    named: list[tuple[Blob, RegisteredObject | None]],
    registry: ObjectRegistry,
    occupied: list[tuple[np.ndarray, float]],
    tray: TrayPose,
    rng: np.random.Generator,
    settings: ResetSettings,
) -> ResetMove:
    """The move that sets down what the hand holds: a registered object the camera sees nowhere (of
    several, the tallest and widest is assumed, the others then show up on the next look)."""
    seen = {obj.name for _, obj in named if obj is not None}
    unseen = [obj for obj in registry.objects if obj.name not in seen]
    width = f"{hand.finger_width_m * 1000:.0f} mm apart"
    if not unseen:
        raise ResetImpossible(f"the gripper holds something ({width}) and every registered object is seen")
    held = max(unseen, key=lambda obj: (obj.height_m, np.hypot(obj.length_m, obj.width_m)))
    radius = float(np.hypot(held.length_m, held.width_m) / 2)
    place = free_spot(radius, occupied, tray, rng, settings)
    if place is None:
        raise ResetImpossible(f"no free spot to set down what the gripper holds ({width})")
    occupied.append((place, radius))
    name = " or ".join(obj.name for obj in unseen)
    plan = put_down_plan(hand, held.height_m, place, settings)
    surface = np.vstack([plan.grasp.translation, [[*place, settings.limits.table_z]]])
    return ResetMove(name, None, surface, place, "in the hand", plan)


def check_layout(view: RgbdView, registry: ObjectRegistry, settings: ResetSettings) -> LayoutCheck:
    """Whether the scene is ready for a trial: every registered object seen once, on the table inside the
    spawn area, nothing in the tray; the positions of the objects recognised on the table."""
    try:
        scene, named = _look(view, registry, settings)
    except ResetImpossible as exc:
        return LayoutCheck(False, str(exc), {})
    problems = [f"{len(scene.in_tray)} object(s) in the tray"] if scene.in_tray else []
    in_tray = {id(blob) for blob in scene.in_tray}
    positions: dict[str, tuple[float, float, float]] = {}
    for blob, obj in named:
        where = f"({blob.centroid[0]:.2f}, {blob.centroid[1]:.2f})"
        if obj is None:
            problems.append(f"an unknown object at {where} m")
        elif id(blob) in in_tray:
            continue
        elif obj.name in positions:
            problems.append(f"{obj.name} seen twice")
        else:
            positions[obj.name] = (float(blob.centroid[0]), float(blob.centroid[1]), blob.yaw_rad)
            if not settings.in_spawn_area(blob.centroid[:2]):
                problems.append(f"{obj.name} at {where} m is outside the spawn area")
    missing = [obj.name for obj in registry.objects if obj.name not in positions]
    if missing:
        problems.append(f"not on the table: {', '.join(missing)}")
    return LayoutCheck(not problems, "; ".join(problems) or "every object in the spawn area, the tray empty", positions)
