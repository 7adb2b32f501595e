"""When a run of trials pauses and what its operator is told (core.run_holds), from the statuses the
planning and perception nodes publish."""

from vla_r1_ros.core.run_holds import hold_reason, logging_alert

READY = {"refusal": "", "undelivered": 0, "log_error": ""}
STREAMING = {"source": "sim", "state": "streaming", "restarts": 0, "last_error": ""}


def test_a_graph_that_can_run_a_trial_holds_nothing_and_an_unknown_status_holds_nothing():
    assert hold_reason(READY, STREAMING) == ""
    assert hold_reason(None, None) == ""  # a RealSense driver publishes no perception/status
    assert logging_alert(READY) == "" and logging_alert(None) == ""


def test_a_refusing_planning_node_holds_the_run_with_its_reason():
    refusing = READY | {"refusal": "10 finished trials wait to be logged, the oldest for 40 s (disk full)"}
    assert hold_reason(refusing, STREAMING) == (
        "the planning node refuses trials: 10 finished trials wait to be logged, the oldest for 40 s (disk full)"
    )


def test_a_camera_that_is_not_streaming_holds_the_run_with_its_last_error():
    restarting = STREAMING | {"state": "restarting", "restarts": 3, "last_error": "RuntimeError: no frames"}
    assert hold_reason(READY, restarting) == "the camera (sim) is restarting after 3 restarts: RuntimeError: no frames"
    assert "finished" in hold_reason(READY, STREAMING | {"state": "finished"})  # a recording that ended


def test_records_that_cannot_be_logged_are_named_with_the_loggers_answer():
    waiting = {"refusal": "", "undelivered": 2, "log_error": "cannot write episode: [Errno 28] No space left on device"}
    alert = logging_alert(waiting)
    assert "No space left on device" in alert and "2 finished trials kept by the planning node" in alert
    assert "1 finished trial kept" in logging_alert(waiting | {"undelivered": 1})
    full = logging_alert(waiting | {"spool_error": "cannot spool t1 to /log/.planning_outbox: No space left"})
    assert "kept by the planning node in memory only (cannot spool t1 to /log/.planning_outbox" in full
    assert "not confirmed" in logging_alert(waiting | {"log_error": ""})  # waiting, no answer from the logger yet
