"""`vla-r1 trials`: teleop-free pick-and-place trials through the node graph, with summary and report.

By default it starts the graph itself (the same processes `ros2 launch vla_r1_ros demo.launch.py`
starts) with the chosen policy; `--attach` uses a graph that is already running (a lab's launch).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from vla_r1_ros.core.episodes import INDEX_FILE, RECORDING_FILE, RUN_CONFIG_FILE, EpisodeStoreError, write_json_atomic
from vla_r1_ros.core.trials import TrialSettings
from vla_r1_ros.graph import (
    DEFAULT_DISCOVERY_RANGE,
    DISCOVERY_RANGE_VARIABLE,
    TRIALS_ENCLAVE,
    GraphArgs,
    process_environment,
)
from vla_r1_ros.policies import PATH_CONVENTIONS, POLICIES
from vla_r1_ros.policies.settings import QUANTIZATIONS


def noise_spec(text: str) -> str:
    """argparse type of `--noise`: the canonical spec of a valid error model (core/error_model.py)."""
    from vla_r1_ros.core.error_model import ErrorModelError, parse_error_model

    try:
        model = parse_error_model(text)
    except ErrorModelError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip() if text.strip() in ("none", "paper") else model.spec


def configure(parser: argparse.ArgumentParser, default_n: int = 10, default_out: str | None = None) -> None:
    parser.add_argument(
        "--n", "--trials", dest="n", type=int, default=None, help=f"number of trials (default {default_n})"
    )
    parser.set_defaults(default_n=default_n)
    parser.add_argument(
        "--seed",
        type=int,
        default=GraphArgs.seed,
        help="first layout seed (trial i uses seed + i, or seed + scene with --scenes)",
    )
    parser.add_argument(
        "--scenes", type=int, default=0, help="paper protocol: this many layouts, --per-scene trials on each"
    )
    parser.add_argument("--per-scene", type=int, default=10, help="trials per layout with --scenes (default 10)")
    parser.add_argument(
        "--out",
        default=default_out,
        help="output folder: index.jsonl, episodes/, logs/, summary.json, report.html (default runs/<time>)",
    )
    parser.add_argument(
        "--policy",
        choices=POLICIES,
        default=GraphArgs.policy,
        help="scripted: simulator test expert (not the model); vla_r1: the model",
    )
    parser.add_argument(
        "--noise",
        type=noise_spec,
        default=GraphArgs.noise,
        help="scripted policy error model: a preset (none | paper) or key=value pairs, e.g. "
        "iou=0.5,rmse=40,wrong_object=0.1,parse_fail=0.02 (see docs/inference.md)",
    )
    parser.add_argument(
        "--path-convention",
        choices=PATH_CONVENTIONS,
        default=GraphArgs.path_convention,
        help="scripted policy trajectories: carry (object -> place) or sharerobot (gripper -> object -> place)",
    )
    parser.add_argument("--model", default=GraphArgs.model, help="VLA-R1 checkpoint (policy vla_r1)")
    parser.add_argument(
        "--adapter", default=GraphArgs.adapter, help="LoRA adapter made for --model (vla-r1 train-sft/train-grpo)"
    )
    parser.add_argument("--quantization", default=GraphArgs.quantization, choices=QUANTIZATIONS)
    parser.add_argument("--objects", type=int, default=0, help="objects per layout (0 = config default)")
    parser.add_argument(
        "--timeout", type=float, default=TrialSettings.trial_timeout_s, help="seconds allowed per trial"
    )
    parser.add_argument(
        "--pause-limit",
        type=float,
        default=TrialSettings.hold_limit_s,
        help="seconds a trial waits while the graph cannot run it (the planning node refuses goals: no "
        "logger, a full disk; the camera restarting) before the run stops with its summary (default %(default)s)",
    )
    parser.add_argument("--attach", action="store_true", help="use an already running graph (e.g. ros2 launch)")
    parser.add_argument(
        "--manual-reset",
        action="store_true",
        help="real robot: a person resets the scene between trials (implies --attach)",
    )
    parser.add_argument(
        "--instruction",
        action="append",
        default=[],
        help="instruction for --manual-reset trials (repeat to cycle through several)",
    )
    parser.add_argument(
        "--judge",
        metavar="vision|FILE.jsonl",
        help="vision: the camera judges every trial (the operator only its exceptions); FILE.jsonl: with "
        "--manual-reset, the operator's judgements, one JSON line per trial in order, e.g. "
        '{"success": false, "failure_stage": "grasp", "note": "slipped"} (default: the simulator judges; '
        "--manual-reset asks after each trial)",
    )
    parser.add_argument(
        "--reset",
        choices=("sim", "self"),
        default="sim",
        help="sim: the simulator lays out each trial; self: the arm puts the scene back itself between trials "
        "(the simulator's teleport for the first layout only), planned from the camera's depth",
    )
    parser.add_argument(
        "--layouts",
        type=Path,
        metavar="RUN",
        help="re-run the layouts a --reset self run RUN logged (its summary.json), each trial with that run's "
        "instruction, in the simulator (default --n: all of RUN's trials)",
    )
    parser.add_argument(
        "--registry",
        type=Path,
        help="the object registry (vla-r1 objects register) of --judge vision / --reset self on a real arm; "
        "in the simulator it is registered from the first layout into <out>/objects.json",
    )
    parser.add_argument(
        "--stand-in-operator",
        action="store_true",
        help="benchmarks in the simulator: the simulator's teleport back to the first layout answers what would "
        "call a person after three failed self-resets (counted as an operator call and a teleport)",
    )
    parser.add_argument(
        "--on-exception",
        metavar="CMD",
        default="",
        help="a command (pager, chat hook) called for what needs a person: a trial the camera could not judge, "
        "three failed self-resets (docs/unattended.md#the-exception-channel); default: the console when "
        "stdin is a terminal, else nobody",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        help="--manual-reset: the reward logger's episode log, where judgements are stored "
        "(default: asked from the reward_logger node's log_dir parameter)",
    )
    parser.add_argument("--no-report", action="store_true", help="skip the HTML report")
    parser.add_argument(
        "--record",
        action="store_true",
        help="record the graph's topics into a rosbag2 MCAP bag under <out>/bags, each trial's span in "
        "<out>/recording.json (docs/recording.md)",
    )
    parser.add_argument(
        "--keystore",
        default=GraphArgs.keystore,
        help="SROS2 keystore: the graph and this command run in their enclaves of config/sros2_policy.xml, "
        "access control enforced (docs/unattended.md#sros2)",
    )


def run(args: argparse.Namespace) -> int:
    return run_trials(args)


class UsageError(ValueError):
    """Arguments that cannot make a run (the command exits 2 with the message)."""


def trial_count(args: argparse.Namespace) -> int:
    """How many trials the arguments ask for (UsageError for contradictory ones)."""
    if args.layouts is not None:
        from vla_r1_ros.scene_setup import logged_layouts

        try:
            _, logged = logged_layouts(args.layouts)
        except ValueError as exc:
            raise UsageError(f"--layouts: {exc}") from None
        if args.n is not None and not 0 <= args.n <= len(logged):
            raise UsageError(f"--n {args.n}: --layouts {args.layouts} logged {len(logged)} trials")
        return len(logged) if args.n is None else args.n
    if args.scenes < 0 or args.per_scene < 1:
        raise UsageError("--scenes must be ≥ 0 and --per-scene ≥ 1")
    if not args.scenes:
        count = args.default_n if args.n is None else args.n
    elif args.manual_reset:
        raise UsageError("--scenes resets the simulator; with --manual-reset give --n and reset by hand")
    elif args.n is not None and args.n != args.scenes * args.per_scene:
        raise UsageError(f"--n {args.n} contradicts --scenes {args.scenes} × --per-scene {args.per_scene}")
    else:
        count = args.scenes * args.per_scene
    if count < 0:
        raise UsageError("--n must be ≥ 0")
    return count


def checked_adapter(args: argparse.Namespace) -> None:
    """`--adapter` refused (UsageError) unless it was made for `--model`: before the graph starts, not
    when the inference node loads the model minutes later."""
    if not args.adapter:
        return
    if args.policy != "vla_r1":
        raise UsageError("--adapter is loaded by the model: it needs --policy vla_r1")
    from vla_r1_ros.core.config import load_config
    from vla_r1_ros.policies.adapter import AdapterError
    from vla_r1_ros.policies.settings import TransformersSettings
    from vla_r1_ros.policies.vla_r1 import ModelUnavailableError, VlaR1Policy

    settings = TransformersSettings.from_config(load_config("model"), model=args.model, adapter=args.adapter)
    try:
        VlaR1Policy(settings).checked_adapter()
    except (AdapterError, ModelUnavailableError) as exc:
        raise UsageError(f"--adapter: {exc}") from None


def checked_arguments(args: argparse.Namespace) -> tuple[int, list[dict] | None]:
    """The trial count and the `--judge` judgements the arguments ask for; UsageError when they contradict."""
    if args.manual_reset and not args.instruction:
        raise UsageError("--manual-reset needs at least one --instruction")
    n = trial_count(args)
    vision = args.judge == "vision"
    if args.log_dir and not args.manual_reset:
        raise UsageError("--log-dir goes with --manual-reset (a run it starts logs into --out)")
    if args.judge and not vision and not args.manual_reset:
        raise UsageError("--judge FILE goes with --manual-reset (the simulator judges its own trials)")
    if args.reset == "self" and args.manual_reset:
        raise UsageError("--reset self and --manual-reset contradict: the arm or a person resets the scene")
    if args.stand_in_operator and (args.reset != "self" or args.registry is not None):
        raise UsageError("--stand-in-operator answers a simulated self-reset run's operator calls: use --reset self")
    if args.layouts is not None and (args.reset == "self" or args.manual_reset or args.scenes or vision):
        raise UsageError(
            "--layouts re-runs logged layouts with the simulator's reset and judge: drop --reset self, "
            "--manual-reset, --scenes and --judge"
        )
    if args.reset == "self" and args.scenes:
        raise UsageError("--scenes lays out each scene with the simulator; --reset self makes its own layouts")
    if vision and not (args.reset == "self" or args.manual_reset):
        # Each simulator layout puts the tray elsewhere: the registry holds where it stood when registered.
        raise UsageError("--judge vision needs the tray where it was registered: use --reset self (or --manual-reset)")
    if args.registry is not None and not args.registry.is_file():
        raise UsageError(f"--registry {args.registry}: no such file (vla-r1 objects register writes one)")
    if args.manual_reset and vision and args.registry is None:
        raise UsageError("--judge vision on a real arm needs --registry (vla-r1 objects register)")
    if args.record and (args.attach or args.manual_reset):
        raise UsageError("--record records the graph this command starts; a launched graph records with record:=true")
    checked_adapter(args)
    if not args.judge or vision:
        return n, None
    from vla_r1_ros.core.labels import LabelError, load_judgements

    try:
        return n, load_judgements(args.judge, n)
    except LabelError as exc:
        raise UsageError(f"--judge: {exc}") from None


def prepared_out(args: argparse.Namespace, attach: bool) -> Path:
    """The run's folder, created, with its run_config.json written (UsageError when it cannot be)."""
    out = Path(args.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    if not attach and (out / INDEX_FILE).exists():
        # summary.json and the report describe one run; mixing two runs' episodes would misreport both.
        raise UsageError(f"{out} already holds an episode log; choose another --out or remove it")
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / RUN_CONFIG_FILE, run_config(args))
    except OSError as exc:
        raise UsageError(f"cannot write into --out {out}: {exc.strerror or exc}") from None
    except EpisodeStoreError as exc:  # the folder exists but cannot take a file (read-only, full)
        raise UsageError(f"cannot write into --out {out}: {exc}") from None
    return out


def graph_security(args: argparse.Namespace) -> GraphArgs:
    """Who may talk to the run's graph, as graph arguments: the discovery range (this environment's, else
    the graph's default) and the SROS2 keystore. UsageError for a range Jazzy does not know."""
    try:
        return GraphArgs(
            discovery_range=os.environ.get(DISCOVERY_RANGE_VARIABLE) or DEFAULT_DISCOVERY_RANGE, keystore=args.keystore
        )
    except ValueError as exc:
        raise UsageError(f"{DISCOVERY_RANGE_VARIABLE}: {exc}") from None


def started_graph(args: argparse.Namespace, out: Path, security: GraphArgs):
    """The graph's processes, started with the run's policy and logging into `out` (a `GraphLauncher`)."""
    from vla_r1_ros.launcher import GraphLauncher

    graph_args = replace(
        security,
        policy=args.policy,
        noise=args.noise,
        path_convention=args.path_convention,
        model=args.model,
        adapter=str(Path(args.adapter).resolve()) if args.adapter else "",
        quantization=args.quantization,
        log_dir=str(out),
        seed=args.seed,
        judge=args.judge if args.judge == "vision" else "",
        object_registry=str(registry_path(args, out)),
        record=args.record,
    )
    launcher = GraphLauncher(graph_args, out / "logs")
    launcher.start()
    print(
        f"started {len(launcher.processes)} processes (logs: {out / 'logs'}); "
        f"needs a ROS install, skipped: {', '.join(launcher.skipped) or 'none'}"
    )
    return launcher


def registry_path(args: argparse.Namespace, out: Path) -> Path:
    """The object registry the run's camera judge and self-reset read: `--registry`, else the log's own."""
    from vla_r1_ros.core.episodes.layout import OBJECT_REGISTRY_FILE

    return args.registry.resolve() if args.registry is not None else out / OBJECT_REGISTRY_FILE


def summary_fields(args: argparse.Namespace, n: int) -> dict:
    """What summary.json says the run was, beside its figures."""
    protocol = {"scenes": args.scenes, "per_scene": args.per_scene} if args.scenes else {"scenes": n, "per_scene": 1}
    return {
        "policy": args.policy,
        "noise": args.noise,
        "path_convention": args.path_convention,
        "seed": args.seed,
        "protocol": protocol,
        "judge": args.judge if args.judge == "vision" else ("operator" if args.manual_reset else "simulator"),
        "reset": "manual" if args.manual_reset else args.reset,
    } | ({"recording": RECORDING_FILE} if args.record else {})


def run_trials(args: argparse.Namespace, keep_running: bool = False) -> int:
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from vla_r1_ros.core.config import PackageConfig
    from vla_r1_ros.nodes.trial_client import GraphClient, GraphUnavailable
    from vla_r1_ros.operator_channel import OperatorChannel
    from vla_r1_ros.scene_setup import LoggedLayouts, ManualReset, SelfReset, SimReset, sim_first_layout
    from vla_r1_ros.trial_observers import ProgressBar, RecordingIndex, SummaryWriter
    from vla_r1_ros.trial_runner import TrialRunner

    attach = args.attach or args.manual_reset
    try:
        n, judgements = checked_arguments(args)
        security = graph_security(args)
        out = prepared_out(args, attach)
    except UsageError as exc:
        print(f"vla-r1: {exc}", file=sys.stderr)
        return 2
    launcher = None if attach else started_graph(args, out, security)
    # This process's trial client talks as the graph's processes do, in its own enclave.
    os.environ |= process_environment(security)
    rclpy_args = ["--ros-args", "--enclave", TRIALS_ENCLAVE] if args.keystore else None
    # SIGTERM (a supervisor, `timeout`) stops the graph like Ctrl-C does, through the `finally` below;
    # rclpy's own handlers would only shut its context down and leave this loop and the graph running.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    rclpy.init(args=rclpy_args, signal_handler_options=SignalHandlerOptions.NO)
    graph = GraphClient()
    # With --manual-reset the questions are the progress: a bar would run into the prompts.
    progress = ProgressBar(n, enabled=not args.manual_reset)
    try:
        operator = OperatorChannel(args.on_exception)
        if args.manual_reset:
            setup = ManualReset(
                args.instruction,
                lambda index, text: input(f"[trial {index + 1}/{n}] reset the scene for: {text!r}, then press Enter "),
            )
        elif args.reset == "self":
            registry = registry_path(args, out)
            # In the simulator the first layout is the simulator's, and its objects are registered from it.
            first = None if args.registry else sim_first_layout(graph, PackageConfig.load(), registry, args.objects)
            stand_in = (lambda: graph.reset_layout(args.seed, args.objects)) if args.stand_in_operator else None
            setup = SelfReset(graph, registry, operator.call, first, stand_in)
        elif args.layouts is not None:
            setup = LoggedLayouts(graph, args.layouts)
        else:
            setup = SimReset(graph, num_objects=args.objects)
        graph.wait_for_graph(timeout_s=180.0, need_reset=setup.needs_reset_service)
        if launcher and launcher.recording:
            graph.wait_for_recorder(timeout_s=60.0)
        settings = TrialSettings(
            n=n,
            seed=args.seed,
            per_scene=args.per_scene if args.scenes else 1,
            trial_timeout_s=args.timeout,
            hold_limit_s=args.pause_limit,
        )
        if args.judge == "vision":
            judge = exception_judge(operator, args.log_dir or out, progress.on_event)
        else:
            judge = operator_judge(graph, args, judgements) if args.manual_reset else None
        sections = setup.summary if isinstance(setup, SelfReset) else dict
        writer = SummaryWriter(out, n, summary_fields(args, n), report=not args.no_report, sections=sections)
        observers = [progress, writer] if n else [progress]
        if launcher and launcher.recording:
            observers.append(RecordingIndex(out, Path(launcher.recording.bag_dir)))
        runner = TrialRunner(graph, setup, judge, observers=observers)
        outcomes = runner.run(settings)
        if status := exit_status(n, len(outcomes), runner.stopped, runner.unlogged, writer.error):
            return status
        if keep_running:
            print("graph running; Ctrl-C to stop")
            while True:
                time.sleep(1.0)
    except GraphUnavailable as exc:
        print(f"vla-r1: {exc}", file=sys.stderr)
        for failure in launcher.failed() if launcher else []:
            print(failure, file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError) as exc:
        if args.manual_reset:
            ended = "interrupted" if isinstance(exc, KeyboardInterrupt) else "standard input closed"
            print(f"\n{ended}: every judgement given so far is saved in its episode's labels.json", file=sys.stderr)
        if isinstance(exc, EOFError):
            return 1
    finally:
        progress.close()
        graph.close()
        rclpy.try_shutdown()
        if launcher:
            if launcher.recording:
                # A reliable sample DDS lost on the way to the recorder is sent again after the writer's
                # next heartbeat (Fast DDS: every 3 s): the last trial's messages reach the bag before it closes.
                time.sleep(RECORDER_DRAIN_S)
            launcher.stop()
    return 0


RECORDER_DRAIN_S = 3.5  # > Fast DDS's default heartbeat period (3 s)


def exit_status(n: int, ran: int, stopped: str, unlogged: list[str], summary_error: str) -> int:
    """1, with the reason on stderr, for a run whose log is not the whole run: it stopped early, finished
    trials never reached the log (a lab must not mistake a log with holes for the run), or the summary
    could not be written; else 0."""
    if unlogged:
        print(f"vla-r1: finished trials missing from the log: {', '.join(unlogged)}", file=sys.stderr)
    if stopped:
        print(f"vla-r1: stopped after {ran} of {n} trials: {stopped}", file=sys.stderr)
    return 1 if stopped or unlogged or summary_error else 0


def run_config(args: argparse.Namespace) -> dict:
    """What a run ran with (`run_config.json` in its --out): every resolved argument, every config file
    as read, the package version and, in a git checkout, the commit."""
    import subprocess
    from dataclasses import asdict
    from importlib.metadata import PackageNotFoundError, version

    from vla_r1_ros.core.config import PackageConfig
    from vla_r1_ros.core.episodes.layout import OBJECT_REGISTRY_FILE

    try:
        package_version = version("vla_r1_ros")
    except PackageNotFoundError:
        package_version = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    config = asdict(PackageConfig.load())
    camera_judged = args.reset == "self" or args.judge == "vision"
    return {
        # The objects the camera judge and the self-reset know: `--registry`, or the one the run registers
        # into its folder from the first layout (the simulator).
        "object_registry": str(args.registry.resolve())
        if args.registry
        else (OBJECT_REGISTRY_FILE if camera_judged else None),
        "arguments": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "config": config | {"directory": str(config["directory"])},
        "package_version": package_version,
        "git_commit": commit or None,
    }


def exception_judge(operator, log_dir: Path, tell):
    """The `judge` of a camera-judged run: the operator judges only the trials the camera handed over
    (`vision_judge.asks_operator` in the index line), through `operator` (`OperatorChannel`); the answer is
    stored in the trial's episode at once. Nobody answering leaves the trial not judged, and the run goes on."""
    from vla_r1_ros.core import labels

    def judge(outcome):
        if not (outcome.vision_judge or {}).get("asks_operator"):
            return outcome
        answer = operator.ask(outcome, str(log_dir)) if operator.attached else None
        if answer is None:
            tell(f"trial {outcome.index + 1} not judged: the camera could not decide and no operator answered")
            return outcome
        judged, episode = labels.record_judgement(log_dir, outcome, answer)
        verdict = "success" if judged.success else f"failure at {judged.failure_stage}"
        tell(f"trial {outcome.index + 1} judged by the operator: {verdict} ({episode or 'no episode'})")
        return judged

    return judge


def operator_judge(graph, args: argparse.Namespace, judgements: list[dict] | None):
    """The `judge` of a manual-reset run: asks the operator (or takes the `--judge` line) after each trial
    and stores the answer in the trial's episode right away (`core.labels.record_judgement`)."""
    from vla_r1_ros.core import labels
    from vla_r1_ros.nodes.trial_client import GraphUnavailable

    log_dir = args.log_dir or Path(graph.logger_log_dir())
    if not log_dir.is_dir():
        raise GraphUnavailable(
            f"the reward logger writes to {log_dir}, which is not a directory here: pass --log-dir "
            "(the logger's log_dir as seen from this machine)"
        )
    print(f"judgements go into the episodes of {log_dir.resolve()}")

    def judge(outcome):
        report = "success" if outcome.success else f"failure at {outcome.failure_stage or '?'} ({outcome.message})"
        answer = labels.ask_judgement(input, report) if judgements is None else judgements[outcome.index]
        judged, episode = labels.record_judgement(log_dir, outcome, answer)
        verdict = "success" if judged.success else f"failure at {judged.failure_stage}"
        where = f"episode {episode}" if episode else "no episode (nothing logged for this trial)"
        print(f"[trial {outcome.index + 1}] judged {verdict}: {where}", flush=True)
        return judged

    return judge
