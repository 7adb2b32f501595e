// The `vla-r1 label` page. Plain JavaScript, no build step, served by vla_r1_ros/cli/label.py.
// Logged text (instructions, reasoning, notes) is data: it only ever reaches the page through
// textContent or form values, never as HTML.
"use strict";

// Colours the test looks for in a screenshot: keep the reference box pure green.
const PREDICTED = "#ff8c00";
const REFERENCE_BOX = "#00ff00";
const REFERENCE_PATH = "#00c8ff";
const MIN_BOX_PX = 3; // a drag shorter than this is a click, not a box

const $ = (id) => document.getElementById(id);
const canvas = $("frame");
const context = canvas.getContext("2d");

const state = {
  episodes: [], // summaries from /api/episodes
  current: null, // episode name
  view: null, // /api/episodes/<episode>
  image: null,
  box: null, // [cx, cy, w, h] normalized
  path: [], // [[x, y], ...] normalized
  outcome: "unjudged",
  drag: null,
  dirty: false,
  leaveArmed: false, // one warned attempt to leave unsaved changes
};

function setStatus(text, kind) {
  const status = $("status");
  status.textContent = text;
  status.className = kind || "";
}

function markDirty() {
  state.dirty = true;
  state.leaveArmed = false;
  setStatus("unsaved changes", "unsaved");
}

async function api(path, options) {
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

const episodeUrl = (episode) => "/api/episodes/" + encodeURIComponent(episode);

// ---- drawing ---------------------------------------------------------------------------------------

function boxToPixels(box) {
  const [cx, cy, w, h] = box;
  return [(cx - w / 2) * canvas.width, (cy - h / 2) * canvas.height, w * canvas.width, h * canvas.height];
}

function drawPath(points, colour, dashed) {
  if (!points || points.length === 0) return;
  context.strokeStyle = colour;
  context.fillStyle = colour;
  context.lineWidth = 3;
  context.setLineDash(dashed ? [8, 6] : []);
  context.beginPath();
  points.forEach(([x, y], i) => {
    const px = x * canvas.width, py = y * canvas.height;
    if (i === 0) context.moveTo(px, py); else context.lineTo(px, py);
  });
  context.stroke();
  context.setLineDash([]);
  points.forEach(([x, y], i) => {
    context.beginPath();
    context.arc(x * canvas.width, y * canvas.height, 5, 0, 2 * Math.PI);
    context.fill();
    if (!dashed) {
      context.fillStyle = "#000";
      context.font = "bold 11px sans-serif";
      context.fillText(String(i + 1), x * canvas.width + 7, y * canvas.height - 7);
      context.fillStyle = colour;
    }
  });
}

function drawBox(box, colour, dashed) {
  if (!box) return;
  context.strokeStyle = colour;
  context.lineWidth = 3;
  context.setLineDash(dashed ? [8, 6] : []);
  context.strokeRect(...boxToPixels(box).map(Math.round));
  context.setLineDash([]);
}

function draw() {
  context.clearRect(0, 0, canvas.width, canvas.height);
  if (state.image) {
    context.drawImage(state.image, 0, 0, canvas.width, canvas.height);
  } else {
    context.fillStyle = "#888";
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.fillStyle = "#fff";
    context.font = "20px sans-serif";
    context.fillText("no colour frame logged", 20, 40);
  }
  const prediction = state.view ? state.view.prediction : {};
  drawBox(prediction.box, PREDICTED, true);
  drawPath(prediction.waypoints, PREDICTED, true);
  drawBox(state.drag ? dragBox(state.drag) : state.box, REFERENCE_BOX, false);
  drawPath(state.path, REFERENCE_PATH, false);
}

// ---- mouse -----------------------------------------------------------------------------------------

function normalized(event) {
  const rect = canvas.getBoundingClientRect();
  const clamp = (v) => Math.min(1, Math.max(0, v));
  return [clamp((event.clientX - rect.left) / rect.width), clamp((event.clientY - rect.top) / rect.height)];
}

function dragBox(drag) {
  const [x0, y0] = drag.start, [x1, y1] = drag.end;
  return [(x0 + x1) / 2, (y0 + y1) / 2, Math.abs(x1 - x0), Math.abs(y1 - y0)];
}

const tool = () => document.querySelector('input[name="tool"]:checked').value;

canvas.addEventListener("pointerdown", (event) => {
  document.activeElement.blur(); // after typing a note, the keys are shortcuts again
  if (!state.view || tool() !== "box") return;
  canvas.setPointerCapture(event.pointerId);
  const point = normalized(event);
  state.drag = { start: point, end: point };
});

canvas.addEventListener("pointermove", (event) => {
  if (!state.drag) return;
  state.drag.end = normalized(event);
  draw();
});

canvas.addEventListener("pointerup", (event) => {
  if (!state.view) return;
  if (state.drag) {
    state.drag.end = normalized(event);
    const box = dragBox(state.drag);
    state.drag = null;
    if (box[2] * canvas.width >= MIN_BOX_PX && box[3] * canvas.height >= MIN_BOX_PX) {
      state.box = box;
      markDirty();
    }
  } else if (tool() === "path") {
    state.path.push(normalized(event));
    markDirty();
  }
  showReference();
  draw();
});

// ---- form ------------------------------------------------------------------------------------------

const round = (v) => Math.round(v * 1000) / 1000;

function showReference() {
  const box = state.box ? "box [" + state.box.map(round).join(", ") + "]" : "no box";
  const path = state.path.length ? "path of " + state.path.length + " point(s)" : "no path";
  $("reference-text").textContent = box + "; " + path;
}

function setOutcome(outcome) {
  state.outcome = outcome;
  document.querySelector('input[name="outcome"][value="' + outcome + '"]').checked = true;
  $("failure-stage").disabled = outcome !== "failure";
}

function setTool(name) {
  document.querySelector('input[name="tool"][value="' + name + '"]').checked = true;
}

function formatReward(value) {
  return value === null || value === undefined ? "—" : Number(value).toFixed(3);
}

function showRewards(view) {
  const body = $("rewards").querySelector("tbody");
  body.replaceChildren();
  for (const key of ["format", "region", "trajectory", "total", "success"]) {
    const row = document.createElement("tr");
    const cells = key === "success"
      ? [key, String(view.logged_rewards.success), String(view.rewards.success)]
      : [key, formatReward(view.logged_rewards[key]), formatReward(view.rewards[key])];
    for (const text of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.appendChild(cell);
    }
    body.appendChild(row);
  }
  const refs = view.references;
  $("reference-source").textContent =
    "scored against: " + refs.source + (refs.note ? " (" + refs.note + ")" : "") +
    " · logged reference: " + view.logged_references.source;
}

function showView(view) {
  state.view = view;
  const labels = view.labels || {};
  state.box = Array.isArray(labels.box) ? labels.box.slice() : null;
  state.path = Array.isArray(labels.waypoints) ? labels.waypoints.map((p) => p.slice()) : [];
  setOutcome("success" in labels ? (labels.success ? "success" : "failure") : "unjudged");
  $("failure-stage").value = labels.failure_stage || view.logged_outcome.failure_stage || view.failure_stages[0];
  $("note").value = labels.note || "";
  $("title").textContent = "episode " + view.episode + " · " + view.trial_id;
  $("instruction").textContent = view.instruction;
  // The effective outcome (core.outcomes.episode_outcome): an executed trial nobody judged is no success.
  const outcome = view.outcome;
  const verdict = !outcome.judged
    ? "not judged" + (outcome.failure_stage ? " (" + outcome.failure_stage + ")" : "")
    : (outcome.success ? "success" : "failure at " + outcome.failure_stage) + ", judged by " + outcome.outcome_source;
  const message = view.logged_outcome.message;
  const camera = view.camera;
  const cameraText = !camera ? "" : " · camera: " + (camera.said === null ? "could not decide"
    : camera.said ? "success" : "failure at " + camera.failure_stage) +
    (camera.confidence === null || camera.confidence === undefined ? "" : " (" + camera.confidence.toFixed(2) + ")") +
    (view.camera_disagrees ? " — DISAGREES with the operator" : "");
  $("robot-outcome").textContent = "outcome: " + verdict + (message ? " — logged: " + message : "") + cameraText;
  const reasoning = view.prediction.raw_texts || {};
  $("reasoning").textContent = Object.keys(reasoning).map((task) => task + ":\n" + reasoning[task]).join("\n\n");
  showRewards(view);
  showReference();
  state.dirty = false;
  state.leaveArmed = false;
}

function fillStages(stages) {
  const select = $("failure-stage");
  select.replaceChildren();
  for (const stage of stages) {
    const option = document.createElement("option");
    option.value = stage;
    option.textContent = stage;
    select.appendChild(option);
  }
}

// ---- navigation ------------------------------------------------------------------------------------

function visible() {
  const only = $("only-unlabelled").checked;
  return state.episodes.filter((e) => !only || !e.labelled || e.episode === state.current);
}

function showPosition() {
  const list = visible();
  const at = list.findIndex((e) => e.episode === state.current);
  const unlabelled = state.episodes.filter((e) => !e.labelled).length;
  // Where the camera judged and the operator did too: how often they differ (the camera on this cell).
  const compared = state.episodes.filter((e) => e.camera !== null && e.camera !== undefined && e.judged);
  const disagreements = compared.filter((e) => e.camera_disagrees).length;
  const camera = compared.length ? "; camera vs operator: " + disagreements + " of " + compared.length + " disagree" : "";
  $("position").textContent = list.length
    ? (at + 1) + " / " + list.length + " (" + unlabelled + " of " + state.episodes.length + " unlabelled" + camera + ")"
    : "no episode to show";
}

async function open(episode) {
  state.current = episode;
  setStatus("loading " + episode + "…");
  const view = await api(episodeUrl(episode));
  if (state.current !== episode) return; // a later open won
  state.image = null;
  if (view.has_color) {
    const image = new Image();
    image.src = episodeUrl(episode) + "/color.png";
    await image.decode();
    if (state.current !== episode) return;
    state.image = image;
  }
  if (view.image_size) [canvas.width, canvas.height] = view.image_size;
  fillStages(view.failure_stages);
  showView(view);
  showPosition();
  draw();
  setStatus("");
  document.body.dataset.episode = episode; // shown and drawn: what a test waits for
}

function step(direction) {
  if (state.dirty && !state.leaveArmed) {
    state.leaveArmed = true;
    setStatus("unsaved changes: save, or press again to discard them", "unsaved");
    return;
  }
  const list = visible();
  const at = list.findIndex((e) => e.episode === state.current);
  const target = list[at + direction];
  if (target) open(target.episode).catch((error) => setStatus(error.message, "error"));
  else setStatus(direction > 0 ? "this is the last episode" : "this is the first episode");
}

// ---- saving ----------------------------------------------------------------------------------------

async function save() {
  if (!state.view) return;
  if (state.path.length === 1) {
    setStatus("a reference path needs at least 2 points (or clear it)", "error");
    return;
  }
  const note = $("note").value.trim();
  const labels = {
    box: state.box,
    waypoints: state.path.length ? state.path : null,
    note: note || null,
    success: state.outcome === "unjudged" ? null : state.outcome === "success",
  };
  if (state.outcome === "failure") labels.failure_stage = $("failure-stage").value;
  const episode = state.current;
  try {
    const view = await api(episodeUrl(episode) + "/labels", {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(labels),
    });
    if (state.current !== episode) return;
    showView(view);
    const summary = state.episodes.find((e) => e.episode === episode);
    if (summary) {
      summary.labelled = state.box !== null || state.path.length > 0;
      summary.judged = state.outcome !== "unjudged";
      summary.camera_disagrees = view.camera_disagrees;
    }
    showPosition();
    draw();
    setStatus("saved: total reward " + formatReward(view.rewards.total) +
      " (logged " + formatReward(view.logged_rewards.total) + ")", "saved");
  } catch (error) {
    setStatus("not saved: " + error.message, "error");
  }
}

// ---- wiring ----------------------------------------------------------------------------------------

function clearReference(which) {
  if (which === "box") state.box = null; else state.path = [];
  markDirty();
  showReference();
  draw();
}

$("prev").addEventListener("click", () => step(-1));
$("next").addEventListener("click", () => step(1));
$("save").addEventListener("click", save);
$("undo-point").addEventListener("click", () => {
  if (state.path.length) { state.path.pop(); markDirty(); showReference(); draw(); }
});
$("clear-box").addEventListener("click", () => clearReference("box"));
$("clear-path").addEventListener("click", () => clearReference("path"));
$("only-unlabelled").addEventListener("change", showPosition);
$("note").addEventListener("input", markDirty);
$("failure-stage").addEventListener("change", markDirty);
for (const input of document.querySelectorAll('input[name="outcome"]')) {
  input.addEventListener("change", () => { setOutcome(input.value); markDirty(); });
}

document.addEventListener("keydown", (event) => {
  const typing = ["TEXTAREA", "SELECT"].includes(event.target.tagName) ||
    (event.target.tagName === "INPUT" && event.target.type === "text");
  if ((event.ctrlKey || event.metaKey) && event.key === "s") {
    event.preventDefault();
    save();
    return;
  }
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  const actions = {
    b: () => setTool("box"),
    w: () => setTool("path"),
    c: () => clearReference(tool() === "box" ? "box" : "path"),
    y: () => { setOutcome("success"); markDirty(); },
    f: () => { setOutcome("failure"); markDirty(); },
    x: () => { setOutcome("unjudged"); markDirty(); },
    u: () => { $("only-unlabelled").checked = !$("only-unlabelled").checked; showPosition(); },
    n: () => step(1),
    p: () => step(-1),
    ArrowRight: () => step(1),
    ArrowLeft: () => step(-1),
    Backspace: () => $("undo-point").click(),
    Enter: save,
  };
  const action = actions[event.key];
  if (action) {
    event.preventDefault();
    action();
  }
});

async function start() {
  try {
    const data = await api("/api/episodes");
    state.episodes = data.episodes;
    $("logdir").textContent = data.logdir;
    if (state.episodes.length) await open(state.episodes[0].episode);
    else showPosition();
  } catch (error) {
    setStatus(error.message, "error");
  }
}

start();
