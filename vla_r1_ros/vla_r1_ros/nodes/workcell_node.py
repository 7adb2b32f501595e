"""`workcell` node: the simulated workcell's ROS face. Serves `workcell/reset` (new seeded layout, arm
home) and publishes `joint_states` (arm + finger joints). Thin: it only translates messages into
calls on the process-wide Workcell (camera frames and the scene come from the perception node)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from vla_r1_interfaces.srv import ResetScene

from vla_r1_ros import topics
from vla_r1_ros.core.config import PackageConfig
from vla_r1_ros.nodes.context import ProcessContext
from vla_r1_ros.nodes.conversions import ns_to_stamp
from vla_r1_ros.nodes.parameters import declare_parameters
from vla_r1_ros.nodes.scene_msgs import scene_to_msg
from vla_r1_ros.nodes.spin import spin_nodes


def extra_parameters(config: PackageConfig) -> dict[str, Any]:
    """The parameters whose defaults config/camera.yaml gives (the rest are in config/nodes.yaml): the frame
    scenes are expressed in."""
    return {"base_frame": str(config.camera["frames"]["base"])}


class WorkcellNode(Node):
    def __init__(self, context: ProcessContext, **node_kwargs: Any) -> None:
        super().__init__("workcell", **node_kwargs)
        params = declare_parameters(self, context.config, "workcell", extra=extra_parameters(context.config))
        self.workcell = context.workcell()
        self.workcell.reset(int(params["seed"]))  # the first layout; `workcell/reset` lays out the next ones
        self._base_frame = str(params["base_frame"])
        self._names = [*self.workcell.arm_joint_names, *self.workcell.finger_joint_names]
        self._joint_pub = self.create_publisher(JointState, topics.JOINT_STATES, 10)
        # Separate groups: a reset (0.3 s) must not hold up joint states on a multi-threaded executor.
        self.create_service(ResetScene, topics.RESET, self._on_reset, callback_group=MutuallyExclusiveCallbackGroup())
        rate = float(params["joint_state_rate_hz"])
        self.create_timer(1.0 / rate, self._publish_joints, callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(f"workcell ready (renderer: {self.workcell.renderer}), joint_states at {rate} Hz")

    def _on_reset(self, request: ResetScene.Request, response: ResetScene.Response) -> ResetScene.Response:
        try:
            poses = json.loads(request.layout) if request.layout else None
            scene = self.workcell.reset(int(request.seed), int(request.num_objects) or None, poses)
        except (ValueError, RuntimeError) as exc:  # json.JSONDecodeError is a ValueError
            response.success, response.message = False, str(exc)
            return response
        stamp = self.get_clock().now().to_msg()
        response.success = True
        response.message = f"seed {scene.seed}: {', '.join(o.name for o in scene.objects)}"
        response.scene = scene_to_msg(scene, stamp, self._base_frame)
        return response

    def _publish_joints(self) -> None:
        with self.workcell.lock:
            arm, fingers = self.workcell.joint_positions(), self.workcell.finger_positions()
        msg = JointState(name=list(self._names), position=[float(v) for v in (*arm, *fingers)])
        msg.header.stamp = ns_to_stamp(self.get_clock().now().nanoseconds)
        self._joint_pub.publish(msg)


def main(args: list[str] | None = None) -> None:
    sys.exit(spin_nodes(lambda context: [WorkcellNode(context)], args))


if __name__ == "__main__":
    main()
