"""Build a scene memory from a recording and write it as a 3DGS .ply for any splat viewer.

    python -m splat.export SOURCE --ply OUT.ply [--episode 0] [--budget 100000] [--subsample 2] [--every 1]

SOURCE is a recording directory (what `engine.rollout` or the game's recorder writes), or a directory holding
recordings (a rollout's output): then the first one, in name order, is used. Every `--every`-th frame of one episode
(`--episode`, counted from 0: episodes of one recording may be different levels) is inserted, with its depth, pose
and dynamic mask, into a SceneMemory at the recording's own resolution; the memory's Gaussians go to the .ply.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from engine.cli import Parser, integer
from engine.files import check_write_target, io_reason
from engine.recording import META_FILE, Recording, RecordingError
from splat.memory import MemoryConfig, SceneMemory
from splat.ply import write_ply


class ExportError(ValueError):
    """A recording that cannot be turned into a splat scene (no depth, no poses, no such episode)."""


def find_recording(source: Path) -> Path:
    """SOURCE itself when it is a recording, else the first recording directly under it."""
    if (source / META_FILE).exists():
        return source
    if source.is_dir():
        found = sorted(p.parent for p in source.glob(f"*/{META_FILE}"))
        if found:
            return found[0]
    raise ExportError(f"{source} is not a recording (no {META_FILE}) and holds none; pass a directory written by "
                      "python -m engine.rollout or the game's recorder")


def build_memory(recording: Recording, episode: int = 0, budget: int = 100000, subsample: int = 2,
                 every: int = 1) -> tuple[SceneMemory, int]:
    """Insert one episode's frames into a memory at the recording's resolution. Returns (memory, frames used)."""
    memory: SceneMemory | None = None
    current, used, tick = -1, 0, 0
    for step in recording:
        if step.reset:
            current += 1
            tick = 0
        else:
            tick += 1
        if current < episode:
            continue
        if current > episode:
            break
        obs = step.obs
        if obs.depth is None:
            raise ExportError(f"{recording.path} has no depth (row {step.index}); a splat scene needs depth per "
                              "frame: record a world that gives depth (e.g. the arena)")
        if obs.cam_to_world is None or obs.K is None:
            raise ExportError(f"{recording.path} has no camera pose or intrinsics (row {step.index}); a splat scene "
                              "needs cam_to_world and K per frame")
        if tick % every:
            continue
        if memory is None:
            h, w = obs.rgb.shape[:2]
            memory = SceneMemory(MemoryConfig(width=w, height=h, budget=budget, subsample=subsample))
        memory.insert(obs.rgb, obs.depth, obs.cam_to_world, obs.K, tick, obs.dynamic_mask)
        used += 1
    if memory is None:
        raise ExportError(f"{recording.path} has no episode {episode} (it has {current + 1}; count from 0)")
    return memory, used


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m splat.export", description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="a recording directory (or a directory of recordings)")
    p.add_argument("--ply", type=Path, required=True, help="output .ply path")
    p.add_argument("--episode", type=integer(0, 1_000_000), default=0, help="which episode of the recording (from 0)")
    p.add_argument("--budget", type=integer(1, 100_000_000), default=100000, help="most Gaussians kept")
    p.add_argument("--subsample", type=integer(1, 64), default=2, help="one Gaussian per NxN pixel block of a frame")
    p.add_argument("--every", type=integer(1, 1_000_000), default=1, help="insert every Nth frame")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        check_write_target(args.ply, "--ply")
        rec_dir = find_recording(args.source)
        recording = Recording(rec_dir)
        memory, used = build_memory(recording, args.episode, args.budget, args.subsample, args.every)
    except (ExportError, RecordingError, ValueError) as e:  # SharedFileError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        n = write_ply(args.ply, memory.gaussians)
    except OSError as e:
        print(f"error: writing {args.ply} failed ({io_reason(e)}); nothing was written there", file=sys.stderr)
        return 2
    print(f"{rec_dir}: {used} frames -> {n} Gaussians -> {args.ply} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
