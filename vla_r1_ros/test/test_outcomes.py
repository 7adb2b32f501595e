"""The outcome taxonomy and the simulator's judge: success only for the instructed object in the tray."""

from __future__ import annotations

from vla_r1_ros.core.outcomes import (
    FAILURE_STAGES,
    OUTCOME_SOURCES,
    FailureStage,
    OutcomeSource,
    is_judged,
    judge_sim_placement,
)
from vla_r1_ros.core.scene import ObjectState


def thing(name: str, colour: str, shape: str) -> ObjectState:
    return ObjectState(name, colour, shape, (0.5, 0.0, 0.02), (0.0, 0.0, 0.0, 1.0), (0.04, 0.04, 0.04))


OBJECTS = (thing("red_cube", "red", "cube"), thing("blue_mug", "blue", "mug"), thing("red_ball", "red", "sphere"))


def test_the_instructed_object_in_the_tray_is_a_success():
    verdict = judge_sim_placement("put the red block in the tray", OBJECTS, ["red_cube"])
    assert verdict.success and verdict.failure_stage == "" and verdict.outcome_source == OutcomeSource.SIMULATOR
    assert verdict.target == "red_cube"
    also = judge_sim_placement("put the red block in the tray", OBJECTS, ["blue_mug", "red_cube"])
    assert also.success and "blue_mug" in also.message


def test_another_object_in_the_tray_is_wrong_object():
    verdict = judge_sim_placement("place the blue cup in the tray", OBJECTS, ["red_ball"])
    assert not verdict.success and verdict.failure_stage == FailureStage.WRONG_OBJECT
    assert verdict.target == "blue_mug" and "red_ball" in verdict.message


def test_an_empty_tray_is_a_place_failure():
    verdict = judge_sim_placement("move the blue mug into the tray", OBJECTS, [])
    assert not verdict.success and verdict.failure_stage == "place" and verdict.outcome_source == "simulator"


def test_an_ambiguous_instruction_is_not_judged():
    verdict = judge_sim_placement("put the red thing in the tray", OBJECTS, ["red_cube"])
    assert not verdict.success and verdict.outcome_source == OutcomeSource.NONE and verdict.target is None
    assert not is_judged(verdict.outcome_source, verdict.failure_stage)


def test_taxonomy_and_judged_trials():
    assert {"parse", "lift", "safety", "collision", "ik", "grasp", "wrong_object", "place", "execute"} < set(
        FAILURE_STAGES
    )
    assert {"timeout", "cancelled", "dry_run"} < set(FAILURE_STAGES)
    assert set(OUTCOME_SOURCES) == {"simulator", "gripper", "operator", "vision", "pipeline", "none"}
    assert is_judged("simulator", "place") and is_judged("operator") and is_judged("pipeline", "parse")
    assert is_judged("vision", "wrong_object") and is_judged("vision")
    assert not is_judged("none") and not is_judged("simulator", "dry_run")
