"""Every topic, service and action name of the graph, in one place (docs/ARCHITECTURE.md lists them).

Names are relative, so a launch file's namespace or remappings apply to all of them.
"""

# Camera (perception publishes them as realsense2_camera does; the planning node takes frame sets).
COLOR = "camera/color/image_raw"
DEPTH = "camera/aligned_depth_to_color/image_raw"
CAMERA_INFO = "camera/color/camera_info"
# A replayed frame's recorded stamp (sensor_msgs/TimeReference: header.stamp = the frame's playback stamp).
RECORDED_STAMP = "camera/recorded_stamp"
PERCEPTION_STATUS = "perception/status"

# Simulator.
SCENE = "workcell/scene"
RESET = "workcell/reset"
SELF_RESET = "vla_r1/self_reset"  # the planning node: the arm puts the scene back (camera and arm only)
JOINT_STATES = "joint_states"

# Inference.
PREDICT = "vla_r1/predict"
PREDICTION = "vla_r1/prediction"
ANNOTATED_IMAGE = "vla_r1/annotated_image"
INFERENCE_STATUS = "vla_r1/status"

# Planning and trials.
INSTRUCTION = "vla_r1/instruction"
EXECUTE_INSTRUCTION = "vla_r1/execute_instruction"
STOP = "vla_r1/stop"
PLAN = "vla_r1/plan"
PLAN_MARKERS = "vla_r1/plan_markers"
# Whether the planning node takes goals and whether finished trials wait to be logged (JSON, latched).
PLANNING_STATUS = "planning/status"

# Episodes.
LOG_EPISODE = "vla_r1/log_episode"
EPISODE_LOGGED = "vla_r1/episode_logged"

# Recording (record:=true): the package's recorder says what it records, and when it stopped (JSON, latched).
RECORDER_STATUS = "recorder/status"
