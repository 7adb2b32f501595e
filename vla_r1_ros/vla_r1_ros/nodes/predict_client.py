"""The planning node's client of the inference node: one Predict goal about the trial's own frame."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rclpy.action import ActionClient
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from vla_r1_interfaces.action import Predict

from vla_r1_ros import topics
from vla_r1_ros.core.outcomes import FailureStage
from vla_r1_ros.core.prediction import Prediction
from vla_r1_ros.core.trial_flow import StageFailure
from vla_r1_ros.nodes.episode_msgs import FrameSet
from vla_r1_ros.nodes.goals import send_goal_with_retry, wait_future
from vla_r1_ros.nodes.prediction_msgs import prediction_from_msg


class PredictClient:
    def __init__(self, node: Node, params: Mapping[str, Any], group: CallbackGroup) -> None:
        """`params`: the planning node's `predict_accept_timeout_s`, `predict_timeout_s`, `predict_retries`."""
        self.accept_s = float(params["predict_accept_timeout_s"])
        self.timeout_s = float(params["predict_timeout_s"])
        self.sends = 1 + int(params["predict_retries"])
        self.client = ActionClient(node, Predict, topics.PREDICT, callback_group=group)

    def predict(
        self,
        instruction: str,
        tasks: list[str],
        frames: FrameSet,
        on_text: Callable[[str], None],
        should_stop: Callable[[], bool],
    ) -> Prediction:
        """The model's answer about `frames.color` (the goal carries the image itself, and the simulator's
        scene when there is one); `on_text` gets the reasoning as it streams. A goal whose acceptance never
        arrives is sent again after `predict_accept_timeout_s`; the answer must come within
        `predict_timeout_s` of acceptance. StageFailure `timeout` or `cancelled` otherwise."""
        if not self.client.wait_for_server(timeout_sec=self.accept_s):
            raise StageFailure(
                FailureStage.TIMEOUT, f"no Predict action server on {topics.PREDICT} (is the inference node up?)"
            )
        goal = Predict.Goal(instruction=instruction, tasks=list(tasks), image=frames.color)
        if frames.scene is not None:
            goal.has_scene, goal.scene = True, frames.scene
        handle = send_goal_with_retry(
            self.client,
            goal,
            self.accept_s,
            self.sends,
            lambda feedback: on_text(feedback.feedback.text),
            should_stop,
            cancel_duplicates=True,
        )
        if handle is None:
            if should_stop():
                raise StageFailure(FailureStage.CANCELLED, "cancelled while waiting for the inference node")
            raise StageFailure(
                FailureStage.TIMEOUT,
                f"the inference node acknowledged none of {self.sends} Predict goals ({self.accept_s} s each)",
            )
        if not handle.accepted:
            raise StageFailure(FailureStage.TIMEOUT, "the inference node rejected the Predict goal (busy or not ready)")
        result_future = handle.get_result_async()
        if not wait_future(result_future, self.timeout_s, should_stop):
            handle.cancel_goal_async()
            if should_stop():
                raise StageFailure(FailureStage.CANCELLED, "cancelled while the model was predicting")
            raise StageFailure(FailureStage.TIMEOUT, f"the Predict action did not answer within {self.timeout_s} s")
        return prediction_from_msg(result_future.result().result.prediction)
