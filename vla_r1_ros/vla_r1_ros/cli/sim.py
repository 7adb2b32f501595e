"""`vla-r1 sim`: open the simulated workcell in PyBullet's window, or render one headless snapshot."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="layout seed (default 0)")
    parser.add_argument("--objects", type=int, default=None, help="number of objects (default: config, 4)")
    parser.add_argument("--gui", action="store_true", help="open PyBullet's window; Ctrl-C closes it")
    parser.add_argument("--snapshot", metavar="OUT.png", help="render the camera headless to OUT.png")


def run(args: argparse.Namespace) -> int:
    import cv2

    from vla_r1_ros.core.config import PackageConfig
    from vla_r1_ros.sim.workcell import Workcell

    if not args.gui and not args.snapshot:
        args.snapshot = "workcell.png"
    workcell = Workcell(PackageConfig.load(), gui=args.gui)
    try:
        workcell.reset(args.seed, args.objects)
        if args.snapshot:
            started = time.perf_counter()
            frame, scene = workcell.capture()
            render_ms = (time.perf_counter() - started) * 1000
            cv2.imwrite(args.snapshot, frame.color[:, :, ::-1])
            cv2.imwrite(args.snapshot.rsplit(".", 1)[0] + "_depth.png", frame.depth_mm)
            report = {
                "renderer": workcell.renderer,
                "render_ms": round(render_ms, 1),
                "image": args.snapshot,
                "scene": dataclasses.asdict(scene),
            }
            print(json.dumps(report, indent=2))
        if args.gui:
            print(f"workcell seed {args.seed}: {[o.name for o in workcell.scene().objects]}; Ctrl-C to close")
            while True:
                workcell.step(1.0 / 30.0)  # keep physics live (objects can be dragged with the mouse)
    except KeyboardInterrupt:
        pass
    finally:
        workcell.close()
    return 0
