"""The fixed-time-step game loop that drives any World: clock → input → step → record → present.

`Game.frame()` is the whole loop body, in that fixed order. Pause, single-step, reset and recording
are state on the `Game`, changed by commands from the frontend (a window or nothing at all). The
frontend only gathers input and shows frames; it never steps the world.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from engine.action import ActionLog
from engine.clock import FixedStep
from engine.files import io_reason, save_png
from engine.input import LOOK_KEYS, WORLD_COMMAND_HELP, InputAccumulator
from engine.recording import RecordingError, RecordingMeta, RecordingWriter
from engine.script import ActionSource
from engine.world import Observation, World, validate_observation


@dataclass
class LoopConfig:
    """How the loop runs; fixed for a run."""

    tick_rate: float = 20.0
    max_catchup: int = 4  # ticks run per displayed frame at most before the backlog is dropped
    realtime: bool = True  # False: run ticks as fast as possible (headless)
    max_ticks: int | None = None  # stop after this many ticks (None: until quit)
    seed: int = 0
    record_dir: Path | None = None  # record from the start into this directory
    recordings_root: Path = Path("recordings")  # where F5 puts new recordings
    screenshots_root: Path = Path("screenshots")
    video: bool = True
    model_hash: str | None = None
    # In a window: when the action source runs out, keep the last frame with this notice (Esc quits, R starts
    # again) instead of closing. Headless runs print it and stop.
    end_message: str | None = None
    # Frames between ticks (engine/warp.py): in a window, each displayed frame shows the latest frame reprojected to
    # the camera the player's input gives now, for worlds whose frames have depth and a pose (F4 toggles it).
    warp: bool = True
    # Step the world on a worker thread, so the window keeps presenting (and warping) while a tick computes. Ticks
    # stay strictly one after another, each with the input taken when it starts: what is recorded is unchanged.
    tick_thread: bool = False


def short_path(path: Path | str) -> str:
    """A path as a person would type it from here: relative to the working directory when inside it."""
    p, here = os.path.abspath(path), os.path.abspath(os.getcwd())  # abspath: symlinks (a venv's python) stay
    return os.path.relpath(p, here) if p == here or p.startswith(here + os.sep) else str(path)


def file_safe(name: str) -> str:
    """A world name (maybe `module:Class`) as part of a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "world"


LOOK_HELD = frozenset(LOOK_KEYS)
MOVE_HELD = frozenset(("forward", "back", "left", "right"))
DROP_WINDOW_S = 5.0  # the HUD's "dropped" warning counts the ticks dropped this many seconds back, then clears
LATENCY_FRESH_S = 1.0  # the HUD shows the latency of input shown on screen within this many seconds, else "-"


class _Ema:
    """Exponential moving average, for HUD figures that should not flicker."""

    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha, self.value = alpha, None

    def add(self, x: float) -> None:
        self.value = x if self.value is None else self.value + self.alpha * (x - self.value)

    def __call__(self) -> float:
        return float("nan") if self.value is None else self.value


@dataclass
class LoopStats:
    """What the HUD shows and a run reports."""

    ticks: int = 0
    frames: int = 0
    dropped: int = 0
    dropped_recent: int = 0  # of those, in the last DROP_WINDOW_S seconds (what the HUD warns about)
    ticks_per_s: float = 0.0
    fps: float = 0.0
    step_ms: float = float("nan")
    present_ms: float = float("nan")
    latency_ms: float = float("nan")  # earliest input of a tick -> the frame showing that tick presented
    look_latency_ms: float = float("nan")  # a look input -> the first frame turned by it (a warped one, or its tick's)
    look_latency_median_ms: float = float("nan")  # of every look input of the run (set when it ends)
    wall_s: float = 0.0


@dataclass
class Hud:
    """Everything a frontend needs to draw the overlay."""

    world: str
    stats: LoopStats
    paused: bool
    recording: bool
    message: str = ""
    world_text: str = ""
    show_help: bool = False
    seed: int | None = None  # the episode's seed (R starts the next one with a new seed)
    episode_tick: int | None = None  # ticks since the episode's reset
    tick_rate: float = 20.0


class Frontend(Protocol):
    """A window, or nothing (headless). It gathers input and shows frames."""

    def poll(self, inp: InputAccumulator, now: float) -> list[str]:
        """Feed input events into `inp`; return the commands issued since the last poll."""
        ...

    def present(self, obs: Observation, hud: Hud) -> None:
        """Show the latest frame. A frontend with `warps = True` also takes `rel` (engine.warp.relative), the frame
        seen from the player's current view."""
        ...

    def screenshot(self, path: Path) -> list[Path]:
        """Save what is shown; return the files written."""
        ...

    def close(self) -> None: ...


class HeadlessFrontend:
    """No window: no input, nothing shown. Screenshots save the raw frame."""

    headless = True  # nobody sees the screen: a run that ends, ends (no end notice to hold)

    def __init__(self) -> None:
        self.last: Observation | None = None

    def poll(self, inp: InputAccumulator, now: float) -> list[str]:
        return []

    def present(self, obs: Observation, hud: Hud) -> None:
        self.last = obs

    def screenshot(self, path: Path) -> list[Path]:
        if self.last is None:
            return []
        save_png(self.last.rgb, path)
        return [path]

    def close(self) -> None:
        pass


class Game:
    """One run of a world: owns the loop state (pause, recording, stats); see `frame()`."""

    def __init__(
        self,
        world: World,
        frontend: Frontend,
        config: LoopConfig,
        input: InputAccumulator | None = None,
        source: ActionSource | None = None,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        world_name: str | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.world, self.frontend, self.config = world, frontend, config
        self.input = input or InputAccumulator()
        self.source = source
        self.clock, self.sleep, self.log = clock, sleep, log
        self.world_name = world_name or world.name
        self.fixed = FixedStep(config.tick_rate, config.max_catchup)
        self.stats = LoopStats()
        self.running = True
        self.paused = False
        self.step_once = False
        self.show_help = False
        self.ended = False  # the action source ran out and the window holds the last frame (end_message)
        self.message = ""
        self._message_until = 0.0
        self.recorder: RecordingWriter | None = None
        self.episode_seed = config.seed
        self.episode_actions = ActionLog()  # since the last reset: lets a mid-episode recording be verified
        self.episode_commands: dict[int, list[str]] = {}  # world commands given before episode step k
        self._step_ms, self._present_ms, self._latency = _Ema(), _Ema(), _Ema()
        self._pending_input: float | None = None  # earliest input not yet shown on screen
        self._latency_at = -1e9  # when an input was last shown on screen (the HUD's latency is "-" once stale)
        self._tick_commands: list[str] = []  # world commands since the last tick, recorded with the next one
        self._last_present = -1e9
        self._t_start = clock()
        self._rate_window: list[float] = []  # tick times in the last second
        self._drops: list[tuple[float, int]] = []  # (when, how many) ticks were dropped in the last DROP_WINDOW_S
        self._frame_times: list[float] = []  # present times in the last second
        self.warp = config.warp and bool(getattr(frontend, "warps", False)) and source is None
        self._look_latency = _Ema()
        self._look_taken: float | None = None  # look input a tick took (shown with that tick, without the warp)
        self._look_ticked: float | None = None  # ... once that tick has ended
        self.look_latencies: list[float] = []  # every look input's latency (ms), for benchmarks
        self._prev_c2w: np.ndarray | None = None  # the camera before the latest frame's (its step, for dead reckoning)
        self._tick_started = -1e9  # when the latest tick took its input
        self._owed = 0  # ticks due that wait for the one in flight (tick_thread)
        self._unshown = False  # a tick ended whose frame is not yet presented
        self._inflight: tuple[Any, Any, float | None, float] | None = None  # (future, action, first input, start)
        self._worker = None
        if config.tick_thread:
            from concurrent.futures import ThreadPoolExecutor

            self._worker = ThreadPoolExecutor(1, thread_name_prefix="tick")
        self.obs = self._reset(config.seed)
        if config.record_dir is not None:
            self.start_recording(config.record_dir)

    # -- the loop ----------------------------------------------------------------------------------

    def run(self) -> LoopStats:
        """Run frames until quit, `max_ticks`, or the action source runs out."""
        try:
            if not getattr(self.frontend, "headless", False):
                self._present()  # the episode's first view (tick 0, a real frame for the dream) before any tick
            while self.running:
                self.frame()
        finally:
            try:
                self._collect(block=True)  # the tick in flight ends (and is recorded) before the recording closes
            finally:
                if self._worker is not None:
                    self._worker.shutdown(wait=True)
                self.stop_recording()
        self.stats.wall_s = self.clock() - self._t_start
        if self.look_latencies:
            self.stats.look_latency_median_ms = float(np.median(self.look_latencies))
        return self.stats

    def frame(self) -> None:
        """One displayed frame: clock → input → step (0..max_catchup ticks) → record → present."""
        now = self.clock()
        ran = self._collect()
        held = set(self.input.held)  # the keys down through the time since the last frame (before this poll)
        if held & LOOK_HELD:
            self.input.look_at(now)  # a held turn key is look input sampled now
        commands = self.frontend.poll(self.input, now)
        if commands:
            ran += self._collect(block=True)  # commands act between ticks
        for command in commands:
            self.command(command)
        if self._worker is not None:
            if self._inflight is None:
                due = self._owed + self._ticks_due(now, held)
                if due > max(1, self.config.max_catchup):
                    self._drop(due - max(1, self.config.max_catchup), now, held)
                    due = max(1, self.config.max_catchup)
                if due and self.running:
                    self._start_tick(share=1.0 / due)
                self._owed = max(0, due - 1)
        else:
            due = self._ticks_due(now, held)
            for i in range(due):
                if i:  # several ticks before the next displayed frame: sample the input again before each one
                    for command in self.frontend.poll(self.input, self.clock()):
                        self.command(command)
                if not self.running or (i and self.paused):
                    break
                # Each tick takes its share of the mouse motion gathered so far, so a turn is spread over the ticks.
                self.tick(share=1.0 / (due - i))  # steps the world and records the step
                ran += 1
        # Between ticks the frame has not changed, unless it is warped to the player's view: present what is new
        # (and the HUD, 4x a second). Warped frames come at most at the display rate (max_fps): presenting costs CPU
        # the tick needs; a tick landing between two display frames waits for the next.
        self._unshown = self._unshown or bool(ran)
        rel = self._view() if self.warp else None
        wanted = bool(self._unshown or commands or rel is not None or now - self._last_present >= 0.25)
        hz = getattr(self.frontend, "max_fps", None)
        display_due = not (self.warp and hz and self.config.realtime) or bool(commands) \
            or now - self._last_present >= 1.0 / hz - 1e-3
        if wanted and display_due:
            self._present(rel)
            self._unshown = False
        if self.config.realtime and self.running:
            self._pace(wanted)

    def _view(self) -> np.ndarray | None:
        """The latest frame's camera coordinates -> the player's view now (engine.warp): the look input since that
        frame's tick (the tick in flight's and what is gathered for the next), and, while a move key is held, the
        last tick's step carried on. None when the frame cannot be warped or the view is the frame's own camera."""
        from engine import warp

        obs = self.obs
        if not warp.can_warp(obs):
            return None
        yaw, pitch = self.input.pending_look()
        into_next = min(1.0, max(0.0, (self.clock() - self._tick_started) * self.config.tick_rate))
        ahead = into_next
        if self._inflight is not None:  # its action is taken but not yet in the frame
            action = self._inflight[1]
            yaw, pitch = yaw + float(action.yaw), pitch + float(action.pitch)
            ahead += 1.0
        turn = self.input.key_turn_speed * into_next  # a held turn key's part of the next tick so far
        held = self.input.held
        yaw += turn * (("turn_right" in held) - ("turn_left" in held))
        pitch += turn * (("look_up" in held) - ("look_down" in held))
        moving = bool(held & MOVE_HELD)
        step = None
        if moving and self._prev_c2w is not None:
            step = obs.cam_to_world[:3, 3] - self._prev_c2w[:3, 3]
        view = warp.view_pose(obs.cam_to_world, (yaw, pitch), step, ahead if moving else 0.0)
        rel = warp.relative(obs.cam_to_world, view)
        return None if warp.is_identity(rel) else rel

    def _pace(self, wanted: bool = True) -> None:
        """Sleep until the next tick is due or the frontend wants to poll input again (with frames between ticks and a
        frame to show: its next display frame), whichever is first; a tick in flight that lands sooner wakes the loop
        (to show it at once without frames between ticks; with them, to start the next tick on time)."""
        now = self.clock()
        wait = 1.0 / 60.0 if self.paused else self.fixed.time_to_next(now)
        poll_hz = getattr(self.frontend, "max_fps", None)
        display = None
        if poll_hz:
            display = self._last_present + 1.0 / poll_hz - now if self.warp and wanted else 1.0 / poll_hz
            wait = min(wait, display)
        if self._inflight is not None:  # nothing can start before it lands: wait for it, or for the next display frame
            from concurrent.futures import wait as wait_for

            timeout = display if display is not None else 1.0 / 60.0
            if timeout > 0:  # a display frame already due is presented at once, not after the tick
                wait_for([self._inflight[0]], timeout=timeout)
        elif wait > 0:
            self.sleep(wait)

    def _ticks_due(self, now: float, held: set[str]) -> int:
        """Ticks to run this frame; ticks dropped since the last frame carry the turn of the keys `held` through them."""
        if self.paused:
            due = 1 if self.step_once else 0
            self.step_once = False
            return due
        if not self.config.realtime:
            return 1
        before = self.fixed.dropped
        due = self.fixed.advance(now)
        self._drop(0, now, held, self.fixed.dropped - before)
        return due

    def _drop(self, ticks: int, now: float, held: set[str], counted: int = 0) -> None:
        """`ticks` more ticks dropped now (besides `counted`, which the clock dropped already): the HUD's count of the
        last seconds, and the turn of the keys `held` carried through them."""
        if ticks:
            self.fixed.dropped += ticks
        if ticks + counted:
            self._drops.append((now, ticks + counted))
        while self._drops and self._drops[0][0] < now - DROP_WINDOW_S:
            self._drops.pop(0)
        self.stats.dropped_recent = sum(n for _, n in self._drops)
        # a turn key held through the dropped ticks turns through them too
        self.input.carry(ticks + counted, held)
        self.stats.dropped = self.fixed.dropped

    def tick(self, share: float = 1.0) -> None:
        """Take the tick's action (`share`: its part of the mouse motion so far), step the world, record the step."""
        begun = self._begin_tick(share)
        if begun is None:
            return
        action, first_input, t0 = begun
        self._end_tick(self.world.step(action), action, first_input, t0, self.clock())

    def _begin_tick(self, share: float):
        """The next tick's action and the time of its earliest input; None when the run stops instead."""
        if self.config.max_ticks is not None and self.stats.ticks >= self.config.max_ticks:
            self.running = False
            return None
        action, first_input = self.input.take(share)
        if first_input is None and self.input.held:  # a held key is input sampled now: its frame's latency counts too
            first_input = self.clock()
        if self.source is not None:
            scripted = self.source.next(self.obs)
            if scripted is None:
                if not self.ended:
                    self.log(f"the {self.source.name} finished after {self.stats.ticks} ticks")
                self._source_ended()
                return None
            action = scripted
        t0 = self.clock()
        self._tick_started = t0
        if not self._warps_now():
            taken = self.input.take_look_time()
            self._look_taken = taken if self._look_taken is None else self._look_taken
        return action, first_input, t0

    def _warps_now(self) -> bool:
        from engine.warp import can_warp

        return self.warp and can_warp(self.obs)

    def _start_tick(self, share: float) -> None:
        """Begin a tick on the worker thread (tick_thread); `_collect` ends it."""
        begun = self._begin_tick(share)
        if begun is None:
            return
        action, first_input, t0 = begun

        def step():
            obs = self.world.step(action)
            return obs, self.clock()

        self._inflight = (self._worker.submit(step), action, first_input, t0)

    def _collect(self, block: bool = False) -> int:
        """End the tick in flight if it is done (or, `block`, once it is): 1 if one ended. Its exception, if any,
        is raised here, in the loop's thread."""
        if self._inflight is None or not (block or self._inflight[0].done()):
            return 0
        future, action, first_input, t0 = self._inflight
        self._inflight = None
        obs, t1 = future.result()
        self._end_tick(obs, action, first_input, t0, t1)
        return 1

    def _end_tick(self, obs: Observation, action, first_input: float | None, t0: float, t1: float) -> None:
        obs = validate_observation(obs, self.world_name, self.obs.tick + 1)
        self._step_ms.add((t1 - t0) * 1e3)
        self._prev_c2w = self.obs.cam_to_world
        self.obs = obs
        self.episode_actions.append(action)
        commands, self._tick_commands = self._tick_commands, []
        if commands:  # given before this step: a recording started later replays them in its prefix
            self.episode_commands[len(self.episode_actions) - 1] = commands
        if self.recorder is not None:
            self.recorder.write(obs, action, commands=commands)
        if first_input is not None and self._pending_input is None:
            self._pending_input = first_input
        self.stats.ticks += 1
        self._rate_window.append(t1)
        if self._look_taken is not None and self._look_ticked is None:
            self._look_ticked, self._look_taken = self._look_taken, None

    def _source_ended(self) -> None:
        """Stop, or, in a window with an end message, hold the last frame and say so."""
        if self.config.end_message is None or getattr(self.frontend, "headless", False):
            if self.config.end_message is not None:
                self.log(self.config.end_message)
            self.running = False
            return
        self.paused = True
        self.fixed.pause()
        if not self.ended:
            self.ended = True
            self.say(self.config.end_message, seconds=float("inf"))

    def _present(self, rel: np.ndarray | None = None) -> None:
        t0 = self.clock()
        self._last_present = t0
        if t0 > self._message_until:
            self.message = ""
        self._update_rates(t0)
        if self._warps_now():  # the frame follows the view: it shows every look input gathered so far
            look_input = self.input.take_look_time()
        else:  # look input shows with the tick that took it
            look_input, self._look_ticked = self._look_ticked, None
        if rel is not None:
            self.frontend.present(self.obs, self.hud(), rel)
        else:
            self.frontend.present(self.obs, self.hud())
        t1 = self.clock()
        self._present_ms.add((t1 - t0) * 1e3)
        if look_input is not None:
            self._look_latency.add((t1 - look_input) * 1e3)
            self.look_latencies.append((t1 - look_input) * 1e3)
            if len(self.look_latencies) > 100_000:
                del self.look_latencies[:50_000]
        if self._pending_input is not None:
            if t1 - self._latency_at > LATENCY_FRESH_S:  # a new burst of input: do not blend with an old one
                self._latency = _Ema()
            self._latency.add((t1 - self._pending_input) * 1e3)
            self._latency_at = t1
            self._pending_input = None
        self.stats.frames += 1
        self.stats.step_ms, self.stats.present_ms, self.stats.latency_ms = self._step_ms(), self._present_ms(), self._latency()
        self.stats.look_latency_ms = self._look_latency()

    def _update_rates(self, now: float) -> None:
        # Ticks in the last second, so the HUD reads as a rate, not a lifetime average.
        cutoff = now - 1.0
        while self._rate_window and self._rate_window[0] < cutoff:
            self._rate_window.pop(0)
        span = min(1.0, max(now - self._t_start, 1e-6))
        self.stats.ticks_per_s = len(self._rate_window) / span
        self._frame_times.append(now)
        while self._frame_times and self._frame_times[0] < cutoff:
            self._frame_times.pop(0)
        self.stats.fps = len(self._frame_times) / span

    def hud(self) -> Hud:
        stats = self.stats
        if self.clock() - self._latency_at > LATENCY_FRESH_S:  # no input shown lately: no latency to show
            stats = dataclasses.replace(stats, latency_ms=float("nan"))
        return Hud(
            world=self.world_name,
            stats=stats,
            paused=self.paused,
            recording=self.recorder is not None,
            message=self.message,
            world_text=self._world_text(),
            show_help=self.show_help,
            seed=self.episode_seed,
            episode_tick=self.obs.tick,
            tick_rate=self.config.tick_rate,
        )

    def _world_text(self) -> str:
        """The observation's `info["hud"]`, plus live figures a world offers through `hud_extra()`
        (kept out of observations, which must depend on the seed and actions alone)."""
        text = str(self.obs.info.get("hud", ""))
        extra = getattr(self.world, "hud_extra", None)
        if callable(extra):
            text = f"{text}  {extra()}".strip()
        return text

    # -- commands (state changes, never steps of their own) -------------------------------------------

    def command(self, name: str) -> None:
        """Apply a frontend command: pause, step, reset, help, screenshot, record, quit, or a world command."""
        if name == "quit":
            self.running = False
        elif name == "pause":
            self.paused = not self.paused
            self.fixed.pause()
            self.say("paused (P resumes, . steps one tick)" if self.paused else "resumed")
        elif name == "step":
            if self.paused:
                self.step_once = True
            else:
                self.say("single-step works while paused (P)")
        elif name == "reset":
            # A new episode with a new seed: the next one after the current (`--seed` fixes the first).
            self.obs = self._reset(self.episode_seed + 1)
            if self.ended:  # a finished replay or script starts again
                self.ended = self.paused = False
                self.fixed.pause()
            # a world whose reset ignores the seed (a replay) says what R did in its own words
            self.say(getattr(self.world, "restart_text", None) or f"new episode, seed {self.episode_seed}")
        elif name == "help":
            self.show_help = not self.show_help
        elif name == "warp":
            if not getattr(self.frontend, "warps", False) or self.source is not None:
                self.say("frames between ticks need a window and your own input (not a replay or a script)")
            else:
                self.warp = not self.warp
                self.say("frames between ticks on: the last frame follows your view" if self.warp
                         else "frames between ticks off: the picture changes once a tick")
        elif name == "screenshot":
            stem = f"{file_safe(self.world_name)}-seed{self.episode_seed}-tick{self.obs.tick:06d}"
            try:
                files = self.frontend.screenshot(self.config.screenshots_root / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.png")
            except OSError as e:  # a full disk or an unwritable folder: said on the HUD, the session goes on
                self.say(f"screenshot not saved: {io_reason(e)}", seconds=6.0)
                return
            self.say(f"saved {', '.join(map(short_path, files))}" if files else "nothing to save yet")
        elif name == "record":
            if self.recorder is None:
                stamp = time.strftime("%Y%m%d-%H%M%S")
                # the world's name as a file name (a replayed recording's meta.yaml names it: never a path)
                try:
                    self.start_recording(self.config.recordings_root / f"{file_safe(self.world_name)}-{stamp}")
                except (OSError, RecordingError) as e:
                    self.recorder = None
                    self.say(f"recording not started: {io_reason(e)}", seconds=6.0)
            else:
                self.stop_recording()
        elif name in WORLD_COMMAND_HELP or name in (getattr(self.world, "commands", None) or {}):
            handler = getattr(self.world, "command", None)
            try:
                reply = handler(name) if callable(handler) else None
            except OSError as e:  # e.g. F6's memory save on a full disk: said on the HUD, the session goes on
                reply = f"{name.replace('_', ' ')} failed: {io_reason(e)}"
            if name in (getattr(self.world, "commands", None) or {}):
                self._tick_commands.append(name)  # recorded with the next tick, replayed before its step
            self.say(reply or self._cannot(name))
        elif name in ("filter", "hud", "release_mouse"):
            pass  # handled by the window itself
        else:
            raise ValueError(f"unknown command {name!r}")

    def _cannot(self, name: str) -> str:
        """What a world command would do, that this world does not do it, and what would make it work."""
        keys = (getattr(getattr(self.frontend, "keymap", None), "names", None) or {}).get(name)
        declared = getattr(self.world, "commands", None) or {}
        if not keys:  # a keymap not bound for this world (Keymap.for_world): the default key
            keys = [declared[name][0]] if name in declared else [WORLD_COMMAND_HELP[name][0]]
        key = "/".join(k.title() if len(k) > 1 else k.upper() for k in keys) if keys else name
        if name not in WORLD_COMMAND_HELP:  # a world's own command that cannot act now, and did not say why
            return f"{key} ({declared[name][1]}) cannot act now in {self.world_name}"
        _key, does, how = WORLD_COMMAND_HELP[name]
        return f"{key} ({does}) does nothing in {self.world_name}: try {how}"

    def say(self, text: str, seconds: float = 3.0) -> None:
        """Show a short message on the HUD (and in the log)."""
        self.message = text
        self._message_until = self.clock() + seconds
        self.log(text)

    def _reset(self, seed: int) -> Observation:
        self.episode_seed = seed
        self.episode_actions.close()  # its spill file, if a long episode made one
        self.episode_actions = ActionLog()
        self.episode_commands = {}
        if self.source is not None:
            self.source.reset(seed)
        obs = validate_observation(self.world.reset(seed), self.world_name, 0)
        self._prev_c2w = None
        if getattr(self, "recorder", None) is not None:
            self.recorder.write(obs, None, reset=True, seed=seed)
        return obs

    def start_recording(self, path: Path) -> None:
        """Record from the current observation on (mid-episode starts store the actions since reset)."""
        meta = RecordingMeta(
            world=self.world_name,
            world_config=dict(self.world.config),
            seed=self.episode_seed,
            tick_rate=self.config.tick_rate,
            deterministic=bool(getattr(self.world, "deterministic", False)),
            model_hash=self.config.model_hash,
            # how a model world dreams (its model.yaml settings), which the weights' hash does not cover
            extra={k: v for k in ("model_settings_hash",) if (v := getattr(self.world, k, None))},
        )
        at_reset = not len(self.episode_actions)
        prefix = None if at_reset else (self.episode_seed, self.episode_actions.array())
        self.recorder = RecordingWriter(path, meta, video=self.config.video, prefix=prefix,
                                        prefix_commands=None if at_reset else dict(self.episode_commands))
        self.recorder.write(self.obs, None, reset=at_reset, seed=self.episode_seed if at_reset else None)
        self.say(f"recording to {path}")

    def stop_recording(self) -> None:
        if self.recorder is not None:
            rec, self.recorder = self.recorder, None
            rec.close()
            where = short_path(rec.path)
            self.say(f"recording saved: {where} ({rec.steps} steps). Replay: {python_command()} -m engine.replay {where}")


def python_command() -> str:
    """How to run this Python from here, for the commands the engine prints: the interpreter's path when it is a
    virtual environment's that is not activated (`.venv/bin/python`), else `python` (`python3` where there is none)."""
    import shutil
    import sys

    in_venv = sys.prefix != sys.base_prefix
    active = os.environ.get("VIRTUAL_ENV")
    if in_venv and sys.executable and not (active and os.path.abspath(active) == os.path.abspath(sys.prefix)):
        return short_path(sys.executable)
    return "python" if shutil.which("python") or not shutil.which("python3") else "python3"


def run_stats_dict(stats: LoopStats) -> dict[str, Any]:
    """JSON-friendly summary of a run."""
    out = {}
    for k, v in stats.__dict__.items():
        out[k] = None if isinstance(v, float) and not np.isfinite(v) else (round(v, 3) if isinstance(v, float) else v)
    return out


__all__ = ["Game", "LoopConfig", "LoopStats", "Hud", "Frontend", "HeadlessFrontend"]
