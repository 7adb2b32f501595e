"""`vla-r1 label` end to end in a real headless Chromium (Debian's, driven by Playwright): the server runs as
its own process, the test drags a reference box and clicks a path with the mouse, judges the trial with
the keyboard, saves, and checks labels.json, the re-scored rewards, the export and a screenshot."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_episodes import BOX, PATH, frame, trial

from vla_r1_ros.core import dataset, episodes, labels, prompts, rewards
from vla_r1_ros.core.episodes import EpisodeStore, References, ReferenceSource
from vla_r1_ros.testing.browser import CHROMIUM_ARGS, chromium_path

ODD_INSTRUCTION = 'put the $HOME <b>bold</b> "cube" ${x} 🙂 ünïcödé \\u0000 in the tray'
# Where the test draws (normalized): a box with corners (0.2, 0.25)-(0.4, 0.45) and a 4-point path.
DRAWN_BOX = (0.3, 0.35, 0.2, 0.2)
DRAWN_PATH = ((0.3, 0.35), (0.4, 0.3), (0.55, 0.3), (0.7, 0.4))
EDITED_BOX = (0.5, 0.6, 0.1, 0.1)
GREEN = (0, 255, 0)


@pytest.fixture
def log(tmp_path):
    """Real-robot episodes: a success whose logged references are its own prediction, a failure already
    judged and labelled, and one with hostile text."""
    root = tmp_path / "log"
    with EpisodeStore(root) as store:
        store.write(trial(), frame(), References(ReferenceSource.SUCCESSFUL_TRIAL, BOX, PATH))
        store.write(trial(success=False), frame(), References(ReferenceSource.NONE, note="trial failed"))
        store.write(
            trial(instruction=ODD_INSTRUCTION), frame(), References(ReferenceSource.SUCCESSFUL_TRIAL, BOX, PATH)
        )
    labels.save_labels(root, "000002", {"success": False, "failure_stage": "grasp", "box": [0.6, 0.6, 0.1, 0.1]})
    return root


@pytest.fixture
def server(log):
    """`vla-r1 label LOG --port 0` as a separate process; yields its address."""
    process = subprocess.Popen(
        [sys.executable, "-m", "vla_r1_ros.cli.main", "label", str(log), "--port", "0", "--labeller", "tester ✓"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert match, f"no address in {line!r}; stderr: {process.stderr.read() if process.poll() is not None else ''}"
        yield match.group(1)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def page():
    chromium = chromium_path()
    if chromium is None:
        pytest.skip("chromium is not installed (make test installs it: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:  # never `playwright install`: Debian's chromium is the browser
        browser = playwright.chromium.launch(executable_path=chromium, args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page
            assert errors == [], f"JavaScript errors: {errors}"
        finally:
            browser.close()


def canvas_point(page, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of a normalized image point."""
    rect = page.locator("#frame").bounding_box()
    return rect["x"] + x * rect["width"], rect["y"] + y * rect["height"]


def drag_box(page, box: tuple[float, float, float, float]) -> None:
    cx, cy, w, h = box
    page.mouse.move(*canvas_point(page, cx - w / 2, cy - h / 2))
    page.mouse.down()
    page.mouse.move(*canvas_point(page, cx + w / 2, cy + h / 2), steps=8)
    page.mouse.up()


def saved(page) -> None:
    page.wait_for_selector("#status.saved", timeout=10_000)  # no wait_for_function: the page's CSP forbids eval


def shown(page, episode: str) -> None:
    page.wait_for_selector(f"body[data-episode='{episode}']", timeout=10_000)


def exported_box(log: Path, out: Path, episode: str) -> tuple[tuple[float, ...], dict]:
    summary = dataset.export_dataset(log, out, overwrite=True)
    records = json.loads((out / dataset.SHAREGPT_FILE).read_text())
    for record in records:
        answer = record["conversations"][1]["value"]
        if record["image"] == f"{dataset.IMAGES_DIR}/{episode}.png" and '"width"' in answer:
            return tuple(json.loads(answer.split("<output>")[1].split("</output>")[0]).values()), summary.to_json()
    raise AssertionError(f"episode {episode} has no affordance record: {summary.to_json()}")


def test_label_page_draws_judges_saves_and_changes_rewards_and_export(log, server, page, tmp_path):
    # Before labelling, an unlabelled real-robot success is not exported: its references are its own answer.
    before = dataset.export_dataset(log, tmp_path / "before")
    assert before.episodes == 1 and before.by_reference_source == {"operator": 1}
    assert before.skipped["successful_trial references (not simulator or operator)"] == 2

    page.goto(server)
    shown(page, "000001")
    assert page.inner_text("#position") == "1 / 3 (2 of 3 unlabelled)"

    page.keyboard.press("b")
    drag_box(page, DRAWN_BOX)
    page.keyboard.press("w")
    for point in DRAWN_PATH:
        page.mouse.click(*canvas_point(page, *point))
    page.mouse.click(*canvas_point(page, 0.9, 0.9))  # one too many ...
    page.keyboard.press("Backspace")  # ... undone
    assert page.inner_text("#reference-text").endswith("; path of 4 point(s)")
    page.keyboard.press("y")
    page.keyboard.press("f")
    page.select_option("#failure-stage", "grasp")
    page.fill("#note", "slipped: $5 💥 <b>not bold</b>")
    page.keyboard.press("Control+s")
    saved(page)

    stored = episodes.read_labels(log, "000001")
    tolerance = 1.5 / 640  # a pixel of the 640 × 480 frame, plus rounding of the mouse position
    assert stored["box"] == pytest.approx(DRAWN_BOX, abs=tolerance)
    assert np.asarray(stored["waypoints"]) == pytest.approx(np.asarray(DRAWN_PATH), abs=tolerance)
    assert stored["success"] is False and stored["failure_stage"] == "grasp"
    assert stored["note"] == "slipped: $5 💥 <b>not bold</b>" and stored["outcome_source"] == "operator"
    assert stored["labeller"] == "tester ✓"

    # The rewards are the model's answers re-scored against what was drawn, and the page shows them.
    document = episodes.load_episode(log, "000001")
    rescored = labels.labelled_rewards(document, stored)
    expected_region = rewards.score_completion(
        prompts.AFFORDANCE,
        document["prediction"]["raw_texts"][prompts.AFFORDANCE],
        prompts.format_answer("", stored["box"]),
    ).task_score
    assert rescored["region"] == pytest.approx(expected_region) and rescored["region"] < 0.9
    assert rescored["success"] is False
    shown_total = page.locator("#rewards tbody tr").nth(3).locator("td").nth(2).inner_text()
    assert shown_total == f"{rescored['total']:.3f}"

    # The drawn box is on screen: pure green pixels along its edges, on a non-blank frame.
    screenshot = tmp_path / "label_page.png"
    page.screenshot(path=str(screenshot))
    pixels = np.asarray(Image.open(screenshot).convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000
    green = np.all(pixels == GREEN, axis=2)
    x1, y1 = (round(v) for v in canvas_point(page, 0.2, 0.25))
    x2, y2 = (round(v) for v in canvas_point(page, 0.4, 0.45))
    top_edge = green[y1 - 2 : y1 + 3, x1 + 5 : x2 - 5].any(axis=0)
    left_edge = green[y1 + 5 : y2 - 5, x1 - 2 : x1 + 3].any(axis=1)
    assert top_edge.mean() > 0.95 and left_edge.mean() > 0.95
    assert not green[y1 + 10 : y2 - 10, x1 + 10 : x2 - 10].any()  # an outline, not a filled area

    # The export now has the episode, with the operator's box as its ground truth.
    box, summary = exported_box(log, tmp_path / "after", "000001")
    assert box == pytest.approx(stored["box"], abs=1e-6) and summary["by_reference_source"] == {"operator": 3}

    # Editing the label changes the rewards and the export (the focus is still in the note: use the mouse).
    page.check("input[name=tool][value=box]")
    drag_box(page, EDITED_BOX)
    page.click("#save")
    saved(page)
    edited = episodes.read_labels(log, "000001")
    assert edited["box"] == pytest.approx(EDITED_BOX, abs=tolerance) and edited["failure_stage"] == "grasp"
    edited_rewards = labels.labelled_rewards(document, edited)
    assert edited_rewards["region"] != pytest.approx(rescored["region"])
    assert exported_box(log, tmp_path / "edited", "000001")[0] == pytest.approx(edited["box"], abs=1e-6)

    # Filter unlabelled: 000002 is labelled, so the next unlabelled episode is 000003, whose hostile text
    # is shown as text.
    page.keyboard.press("u")
    page.keyboard.press("ArrowRight")
    shown(page, "000003")
    assert page.inner_text("#instruction") == ODD_INSTRUCTION
    assert page.locator("#instruction b").count() == 0

    # Leaving unsaved changes takes a second press; the discarded box is not written.
    drag_box(page, DRAWN_BOX)
    page.keyboard.press("u")
    page.keyboard.press("ArrowLeft")
    assert "unsaved" in page.inner_text("#status")
    assert page.get_attribute("body", "data-episode") == "000003"
    page.keyboard.press("ArrowLeft")
    shown(page, "000002")
    assert episodes.read_labels(log, "000003") is None
    assert page.locator("input[name=outcome][value=failure]").is_checked()


def _request(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_server_refuses_escapes_bad_labels_and_foreign_writes(log, server):
    json_headers = {"Content-Type": "application/json"}
    for name in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc", "000001%2F..%2F..", "000009", "abc"):
        status, answer = _request(f"{server}api/episodes/{name}")
        assert status == 404 and "error" in answer, (name, answer)
        status, _ = _request(f"{server}api/episodes/{name}/labels", "PUT", b"{}", json_headers)
        assert status == 404
    url = f"{server}api/episodes/000001/labels"
    for body, message in (
        (b'{"box": [0.5, NaN, 0.1, 0.1]}', "finite"),
        (b'{"box": [0.5, 0.5, 0.0, 0.1]}', "> 0"),
        (b'{"waypoints": [[0.1, 0.2]]}', "at least 2"),
        (b'{"success": false, "failure_stage": "bored"}', "failure_stage"),
        (b'{"success": "yes"}', "true or false"),
        (b"[1, 2]", "JSON object"),
        (b"{not json", "not JSON"),
        (b'{"note": "\\ud800"}', "not valid Unicode"),
        (b'{"note": "' + b"[" * 100_000 + b'"}', "note"),  # deep-looking but a plain string
        (b"[" * 100_000, "not JSON"),
    ):
        status, answer = _request(url, "PUT", body, json_headers)
        assert status == 400 and message in answer["error"], (body, answer)
    assert episodes.read_labels(log, "000001") is None  # nothing bad was written
    status, _ = _request(url, "PUT", b'{"success": true}', {"Content-Type": "text/plain"})
    assert status == 415
    status, _ = _request(url, "PUT", b'{"success": true}', json_headers | {"Origin": "http://evil.example"})
    assert status == 403
    status, _ = _request(f"{server}api/episodes", headers={"Host": "evil.example"})
    assert status == 403
    assert episodes.read_labels(log, "000001") is None
    status, answer = _request(url, "PUT", '{"success": true, "note": "ok ✓ $x"}'.encode(), json_headers)
    assert status == 200 and answer["outcome"] == {
        "success": True,
        "failure_stage": "",
        "message": "ok ✓ $x",
        "outcome_source": "operator",
        "judged": True,
    }
