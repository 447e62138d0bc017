"""Play a recording back, or verify it by re-simulating its actions on the world that made it.

    python -m engine.replay DIR                 # in the window at the recorded pace (headless when there is no display)
    python -m engine.replay DIR --speed 2       # twice as fast
    python -m engine.replay DIR --headless      # print a summary
    python -m engine.replay DIR --verify        # re-simulate; exit 0 only when the frames match

`--verify` rebuilds the recorded world from meta.yaml (name + config), resets it with the recorded seeds
and steps the recorded actions. Deterministic worlds must match bit for bit (RGB, and depth when
recorded) when the recording notes the library and renderer versions this machine has; a recording made
with other versions (a dream recorded on another machine) is compared by PSNR instead, and the output says
so. Other worlds are always compared by PSNR. Where PSNR is used, every frame must reach `--min-psnr`
(default 30 dB). A recording may name only
registered worlds: one made in your own `module:Class` world is verified with `--world module:Class`
(you name the code to run, not the file you were given).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.action import Action
from engine.cli import Parser, number
from engine.image import PSNR_CAP_DB, psnr
from engine.recording import META_FILE, Recording, RecordingError, RecordingMeta
from engine.world import Observation, World, WorldNotFoundError, make_world, make_world_from_file


COMMAND_SHOWN_STEPS = 40  # how long a replay shows a recorded world command (M, Tab, ...) in the HUD


class ReplayWorld(World):
    """A recording as a World: `step` ignores its action and returns the next recorded observation."""

    name = "replay"
    deterministic = True

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self.recording = Recording(path)
        self.position = 0
        self._said, self._said_until = "", 0

    @property
    def config(self) -> dict[str, Any]:
        return {"path": self.path}

    restart_text = "the recording again, from its first frame"  # what R says (the seed means nothing here)

    def reset(self, seed: int = 0) -> Observation:
        self.position = 0
        self._said, self._said_until = "", 0
        return self._current()

    def step(self, action: Action) -> Observation:
        if self.position + 1 < len(self.recording):
            self.position += 1
        rec = self.recording[self.position]
        obs = rec.obs
        # The world commands the player gave before this step, shown for COMMAND_SHOWN_STEPS steps (the frames already
        # show their effect).
        if rec.commands:
            self._said, self._said_until = ", ".join(rec.commands), self.position + COMMAND_SHOWN_STEPS
        said = f"  command: {self._said}" if self._said and self.position < self._said_until else ""
        obs.info = dict(obs.info, hud=f"replay {self.position + 1}/{len(self.recording)}{said}")
        return obs

    def _current(self) -> Observation:
        return self.recording[self.position].obs

    @property
    def finished(self) -> bool:
        return self.position + 1 >= len(self.recording)


class RecordedActions:
    """The recorded actions as an action source (so a replay in the window shows the same HUD input)."""

    name = "replay"

    def __init__(self, recording: Recording) -> None:
        self.recording, self.i = recording, 0

    def reset(self, seed: int) -> None:
        self.i = 0

    def next(self, obs: Observation) -> Action | None:
        self.i += 1
        if self.i >= len(self.recording):
            return None
        return self.recording[self.i].action or Action()


@dataclass
class VerifyResult:
    steps: int
    identical_rgb: int
    identical_depth: int | None
    min_psnr: float
    mean_psnr: float
    max_pose_error_m: float
    first_mismatch: int | None
    matched: bool
    deterministic: bool
    truncated: bool
    # "bit-exact" (a deterministic world, made with this machine's versions) or "psnr" (>= min_psnr dB per frame)
    compared: str = "psnr"
    # software versions (engine.recording.software_versions) the recording noted that differ here: {key: [there, here]}
    versions_differ: dict[str, list[str]] | None = None
    threshold_db: float | None = None

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        for k in ("min_psnr", "mean_psnr"):
            d[k] = None if d[k] >= PSNR_CAP_DB else round(d[k], 3)  # None: every frame identical
        return d


def recorded_world(recording: Recording, world_name: str | None = None) -> World:
    """A fresh copy of the world `recording` was made in, from its meta.yaml: a registered world only
    (a shared recording must not run code), unless the caller names the world (`world_name`, trusted)."""
    meta = recording.meta
    if world_name is not None:
        return make_world(world_name, **meta.world_config)
    source = str(Path(recording.path) / META_FILE)
    hint = (f"If you trust this recording, name its world on the command line: "
            f"python -m engine.replay {recording.path} --verify --world {meta.world}")
    return make_world_from_file(meta.world, meta.world_config, source, hint)


def model_differences(meta: RecordingMeta, world: World) -> list[str]:
    """Why a model world may dream otherwise than when it was recorded: other weights, or other model.yaml settings."""
    out = []
    for what, recorded, here in (("weights", meta.model_hash, getattr(world, "model_hash", None)),
                                 ("model.yaml settings", meta.extra.get("model_settings_hash"),
                                  getattr(world, "model_settings_hash", None))):
        if recorded and here and recorded != here:
            out.append(f"recorded with {what} {str(recorded)[:16]}, replayed with {here}: frames may differ")
    return out


# World commands that only write files (they change no frame): not repeated when re-simulating.
SIDE_EFFECT_COMMANDS = ("save_memory",)


def apply_commands(world: World, commands: list[str]) -> list[str]:
    """Give `world` the recorded world commands of a step (those it declares); returns its replies."""
    handler = getattr(world, "command", None)
    declared = getattr(world, "commands", None) or {}
    replies = []
    for name in commands:
        if name in declared and name not in SIDE_EFFECT_COMMANDS and callable(handler):
            replies.append(str(handler(name) or ""))
    return replies


# Software noted in a recording that does not change its pixels (the OS string names the kernel build).
VERSION_KEYS_IGNORED = ("platform",)


def version_differences(recorded: dict[str, Any]) -> dict[str, list[str]]:
    """The libraries and renderers `recorded` (a recording's meta.software) names at other versions than this
    process has now (call it after re-simulating, so torch and the GL contexts in use are noted)."""
    from engine.recording import software_versions

    here = software_versions()
    return {k: [str(v), str(here[k])] for k, v in sorted((recorded or {}).items())
            if k not in VERSION_KEYS_IGNORED and k in here and str(here[k]) != str(v)}


def verify(recording: Recording, min_psnr: float = 30.0, world: World | None = None,
           progress: Callable[[int, int], None] | None = None) -> VerifyResult:
    """Re-simulate `recording` on a fresh copy of its world (`recorded_world`) and compare every saved frame.

    A deterministic world must match bit for bit when the recording was made with the library and renderer
    versions this machine has; when the recording notes others (a dream recorded elsewhere: CPU matmuls and
    Mesa differ across builds), every frame must instead reach `min_psnr` dB, and the result says so
    (`compared`, `versions_differ`). Other worlds are always compared by PSNR. `progress(done, total)` is called
    after every step (the command line prints a line every few seconds)."""
    meta = recording.meta
    world = world or recorded_world(recording)
    psnrs: list[float] = []
    same_rgb = same_depth = 0
    pose_err = 0.0
    first_bad: int | None = None
    exact: list[bool] = []
    try:
        obs: Observation | None = None
        for i in range(len(recording)):
            rec = recording[i]
            if rec.reset:
                obs = world.reset(int(rec.seed))
            elif i == 0:
                prefix = recording.prefix
                if prefix is None:
                    raise RecordingError(f"{recording.path}: the first row is not a reset and no prefix was saved")
                obs = world.reset(prefix[0])
                toggled = recording.prefix_commands
                for k, a in enumerate(prefix[1]):
                    apply_commands(world, toggled.get(k, []))  # what the player toggled before recording began
                    obs = world.step(a)
            else:
                apply_commands(world, rec.commands)  # what the player toggled (memory, view) before this step
                obs = world.step(rec.action or Action())
            p = float(psnr(obs.rgb, rec.obs.rgb))
            psnrs.append(p)
            rgb_ok = bool(np.array_equal(obs.rgb, rec.obs.rgb))
            same_rgb += rgb_ok
            depth_ok = True
            if rec.obs.depth is not None and obs.depth is not None:
                depth_ok = bool(np.array_equal(obs.depth, rec.obs.depth, equal_nan=True))  # the same NaN is the same
                same_depth += depth_ok
            if rec.obs.cam_to_world is not None and obs.cam_to_world is not None:
                pose_err = max(pose_err, float(np.linalg.norm(obs.cam_to_world[:3, 3] - rec.obs.cam_to_world[:3, 3])))
            exact.append(rgb_ok and depth_ok)
            if progress is not None:
                progress(i + 1, len(recording))
    finally:
        world.close()
    differ = version_differences(meta.software)
    bit_exact = bool(meta.deterministic and not differ)
    for i, (same, p) in enumerate(zip(exact, psnrs)):
        if not (same if bit_exact else p >= min_psnr):
            first_bad = i
            break
    finite = [p for p in psnrs if p < PSNR_CAP_DB]
    return VerifyResult(
        steps=len(recording),
        identical_rgb=same_rgb,
        identical_depth=same_depth if meta.has_depth else None,
        min_psnr=min(psnrs) if psnrs else PSNR_CAP_DB,
        mean_psnr=(sum(finite) / len(finite)) if finite else PSNR_CAP_DB,
        max_pose_error_m=pose_err,
        first_mismatch=first_bad,
        matched=first_bad is None and len(recording) > 0,
        deterministic=meta.deterministic,
        truncated=recording.truncated,
        compared="bit-exact" if bit_exact else "psnr",
        versions_differ=differ,
        threshold_db=None if bit_exact else float(min_psnr),
    )


def _every_few_seconds(seconds: float = 5.0) -> Callable[[int, int], None]:
    """A verify progress callback that prints `verify: k/N steps` to stderr at most every `seconds`."""
    last = [time.monotonic()]

    def say(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= seconds and done < total:
            last[0] = now
            print(f"verify: {done}/{total} steps re-simulated", file=sys.stderr, flush=True)
    return say


def recorded_pace(recording: Recording) -> float:
    """Ticks per second at which the session was played: the ticks over the time they took (gaps of a second or more,
    a pause, left out), never above the tick rate (a headless run flat out has no pace of its own)."""
    times = [float(row["time"]) for row in recording.rows if "time" in row]
    gaps = [b - a for a, b in zip(times, times[1:]) if 0.0 < b - a < 1.0]
    rate = recording.meta.tick_rate
    return rate if not gaps else min(rate, len(gaps) / sum(gaps))


def _build_errors() -> tuple[type[BaseException], ...]:
    """What rebuilding a recorded world fails with that is the recording's or the user's doing (one line, exit 2)."""
    errors: tuple[type[BaseException], ...] = (WorldNotFoundError, TypeError, ValueError, RecordingError)
    checkpoint = sys.modules.get("worldmodel.checkpoint")  # evaluated after the failure: loaded if it was a dream
    return errors + ((checkpoint.CheckpointError,) if checkpoint is not None else ())


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m engine.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("recording", type=Path, help="a recording directory")
    parser.add_argument("--headless", action="store_true", help="no window: print a summary")
    parser.add_argument("--verify", action="store_true", help="re-simulate the actions and compare the frames")
    parser.add_argument("--min-psnr", type=number(0, math.inf), default=30.0,
                        help="--verify: the PSNR (dB) every frame must reach where frames are not compared bit for "
                             "bit: worlds that are not deterministic, and recordings made with other library or "
                             "renderer versions than this machine's (default: 30)")
    parser.add_argument("--realtime", action="store_true", help="headless: pace as in the window (default: flat out)")
    parser.add_argument("--speed", type=number(0.01, 100), default=1.0,
                        help="playback speed relative to the pace it was recorded at (default 1; 2 = twice as fast; 0.01-100)")
    parser.add_argument("--world", default=None, metavar="NAME",
                        help="--verify: rebuild this world (a name or module:Class you trust) instead of meta.yaml's")
    args = parser.parse_args(argv)
    try:
        rec = Recording(args.recording)
    except RecordingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if rec.truncated:
        print(f"note: {args.recording} was cut short (status {rec.meta.status!r}); "
              f"{len(rec)} of {len(rec.rows)} logged steps have saved frames", file=sys.stderr)
    if args.verify:
        try:
            world = recorded_world(rec, args.world)
        except _build_errors() as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for note in model_differences(rec.meta, world):
            print(f"note: {note}")
        try:
            result = verify(rec, args.min_psnr, world, progress=_every_few_seconds())
        except RecordingError as e:  # a damaged row or frame chunk found on the way
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(json.dumps(result.to_json(), indent=2))
        if result.deterministic and result.versions_differ:
            where = ", ".join(f"{k} {a} there, {b} here" for k, (a, b) in result.versions_differ.items())
            print(f"note: recorded with other versions ({where}): compared by PSNR >= {args.min_psnr:g} dB per frame "
                  f"(--min-psnr), not bit for bit")
        lost = len(rec.rows) - result.steps  # logged steps without saved frames (a session cut short)
        verdict = ("PARTIAL MATCH" if lost else "MATCH") if result.matched else \
            f"MISMATCH (first at step {result.first_mismatch})"
        depth = "" if result.identical_depth is None else f", {result.identical_depth}/{result.steps} depth maps"
        print(f"{verdict}: {result.identical_rgb}/{result.steps} frames identical{depth}, min PSNR {result.min_psnr:.2f} dB"
              + (f"; {lost} logged step(s) at the end have no saved frames and were not compared" if lost else ""))
        return 0 if result.matched else 1
    from engine.app import run_world  # the same runner as play.py, with the recording as the world
    from engine.game import LoopConfig

    pace = recorded_pace(rec)
    rate = pace * args.speed
    print(f"replaying {len(rec)} frames of {rec.meta.world} at {rate:.3g} ticks/s "
          f"(recorded at {pace:.3g}{'' if args.speed == 1 else f', --speed {args.speed:g}'})")
    world = ReplayWorld(str(args.recording))
    # No tick limit: the recorded actions end the run (in a window: the last frame stays, with the end notice).
    loop = LoopConfig(tick_rate=rate, realtime=args.realtime or not args.headless, seed=0,
                      end_message=f"end of the recording ({len(rec)} frames): Esc quits, R plays it again")
    return run_world(world, f"replay:{rec.meta.world}", loop, headless=args.headless, source=RecordedActions(rec))


if __name__ == "__main__":
    sys.exit(main())
