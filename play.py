"""Play a world: the neural dream by default, the ground-truth arena, a replay, or your own.

    python play.py                                  # dream with the shipped model (window)
    python play.py --world arena                    # the ground truth
    python play.py --headless --ticks 400 --script assets/scripts/tour.yaml --record runs/tour
    python play.py --list-worlds
    python play.py --device cuda                    # dream on the GPU (bf16); --device cpu keeps it on the CPU

With no display, plain `python play.py` says so, runs a short headless demo that records itself, and
prints how to watch it.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from pathlib import Path
from typing import Any

import engine
from engine import cli
from engine.app import fail, run_world
from engine.game import LoopConfig
from engine.input import Keymap, KeymapError
from engine.recording import RecordingError, check_record_target
from engine.script import PolicyError, PolicySource, ScriptError, ScriptSource, load_policy, load_script
from engine.world import WorldNotFoundError, loop_tick_rate, make_world, world_factory

ROOT = Path(__file__).resolve().parent

# Errors that mean "the user asked for something that cannot work": one clear line, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (KeymapError, ScriptError, PolicyError, WorldNotFoundError, ValueError,
                                                TypeError, RecordingError)


def user_errors() -> tuple[type[BaseException], ...]:
    """USER_ERRORS plus the model's CheckpointError. Looked up when an error happens, not at start-up: importing
    worldmodel.checkpoint imports torch (a second), which the first line on the terminal should not wait for."""
    try:
        from worldmodel.checkpoint import CheckpointError
    except ImportError:  # the engine runs without the world-model package
        return USER_ERRORS
    return USER_ERRORS + (CheckpointError,)


def needs_display(error: BaseException) -> bool:
    """Whether a world failed to start for want of a display (pyglet's NoSuchDisplayException, SDL's "no available
    video device", X11's "cannot open display", ...)."""
    text = f"{type(error).__name__} {error}".lower()
    return any(k in text for k in ("display", "video device", "x11", "xlib", "glx"))


def progress(text: str) -> None:
    """Start-up progress for the person waiting (stderr: stdout carries the run's summary)."""
    print(f"dreamwalk: {text}", file=sys.stderr, flush=True)
DEMO_SCRIPT = ROOT / "assets" / "scripts" / "tour.yaml"
# People playing the ground truth get a sharper picture than the model's training data (128x128).
PLAY_DEFAULTS: dict[str, dict[str, Any]] = {"arena": {"width": 256, "height": 256}}
FLAGGED_SETTINGS = {"checkpoint": "--checkpoint", "device": "--device"}  # world settings play.py takes as flags


def default_world() -> str:
    """The dream when a shipped model is present and the world model package registers it, else the arena."""
    try:
        import worldmodel  # noqa: F401  (registers "dream")
    except Exception:
        return "arena"
    return "dream" if "dream" in engine.available_worlds() and (ROOT / "assets" / "model").exists() else "arena"


def parse_set(items: list[str]) -> dict[str, Any]:
    """--set key=value pairs (values parsed as YAML scalars) into world config (engine.cli.parse_set)."""
    return cli.parse_set(items, "--set", "width=256")


def build_parser() -> argparse.ArgumentParser:
    p = cli.Parser(prog="python play.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--world", default=None, help="world name (see --list-worlds) or module:Class")
    p.add_argument("--checkpoint", type=Path, default=None, help="model directory for the dream world")
    p.add_argument("--set", dest="world_set", action="append", default=[], metavar="KEY=VALUE",
                   help="world config, e.g. --set width=256 --set preset=small")
    p.add_argument("--seed", type=cli.integer(0, 2**31 - 1), default=0)
    p.add_argument("--headless", action="store_true", help="no window; as fast as possible unless --realtime")
    p.add_argument("--ticks", type=int, default=None, help="stop after N ticks")
    p.add_argument("--realtime", action="store_true", help="headless: pace at the tick rate")
    p.add_argument("--tick-rate", type=cli.number(0, cli.MAX_TICK_RATE, lo_open=True), default=20.0,
                   help=f"ticks per second (default 20, at most {cli.MAX_TICK_RATE:g})")
    p.add_argument("--max-catchup", type=int, default=4, help="ticks run per frame at most before dropping")
    p.add_argument("--script", type=Path, default=None, help="a YAML action script (see assets/scripts/)")
    p.add_argument("--policy", default=None, help="a policy name or module:callable (observation -> action)")
    p.add_argument("--record", type=Path, default=None, help="record the session into this new directory")
    p.add_argument("--no-video", action="store_true", help="record without the mp4")
    p.add_argument("--keymap", type=Path, default=None, help="your key bindings (YAML; overrides assets/keymap.yaml)")
    p.add_argument("--size", default="640x640", help="window size WxH")
    p.add_argument("--filter", choices=["nearest", "linear"], default="linear",
                   help="how the frame is scaled to the window (F2 toggles; default linear)")
    p.add_argument("--summary", type=Path, default=None, help="write the run summary JSON here")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where a dream's model runs: auto (default) = CUDA when torch sees a GPU, else the CPU")
    p.add_argument("--list-worlds", action="store_true")
    return p


def accepts_device(world_name: str) -> bool:
    """Whether the world's constructor takes `device` (the dream worlds do; the engine's own do not)."""
    import inspect

    try:
        params = inspect.signature(world_factory(world_name)).parameters
    except (TypeError, ValueError):
        return False
    return "device" in params


def check_summary_target(path: Path) -> None:
    """--summary must name a file that can be written (its folder is created); RecordingError otherwise."""
    if path.is_dir():
        raise RecordingError(f"--summary {path}: that is a directory; give a file name (e.g. {path / 'summary.json'})")
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a"):
            pass
        if not existed:
            path.unlink()
    except OSError as e:
        raise RecordingError(f"--summary {path}: cannot write there ({e.strerror or e})") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import worldmodel  # noqa: F401  (registers the dream worlds when the package is present)
    except ImportError:
        pass
    if args.list_worlds:
        for name, desc in engine.available_worlds().items():
            print(f"{name:10s} {desc}")
        return 0
    if args.script and args.policy:
        return fail("give --script or --policy, not both")
    for name in ("ticks", "tick_rate", "max_catchup"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):  # also NaN and inf
            return fail(f"--{name.replace('_', '-')} must be positive (a finite number > 0), got {value}")
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        return fail(f"--size takes WxH like 800x600, got {args.size!r}")
    if not (64 <= w <= 16384 and 64 <= h <= 16384):
        return fail(f"--size takes a window of 64x64 to 16384x16384 pixels, got {args.size!r}")

    from engine.window import display_available

    has_display, why = display_available()
    headless, record, ticks, script = args.headless, args.record, args.ticks, args.script
    demo = not headless and not has_display
    if demo:
        # Nobody can see a window here: do something useful instead, and say what.
        headless = True
        if record is None:
            record = ROOT / "recordings" / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
        if script is None and args.policy is None:
            script = DEMO_SCRIPT
        print(f"No display ({why}), so no window can open. Running a short headless demo instead:\n"
              f"  {script.name if script else args.policy} for up to {ticks or 'all its'} ticks, recorded to {record}")

    made_record_dir = record is not None and not Path(record).exists()
    try:  # where the run will write, checked before any work (not found unwritable after the run)
        if record is not None:
            check_record_target(record)
        if args.summary is not None:
            check_summary_target(args.summary)
    except RecordingError as e:
        return fail(str(e))

    world_name = args.world or default_world()
    progress(f"starting {world_name}")
    frontend = None
    try:
        keymap = Keymap.load(args.keymap)
        world_factory(world_name)  # a world name that does not exist is refused before a window opens
        if not headless:  # the window opens first, with a loading screen, while torch, the model and the world load
            from engine.app import open_frontend

            progress("opening the window")
            frontend, headless = open_frontend(False, keymap, f"dreamwalk - {world_name}", (w, h), args.filter)
            if hasattr(frontend, "loading"):
                frontend.loading(f"starting {world_name}…")
        given = parse_set(args.world_set)
        for key, flag in FLAGGED_SETTINGS.items():  # one way in for each setting
            if key in given:
                raise ValueError(f"--set {key}=...: give it as {flag} {given[key]} instead")
        config = {**PLAY_DEFAULTS.get(world_name, {}), **given}
        if args.checkpoint is not None:
            config["checkpoint"] = str(args.checkpoint)
        config = loop_tick_rate(world_name, config, args.tick_rate)  # the world steps at the loop's rate
        if "device" not in config and accepts_device(world_name):
            config["device"] = args.device
        elif args.device != "auto" and "device" not in config:
            raise ValueError(f"--device {args.device}: the world {world_name!r} has no model to place on a device")
        source = None
        if script is not None:
            source = ScriptSource(load_script(script, args.tick_rate), name=f"script {script.name}")
        elif args.policy is not None:
            source = PolicySource(load_policy(args.policy), name=args.policy)
        t0 = time.perf_counter()
        what = "loading the model and starting its prompt world" if accepts_device(world_name) else "building the world"
        progress(f"{what} ({world_name})…")
        if hasattr(frontend, "loading"):
            frontend.loading(f"{what}…")
        try:
            world = make_world(world_name, **config)
        except Exception as e:
            if not has_display and needs_display(e):  # a game of one's own that opens a window (pyglet, pygame GL)
                raise ValueError(f"the world {world_name} needs a display to start ({type(e).__name__}: "
                                 f"{' '.join(str(e).split())[:160]}); set DISPLAY, or run under Xvfb: "
                                 f"xvfb-run -a python play.py ...") from None
            raise
        keymap = keymap.for_world(world_name, getattr(world, "commands", None))  # + the world's keys (checked here)
        progress(f"{world_name} ready after {time.perf_counter() - t0:.1f} s")
    except user_errors() as e:
        if made_record_dir:  # the run never started: leave no empty recording folder behind
            with contextlib.suppress(OSError):
                Path(record).rmdir()
        if frontend is not None:
            frontend.close()
        return fail(str(e))

    try:
        loop = LoopConfig(tick_rate=args.tick_rate, max_catchup=args.max_catchup, realtime=args.realtime,
                          max_ticks=ticks, seed=args.seed, record_dir=record, video=not args.no_video,
                          model_hash=getattr(world, "model_hash", None))
        code = run_world(world, world_name, loop, headless=headless, source=source, keymap=keymap, size=(w, h),
                         filter=args.filter, summary_json=args.summary, frontend=frontend)
    except (RecordingError, PolicyError, engine.ObservationError, engine.ActionError) as e:
        return fail(str(e))
    if demo and record is not None:
        from engine.game import python_command, short_path

        py, where = python_command(), short_path(record)
        print(f"\nDemo recorded to {where}\n"
              f"  watch it:   open {Path(where) / 'video.mp4'} in any video player\n"
              f"  replay it:  {py} -m engine.replay {where}   (in a desktop session)\n"
              f"  verify it:  {py} -m engine.replay {where} --verify")
    return code


if __name__ == "__main__":
    sys.exit(main())
