"""Pick-and-place plans from lifted predictions, and the safety checks that gate every motion.

Plain Python, no ROS. Poses are of the tool centre point (TCP: between the fingertips, the Panda's
`panda_grasptarget` / MoveIt's hand TCP) in the robot base frame, z up. A top-down grasp points the
TCP's z axis down; the fingers close along the TCP's y axis.

Nothing moves on an unvalidated plan, by construction: executors accept only a `ValidatedPlan`, and
only `validate_plan` can make one (its constructor demands a token private to this module). The
validator samples the whole Cartesian motion — including the approach from where the arm is now —
solves IK at every sample and checks each solution for collisions with the workcell (the executor's
check, core/collision.py), so the joint path an executor follows is the one that was checked.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from vla_r1_ros.core.collision import HELD_OBJECT, Box, CollisionCheck
from vla_r1_ros.core.geometry import RigidTransform
from vla_r1_ros.core.lifting import GraspSurface

# The checks a plan can fail, as reported in ManipulationPlan.failed_check.
CHECKS = ("workspace", "clearance", "step", "speed", "grasp_width", "reachability", "joint_limits", "collision")

# The motion segments during which the gripper holds the object (between grasp and release).
CARRYING_SEGMENTS = ("lift", "carry", "lower")

IkSolver = Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray | None]


class PlanRejected(Exception):
    """A plan cannot be made or fails a safety check; `check` names which (see CHECKS, or "lift")."""

    def __init__(self, check: str, reason: str, grasps_tried: Sequence[str] = ()):
        """`grasps_tried`: each grasp candidate refused before this, "<name>: <check>: <reason>"."""
        super().__init__(f"{check}: {reason}")
        self.check = check
        self.reason = reason
        self.grasps_tried = tuple(grasps_tried)


@dataclass(frozen=True)
class PlanningParams:
    pre_grasp_height_m: float = 0.10  # approach starts this far above the grasp, straight down
    grasp_depth_m: float = 0.02  # TCP below the object's top (at most half the object's height)
    carry_height_m: float = 0.15  # carried waypoints: this far above the surface under them
    release_gap_m: float = 0.015  # the held object's bottom this far above the surface at release
    speed_scaling: float = 0.5  # fraction of the arm's maximum joint speed
    # The grasps tried, in order, as turns of the gripper about the vertical from the one across the
    # object's long axis; the first that is reachable and collision-free is executed. Then the same turns
    # with the hand shifted along its fingers' length by each of grasp_shifts_m (off the object's centre,
    # away from a wall beside it), where the fingers still hold `finger_pad_m` of the object.
    grasp_yaw_offsets_deg: tuple[float, ...] = (0.0,)
    grasp_shifts_m: tuple[float, ...] = ()
    finger_pad_m: float = 0.02  # a Franka Hand fingertip pad's width along the fingers' length

    @classmethod
    def from_config(cls, workspace_config: dict[str, Any]) -> PlanningParams:
        values = dict(workspace_config.get("planning", {}))
        for name in ("grasp_yaw_offsets_deg", "grasp_shifts_m"):
            if name in values:
                values[name] = tuple(float(v) for v in values[name])
        return cls(**values)


@dataclass(frozen=True)
class SafetyLimits:
    workspace_min: tuple[float, float, float] = (0.15, -0.6, 0.0)  # TCP must stay in this box (base frame)
    workspace_max: tuple[float, float, float] = (0.85, 0.6, 0.75)
    table_z: float = 0.0  # table top in the base frame
    min_table_clearance_m: float = 0.01  # TCP never lower than this above the table
    max_waypoint_step_m: float = 0.30  # between consecutive plan poses (a wild model waypoint)
    max_joint_step_rad: float = 0.5  # between consecutive IK samples (an IK branch flip)
    joint_limit_margin_rad: float = 0.02
    max_speed_scaling: float = 0.8
    min_finger_clearance_m: float = 0.005  # each open finger clears the object's side by this much
    sample_spacing_m: float = 0.02  # Cartesian sampling of the motion for IK and checks
    start_tolerance_rad: float = 0.02  # the arm may have drifted this far since validation (else re-plan)
    tracking_tolerance_rad: float = 0.05  # after a segment, the arm is this close to its last sample

    @classmethod
    def from_config(cls, workspace_config: dict[str, Any]) -> SafetyLimits:
        values = dict(workspace_config.get("safety", {}))
        for key in ("workspace_min", "workspace_max"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)


@dataclass(frozen=True)
class JointLimits:
    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray


def top_down_orientation(yaw: float) -> Rotation:
    """TCP z pointing down, x along `yaw` in the base xy plane (fingers close across the yaw axis)."""
    return Rotation.from_euler("z", yaw) * Rotation.from_euler("x", np.pi)


def grasp_yaw(axis: np.ndarray) -> float:
    """Yaw that closes the fingers across a (base-frame) object axis, wrapped to (-pi/2, pi/2]: a
    parallel gripper is symmetric, so the smaller wrist turn is the better one."""
    yaw = float(np.arctan2(axis[1], axis[0]))
    return float(yaw - np.pi * np.ceil((yaw - np.pi / 2) / np.pi))


@dataclass(frozen=True)
class PickPlacePlan:
    """A pick-and-place in the base frame. Fields mirror vla_r1_interfaces/ManipulationPlan."""

    grasp_surface_point: np.ndarray  # the object's top point the grasp is built on
    pre_grasp: RigidTransform
    grasp: RigidTransform
    carry_waypoints: tuple[RigidTransform, ...]  # the path after the pick point, raised to carry height
    place: RigidTransform  # release pose
    speed_scaling: float
    grasp_width_m: float  # what the fingers must span: the object's footprint across the grasp
    grasp_length_m: float = 0.0  # the footprint at right angles to that, along the fingers (0: unknown)
    grasp_shift_m: float = 0.0  # the TCP this far along its own x from the footprint's centre (`shifted`)
    held_height_m: float = 0.0  # the object already in the hand (a put-down): its height; 0: grasped top to table

    @property
    def lift(self) -> RigidTransform:
        """Straight up from the grasp to the first carry height (or the pre-grasp height if higher)."""
        z = max(self.pre_grasp.translation[2], self.carry_waypoints[0].translation[2])
        return RigidTransform(self.grasp.rotation, np.array([*self.grasp.translation[:2], z]))

    @property
    def holds_from_start(self) -> bool:
        """A put-down: the object is in the hand before the plan starts, so the hand is not opened first."""
        return self.held_height_m > 0.0

    @property
    def retreat(self) -> RigidTransform:
        return self.carry_waypoints[-1]

    def turned_half(self) -> PickPlacePlan:
        """The same plan with the gripper turned 180 degrees about the vertical: a parallel gripper grasps
        the same way, but the wrist joint ends up elsewhere (it may be the one that is within limits)."""
        return self.turned(np.pi)

    def turned(self, yaw: float) -> PickPlacePlan:
        """The same pick and place with the gripper turned `yaw` about the vertical at every pose: the
        fingers close across another direction of the footprint, so they span its extent along that
        direction (w |cos| + l |sin| of a rectangle w across and l along), and come down elsewhere."""
        turn_by = Rotation.from_euler("z", yaw)
        cos, sin = abs(np.cos(yaw)), abs(np.sin(yaw))

        def turn(pose: RigidTransform) -> RigidTransform:
            return RigidTransform(turn_by * pose.rotation, pose.translation)

        return replace(
            self,
            pre_grasp=turn(self.pre_grasp),
            grasp=turn(self.grasp),
            carry_waypoints=tuple(turn(p) for p in self.carry_waypoints),
            place=turn(self.place),
            grasp_width_m=float(cos * self.grasp_width_m + sin * self.grasp_length_m),
            grasp_length_m=float(sin * self.grasp_width_m + cos * self.grasp_length_m),
        )

    def shifted(self, shift_m: float) -> PickPlacePlan:
        """The same pick and place with the hand `shift_m` along its own x (the fingers' length
        direction) at every pose: the fingers hold the object off its centre, and the object travels and
        lands exactly as before, `-shift_m` from the TCP."""
        step = self.grasp.rotation.apply([shift_m, 0.0, 0.0])

        def shift(pose: RigidTransform) -> RigidTransform:
            return RigidTransform(pose.rotation, pose.translation + step)

        return replace(
            self,
            pre_grasp=shift(self.pre_grasp),
            grasp=shift(self.grasp),
            carry_waypoints=tuple(shift(p) for p in self.carry_waypoints),
            place=shift(self.place),
            grasp_shift_m=self.grasp_shift_m + float(shift_m),
        )

    def key_poses(self) -> list[tuple[str, RigidTransform]]:
        """The plan's poses in execution order, named."""
        carry = [(f"carry_{i}", pose) for i, pose in enumerate(self.carry_waypoints)]
        return [
            ("pre_grasp", self.pre_grasp),
            ("grasp", self.grasp),
            ("lift", self.lift),
            *carry,
            ("place", self.place),
            ("retreat", self.retreat),
        ]


def held_object_box(plan: PickPlacePlan, table_z: float) -> Box:
    """The object between the fingers, in the TCP frame (z down the fingers): as wide as the grasp on
    both horizontal axes, from the grasped top down to the table it stood on (an object already in the
    hand: `held_height_m` down from its top)."""
    top = float(plan.grasp_surface_point[2])
    grasp_z = float(plan.grasp.translation[2])
    height = plan.held_height_m or max(top - table_z, 1e-3)
    # TCP z points down: the top is (top - grasp_z) above the TCP, the bottom (height - that) below.
    centre_z = (height - 2 * (top - grasp_z)) / 2
    width = float(plan.grasp_width_m)
    centre = np.array([-plan.grasp_shift_m, 0.0, centre_z])  # a shifted hand holds the object off its centre
    return Box(HELD_OBJECT, np.array([width, width, height]), RigidTransform(Rotation.identity(), centre))


def pick_waypoint_index(surface_waypoints: np.ndarray, pick_point: np.ndarray) -> int:
    """Index of the lifted waypoint nearest (in 3-D) to the pick point.

    The model's path may follow either convention: ShareRobot's end-effector trajectory (from the
    gripper, to the object, on to where it goes) or a carry path (from the object to the place). In
    both the object is picked where the path passes it, so what comes after that waypoint is the
    transport. Distances are 3-D because a gripper hovering above the object projects onto it in the
    image, but its lifted point lies on the gripper, well above the object's top.
    """
    waypoints = np.asarray(surface_waypoints, dtype=float).reshape(-1, 3)
    return int(np.argmin(np.linalg.norm(waypoints - np.asarray(pick_point, dtype=float), axis=1)))


def transport_waypoints(surface_waypoints: np.ndarray, pick_point: np.ndarray) -> np.ndarray:
    """The part of the path after the waypoint nearest the pick point (see `pick_waypoint_index`); its
    last point is where the object is placed. Raises PlanRejected("lift") when nothing follows the pick."""
    waypoints = np.asarray(surface_waypoints, dtype=float).reshape(-1, 3)
    if len(waypoints) == 0:
        raise PlanRejected("lift", "no trajectory waypoints: nowhere to place the object")
    pick = pick_waypoint_index(waypoints, pick_point)
    if pick == len(waypoints) - 1:
        raise PlanRejected(
            "lift",
            f"the trajectory ends at the pick point (its last waypoint, {pick + 1} of {len(waypoints)}, is the one "
            "nearest the object): nowhere to place the object",
        )
    return waypoints[pick + 1 :]


def plan_pick_and_place(grasp: GraspSurface, surface_waypoints: np.ndarray, params: PlanningParams) -> PickPlacePlan:
    """Grasp + surface waypoints, both in the base frame -> plan.

    Grasp: at the object's top centre, `grasp_depth_m` down (at most half its height), top-down, yaw
    across the object's long axis. Transport: the waypoints after the one nearest the grasp point
    (`transport_waypoints`: a path that starts at the gripper and one that starts at the object give the
    same plan), each `carry_height_m` above the surface it lies on. Place: below the path's last point,
    so that the held object's bottom ends `release_gap_m` above the surface there.
    """
    transport = transport_waypoints(surface_waypoints, grasp.point)
    orientation = top_down_orientation(grasp_yaw(grasp.axis))
    depth = min(params.grasp_depth_m, grasp.height_m / 2.0)
    grasp_position = grasp.point - np.array([0.0, 0.0, depth])
    pre_grasp_position = grasp_position + np.array([0.0, 0.0, params.pre_grasp_height_m])
    carry = tuple(
        RigidTransform(orientation, point + np.array([0.0, 0.0, params.carry_height_m])) for point in transport
    )
    # The held object hangs (height - depth) below the TCP.
    place_z = transport[-1, 2] + (grasp.height_m - depth) + params.release_gap_m
    return PickPlacePlan(
        grasp_surface_point=np.asarray(grasp.point, dtype=float),
        pre_grasp=RigidTransform(orientation, pre_grasp_position),
        grasp=RigidTransform(orientation, grasp_position),
        carry_waypoints=carry,
        place=RigidTransform(orientation, np.array([*transport[-1, :2], place_z])),
        speed_scaling=params.speed_scaling,
        grasp_width_m=float(grasp.width_m),
        grasp_length_m=float(grasp.length_m),
    )


def grasp_candidates(plan: PickPlacePlan, params: PlanningParams) -> list[tuple[str, PickPlacePlan]]:
    """The grasps to try, named, in order: `plan` turned by each of `params.grasp_yaw_offsets_deg` about
    the vertical through the grasp (as MoveIt Task Constructor's GenerateGraspPose samples grasps around
    an object's axis), then each turn shifted by each of `grasp_shifts_m` along the fingers' length where
    the fingers still hold `finger_pad_m` of the object (its footprint along them known)."""
    turns = [
        (f"yaw {offset:+.0f} deg", plan.turned(np.radians(offset)) if offset else plan)
        for offset in params.grasp_yaw_offsets_deg
    ]
    shifted = [
        (f"{name}, {shift * 1000:+.0f} mm along", turn.shifted(shift))
        for shift in params.grasp_shifts_m
        for name, turn in turns
        if shift and turn.grasp_length_m / 2 - abs(shift) >= params.finger_pad_m / 2
    ]
    return turns + shifted


# Checks another grasp can pass: where the arm must reach, how its joints end up, what the hand touches,
# what the fingers span. The others (speed, workspace, clearance of the place) are the same for every grasp.
GRASP_DEPENDENT_CHECKS = frozenset({"reachability", "joint_limits", "step", "collision", "grasp_width"})


def validate_candidates(
    candidates: Sequence[tuple[str, PickPlacePlan]], validate: Callable[[PickPlacePlan, tuple[str, ...]], ValidatedPlan]
) -> ValidatedPlan:
    """The first candidate `validate(plan, grasps_tried)` accepts; the ValidatedPlan names every grasp
    tried before it and why it was refused. Raises PlanRejected (the first candidate's check, every
    candidate's reason) when none passes, or at once for a check no other grasp can pass."""
    tried: list[str] = []
    first: PlanRejected | None = None
    for name, plan in candidates:
        try:
            return validate(plan, (*tried, f"{name}: ok"))
        except PlanRejected as exc:
            tried.append(f"{name}: {exc.check}: {exc.reason}")
            if exc.check not in GRASP_DEPENDENT_CHECKS:
                raise PlanRejected(exc.check, exc.reason, tried) from None
            first = first or exc
    if first is None:
        raise ValueError("validate_candidates needs at least one candidate")
    raise PlanRejected(first.check, f"{first.reason} (none of {len(tried)} grasps passed)", tried)


# --- validated plans ----------------------------------------------------------------------------

# The ValidatedPlans the validator issued, by identity: a copy (dataclasses.replace, copy.copy) or an
# object built by hand is not among them, so it never passes `is_issued`.
_ISSUED: weakref.WeakValueDictionary[int, ValidatedPlan] = weakref.WeakValueDictionary()


@dataclass(frozen=True)
class MotionSegment:
    name: str  # approach | descend | lift | carry | lower | retreat
    targets: tuple[RigidTransform, ...]  # the plan's poses this segment goes through (goals for MoveIt)
    poses: tuple[RigidTransform, ...]  # Cartesian samples of the TCP along the way
    joints: np.ndarray  # (len(poses), n_joints): IK of each sample, checked


@dataclass(frozen=True)
class GripperAction:
    name: str  # grasp | release
    close: bool


@dataclass(frozen=True)
class ValidatedPlan:
    """A plan that passed every safety check, with the joint path that was checked. Only
    `validate_plan` constructs one; executors refuse anything else."""

    plan: PickPlacePlan
    joint_names: tuple[str, ...]
    start_joints: np.ndarray
    steps: tuple[MotionSegment | GripperAction, ...]
    limits: SafetyLimits  # what it was checked against; executors take their tolerances from here
    grasps_tried: tuple[str, ...] = ()  # the grasp candidates tried, in order, this one last ("<name>: ok")

    def is_issued(self) -> bool:
        """True only for the very object `validate_plan` returned."""
        return _ISSUED.get(id(self)) is self

    def start_drift(self, joints: np.ndarray) -> str:
        """Why the arm at `joints` may not start this plan ("" when it may): the checked path begins
        where the arm was at validation, and an arm that has moved since would follow another path."""
        drift = float(np.max(np.abs(np.asarray(joints, dtype=float) - self.start_joints)))
        if drift > self.limits.start_tolerance_rad:
            return f"the arm moved {drift:.3f} rad since validation (max {self.limits.start_tolerance_rad} rad)"
        return ""

    def tracking_error(self, segment: MotionSegment, joints: np.ndarray) -> str:
        """Why the arm at `joints` did not finish `segment` ("" when it did): short of the segment's last
        sample means something blocked or the controller gave up."""
        error = float(np.max(np.abs(np.asarray(joints, dtype=float) - segment.joints[-1])))
        if error > self.limits.tracking_tolerance_rad:
            return f"{segment.name}: the arm stopped {error:.3f} rad short of its target (blocked?)"
        return ""

    def retreat_after_grasp(self) -> np.ndarray:
        """Joint samples from the grasp back up to the pre-grasp pose: the checked descent, reversed (an
        empty grasp ends here, at a pose that was validated)."""
        approach, descend = (
            s for s in self.steps if isinstance(s, MotionSegment) and s.name in ("approach", "descend")
        )
        return np.vstack([descend.joints[-2::-1], approach.joints[-1:]])

    def joint_path(self) -> np.ndarray:
        """All motion samples in order, (M, n_joints)."""
        return np.vstack([s.joints for s in self.steps if isinstance(s, MotionSegment)])


def _interpolate(a: RigidTransform, b: RigidTransform, spacing_m: float, max_angle_step: float = 0.1):
    """Poses from a (exclusive) to b (inclusive): straight line, slerped orientation."""
    distance = float(np.linalg.norm(b.translation - a.translation))
    angle = float((a.rotation.inv() * b.rotation).magnitude())
    n = max(1, int(np.ceil(distance / spacing_m)), int(np.ceil(angle / max_angle_step)))
    slerp = Slerp([0.0, 1.0], Rotation.concatenate([a.rotation, b.rotation]))
    ts = np.linspace(0.0, 1.0, n + 1)[1:]
    rotations = slerp(ts)
    return [RigidTransform(rotations[i], a.translation + t * (b.translation - a.translation)) for i, t in enumerate(ts)]


def _sample(start: RigidTransform, targets: Sequence[RigidTransform], spacing_m: float) -> list[RigidTransform]:
    samples: list[RigidTransform] = []
    previous = start
    for target in targets:
        samples += _interpolate(previous, target, spacing_m)
        previous = target
    return samples


def _fmt(p: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in p) + "]"


def check_speed(plan: PickPlacePlan, limits: SafetyLimits) -> None:
    s = plan.speed_scaling
    if not (np.isfinite(s) and 0.0 < s <= limits.max_speed_scaling):
        raise PlanRejected("speed", f"speed scaling {s} is outside (0, {limits.max_speed_scaling}]")


def check_grasp_width(plan: PickPlacePlan, limits: SafetyLimits, gripper_opening_m: float) -> None:
    """The open gripper must straddle the object with room on both sides, or the descent lands a finger
    on top of it."""
    widest = gripper_opening_m - 2.0 * limits.min_finger_clearance_m
    if not (np.isfinite(plan.grasp_width_m) and 0.0 < plan.grasp_width_m <= widest):
        raise PlanRejected(
            "grasp_width",
            f"the object is {plan.grasp_width_m * 1000:.0f} mm across the grasp; the gripper opens "
            f"{gripper_opening_m * 1000:.0f} mm and needs {limits.min_finger_clearance_m * 1000:.0f} mm "
            f"beside each finger (at most {widest * 1000:.0f} mm)",
        )


def check_poses(named: Sequence[tuple[str, RigidTransform]], limits: SafetyLimits) -> None:
    """Workspace box and table clearance for every pose."""
    low, high = np.array(limits.workspace_min), np.array(limits.workspace_max)
    floor = limits.table_z + limits.min_table_clearance_m
    for name, pose in named:
        p = pose.translation
        if not np.all(np.isfinite(p)):
            raise PlanRejected("workspace", f"{name} position {p} is not finite")
        if np.any(p < low) or np.any(p > high):
            raise PlanRejected("workspace", f"{name} at {_fmt(p)} is outside the workspace {_fmt(low)}..{_fmt(high)}")
        if p[2] < floor:
            raise PlanRejected(
                "clearance",
                f"{name} at z = {p[2]:.3f} m is below the table clearance floor {floor:.3f} m "
                f"(table {limits.table_z:.3f} + {limits.min_table_clearance_m:.3f})",
            )


def check_steps(plan: PickPlacePlan, limits: SafetyLimits) -> None:
    named = plan.key_poses()
    for (name_a, a), (name_b, b) in itertools.pairwise(named):
        step = float(np.linalg.norm(b.translation - a.translation))
        if step > limits.max_waypoint_step_m:
            raise PlanRejected(
                "step", f"{name_a} -> {name_b} is a {step:.3f} m jump (max {limits.max_waypoint_step_m:.3f} m)"
            )


def validate_plan(
    plan: PickPlacePlan,
    limits: SafetyLimits,
    solve_ik: IkSolver,
    joint_limits: JointLimits,
    joint_names: Sequence[str],
    start_joints: np.ndarray,
    start_pose: RigidTransform,
    *,
    gripper_opening_m: float,
    collides: CollisionCheck | None = None,
    grasps_tried: Sequence[str] = (),
) -> ValidatedPlan:
    """Every check, cheapest first; raises PlanRejected naming the first that fails.

    `solve_ik(position, quat_xyzw, seed_joints)` returns joints or None (the executor's own IK, so the
    check matches the arm that will move); `start_joints`/`start_pose` are where the arm is now;
    `gripper_opening_m` is how wide its gripper opens; `collides(joints, carrying)` is the executor's
    collision check of one joint sample against the workcell (core/collision.py), run on every sample
    (None only where no collision model exists, e.g. the kinematic unit tests).
    """
    check_speed(plan, limits)
    check_grasp_width(plan, limits, gripper_opening_m)
    check_poses(plan.key_poses(), limits)
    check_steps(plan, limits)

    # Motion program: (segment name, Cartesian targets), gripper actions in between.
    program: list[tuple[str, list[RigidTransform]] | GripperAction] = [
        ("approach", [plan.pre_grasp]),
        ("descend", [plan.grasp]),
        GripperAction("grasp", close=True),
        ("lift", [plan.lift]),
        ("carry", list(plan.carry_waypoints)),
        ("lower", [plan.place]),
        GripperAction("release", close=False),
        ("retreat", [plan.retreat]),
    ]
    lower = joint_limits.lower + limits.joint_limit_margin_rad
    upper = joint_limits.upper - limits.joint_limit_margin_rad
    steps: list[MotionSegment | GripperAction] = []
    pose, joints = start_pose, np.asarray(start_joints, dtype=float)
    for item in program:
        if isinstance(item, GripperAction):
            steps.append(item)
            continue
        name, targets = item
        samples = _sample(pose, targets, limits.sample_spacing_m)
        # The approach starts wherever the arm is; its samples must be safe too.
        check_poses([(f"{name} sample {i}", s) for i, s in enumerate(samples)], limits)
        solutions = []
        for i, sample in enumerate(samples):
            solution = solve_ik(sample.translation, sample.quat_xyzw, joints)
            if solution is None:
                raise PlanRejected(
                    "reachability", f"no IK solution for {name} sample {i} at {_fmt(sample.translation)}"
                )
            solution = np.asarray(solution, dtype=float)
            bad = np.nonzero((solution < lower) | (solution > upper))[0]
            if bad.size:
                j = int(bad[0])
                raise PlanRejected(
                    "joint_limits",
                    f"{name} sample {i}: {joint_names[j]} = {solution[j]:.3f} rad is outside "
                    f"[{lower[j]:.3f}, {upper[j]:.3f}] (limits minus a {limits.joint_limit_margin_rad} rad margin)",
                )
            jump = float(np.max(np.abs(solution - joints)))
            if jump > limits.max_joint_step_rad:
                raise PlanRejected(
                    "step",
                    f"{name} sample {i}: a joint moves {jump:.2f} rad between neighbouring samples "
                    f"(max {limits.max_joint_step_rad}): the IK solution flips branch",
                )
            if collides is not None:
                hit = collides(solution, name in CARRYING_SEGMENTS)
                if hit is not None:
                    raise PlanRejected(
                        "collision", f"{name} sample {i} at {_fmt(sample.translation)}: {hit.describe()}"
                    )
            solutions.append(solution)
            joints = solution
        steps.append(MotionSegment(name, tuple(targets), tuple(samples), np.array(solutions)))
        pose = targets[-1]
    validated = ValidatedPlan(
        plan=plan,
        joint_names=tuple(joint_names),
        start_joints=np.asarray(start_joints, dtype=float),
        steps=tuple(steps),
        limits=limits,
        grasps_tried=tuple(grasps_tried),
    )
    _ISSUED[id(validated)] = validated
    return validated


def validate_either_way(plan: PickPlacePlan, *args: Any, **kwargs: Any) -> ValidatedPlan:
    """`validate_plan`, and when the arm cannot follow the plan (IK, joint limits, an IK flip), the same
    plan with the gripper turned half a turn. The first rejection is reported when both fail."""
    try:
        return validate_plan(plan, *args, **kwargs)
    except PlanRejected as first:
        if first.check not in ("reachability", "joint_limits", "step"):
            raise
        try:
            return validate_plan(plan.turned_half(), *args, **kwargs)
        except PlanRejected:
            raise first from None
