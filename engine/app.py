"""Run a world in the window or headless: the shared runner behind `play.py` and `engine.replay`."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from engine.game import Frontend, Game, HeadlessFrontend, LoopConfig, run_stats_dict
from engine.input import InputAccumulator, Keymap
from engine.script import ActionSource
from engine.world import World


def open_frontend(headless: bool, keymap: Keymap, title: str, size: tuple[int, int], filter: str,
                  log=print) -> tuple[Frontend, bool]:
    """A window if asked for and possible, else the headless frontend. Returns (frontend, is_headless)."""
    if headless:
        return HeadlessFrontend(), True
    from engine.window import DisplayError, WindowFrontend

    try:
        return WindowFrontend(keymap, title=title, size=size, filter=filter), False
    except DisplayError as e:
        log(f"no window: {e}. Running headless instead.")
        return HeadlessFrontend(), True


def run_world(
    world: World,
    world_name: str,
    loop: LoopConfig | None = None,
    headless: bool = False,
    source: ActionSource | None = None,
    keymap: Keymap | None = None,
    size: tuple[int, int] = (640, 640),
    filter: str = "linear",
    summary_json: Path | None = None,
    log=print,
    frontend: Frontend | None = None,
) -> int:
    """Run `world` by the loop settings `loop` until quit / `loop.max_ticks` / the source ends; print a summary.
    Returns an exit code. In a window the loop is paced at the tick rate and steps on a worker thread whatever `loop`
    says; headless with neither a tick limit nor a source, it runs 200 ticks. `frontend`: one opened already (a
    window showing a loading screen while the world started), else one is opened."""
    keymap = (keymap or Keymap.load()).for_world(world_name, getattr(world, "commands", None))  # + the world's keys
    if frontend is None:
        frontend, is_headless = open_frontend(headless, keymap, f"dreamwalk - {world_name}", size, filter, log)
    else:
        is_headless = bool(getattr(frontend, "headless", False))
        if hasattr(frontend, "keymap"):
            frontend.keymap = keymap  # with the world's own keys, for input and the help overlay
    loop = loop or LoopConfig()
    ticks = loop.max_ticks
    if is_headless and ticks is None and source is None:
        ticks = 200
        log(f"headless with no --ticks: running {ticks} ticks")
    config = replace(loop, max_ticks=ticks, realtime=loop.realtime if is_headless else True,
                     tick_thread=not is_headless)  # the window presents while a tick computes
    game = Game(world, frontend, config, input=InputAccumulator.for_keymap(keymap), source=source,
                world_name=world_name, log=log)
    t0 = time.perf_counter()
    code = 0
    with stop_signals():
        try:
            stats = game.run()  # its recording is closed on the way out, however the run ends
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM/SIGHUP (Interrupted)
            signum = getattr(e, "signum", signal.SIGINT)
            code = 128 + int(signum)
            log(f"interrupted ({signal.Signals(signum).name})")
            stats = game.stats
        finally:
            frontend.close()
            world.close()
    wall = time.perf_counter() - t0
    summary = run_stats_dict(stats) | {"world": world_name, "headless": is_headless, "wall_s": round(wall, 3),
                                        "mean_ticks_per_s": round(stats.ticks / max(wall, 1e-9), 2)}
    log(json.dumps(summary))
    if summary_json is not None:
        try:
            summary_json.parent.mkdir(parents=True, exist_ok=True)
            summary_json.write_text(json.dumps(summary, indent=2))
        except OSError as e:  # checked before the run (play.py); the disk can still fill up meanwhile
            print(f"error: could not write the summary to {summary_json}: {e.strerror or e}", file=sys.stderr)
            return code or 1
    return code


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) turned into the exception Ctrl-C raises, so the run stops the same
    way: the loop unwinds, the recording is closed and marked complete, the exit code is 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)):
    """Within the block, the first of `signals` raises Interrupted in the main thread; any more while the run
    winds down (closing its recording) are ignored with a note, so a second Ctrl-C cannot cut the close short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    state = {"stopping": False}

    def handler(signum: int, frame: Any) -> None:
        if state["stopping"]:
            print(f"({signal.Signals(signum).name}: already stopping, closing the recording)", file=sys.stderr)
            return
        state["stopping"] = True
        raise Interrupted(signum)

    previous = {}
    for s in signals:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            previous[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def fail(message: str, code: int = 2) -> int:
    """Print an error for a person (no traceback) and return an exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code
