"""Scene (core.scene) <-> vla_r1_interfaces/SceneState. Exact round trip: boxes are whole pixels
(x1, y1, x2, y2 with x2, y2 exclusive) and map onto RegionOfInterest offset/size; no box = all zeros."""

from __future__ import annotations

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Vector3
from sensor_msgs.msg import RegionOfInterest
from vla_r1_interfaces.msg import SceneObject, SceneState

from vla_r1_ros.core.geometry import RigidTransform
from vla_r1_ros.core.scene import ObjectState, Scene
from vla_r1_ros.nodes.conversions import point_msg, point_to_numpy, pose_msg


def object_to_msg(obj: ObjectState) -> SceneObject:
    msg = SceneObject(name=obj.name, colour=obj.colour, shape=obj.shape, visible=bool(obj.visible))
    msg.pose = pose_msg(RigidTransform.from_pose(obj.position, obj.quat_xyzw))
    # Set the quaternion as given: going through scipy could flip its sign or renormalise it.
    q = msg.pose.orientation
    q.x, q.y, q.z, q.w = (float(v) for v in obj.quat_xyzw)
    msg.size = Vector3(x=float(obj.size[0]), y=float(obj.size[1]), z=float(obj.size[2]))
    if obj.bbox_px is not None:
        x1, y1, x2, y2 = (round(v) for v in obj.bbox_px)
        msg.bbox_px = RegionOfInterest(x_offset=x1, y_offset=y1, width=x2 - x1, height=y2 - y1)
    return msg


def object_from_msg(msg: SceneObject) -> ObjectState:
    roi = msg.bbox_px
    box = None
    if roi.width > 0 and roi.height > 0:
        box = (
            float(roi.x_offset),
            float(roi.y_offset),
            float(roi.x_offset + roi.width),
            float(roi.y_offset + roi.height),
        )
    p, q = msg.pose.position, msg.pose.orientation
    return ObjectState(
        name=msg.name,
        colour=msg.colour,
        shape=msg.shape,
        position=(p.x, p.y, p.z),
        quat_xyzw=(q.x, q.y, q.z, q.w),
        size=(msg.size.x, msg.size.y, msg.size.z),
        bbox_px=box,
        visible=bool(msg.visible),
    )


def scene_to_msg(scene: Scene, stamp: Time | None = None, frame_id: str = "panda_link0") -> SceneState:
    msg = SceneState(seed=int(scene.seed) & 0xFFFFFFFF)
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.objects = [object_to_msg(o) for o in scene.objects]
    msg.tray = object_to_msg(scene.tray)
    msg.ee_position = point_msg(scene.ee_position)
    return msg


def scene_from_msg(msg: SceneState) -> Scene:
    return Scene(
        seed=int(msg.seed),
        objects=tuple(object_from_msg(o) for o in msg.objects),
        tray=object_from_msg(msg.tray),
        ee_position=tuple(float(v) for v in point_to_numpy(msg.ee_position)),
    )
