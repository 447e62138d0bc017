"""Engine costs, without any world cost: loop overhead per tick, present ms at 640x640, recording ms per tick.

    python bench/bench_engine.py            # writes bench/results/engine.json

Timings are medians of repeats on this machine; the loop runs headless as fast as it can.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import Action, Observation, World  # noqa: E402
from engine.game import Game, HeadlessFrontend, Hud, LoopConfig, LoopStats  # noqa: E402
from engine.recording import RecordingMeta, RecordingWriter  # noqa: E402


class NullWorld(World):
    """Returns the same pre-made observation: measures the loop, not a world."""

    name = "null"
    deterministic = True

    def __init__(self, size: int = 64) -> None:
        rng = np.random.default_rng(0)
        self.obs = Observation(rgb=rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
                               depth=rng.random((size, size), dtype=np.float32) * 10,
                               cam_to_world=np.eye(4), K=np.eye(3))

    def reset(self, seed: int) -> Observation:
        return self.obs

    def step(self, action: Action) -> Observation:
        return self.obs


def loop_overhead_us(ticks: int = 20000, repeats: int = 5) -> float:
    results = []
    for _ in range(repeats):
        game = Game(NullWorld(), HeadlessFrontend(), LoopConfig(realtime=False, max_ticks=ticks), log=lambda s: None)
        t0 = time.perf_counter()
        game.run()
        results.append((time.perf_counter() - t0) / ticks * 1e6)
    return statistics.median(results)


def present_ms(sizes: tuple[int, ...], window: int = 640, frames: int = 200) -> dict[str, float | None]:
    """Median ms of WindowFrontend.present (texture upload + quad + HUD + finish) per frame size."""
    os.environ["SDL_VIDEODRIVER"] = os.environ.get("BENCH_SDL_VIDEODRIVER", "offscreen")
    from engine.input import Keymap
    from engine.window import DisplayError, WindowFrontend

    try:
        fe = WindowFrontend(Keymap.load(), size=(window, window), capture_mouse=False)
    except DisplayError as e:
        print(f"present: no window possible here ({e})")
        return {f"{s}x{s}_frame": None for s in sizes}
    out: dict[str, float | None] = {}
    hud = Hud(world="null", stats=LoopStats(), paused=False, recording=False)
    for size in sizes:
        obs = NullWorld(size).obs
        times = []
        for i in range(frames):
            obs.rgb[0, 0, 0] = i % 255  # a new frame each time: the upload is part of the cost
            t0 = time.perf_counter()
            fe.present(obs, hud)
            fe.ctx.finish()
            times.append((time.perf_counter() - t0) * 1e3)
        out[f"{size}x{size}_frame"] = round(statistics.median(times[10:]), 3)
    fe.close()
    return out


def record_ms(size: int, video: bool, ticks: int = 100, tick_rate: float = 20.0) -> dict[str, float]:
    """Recording the plane world's moving frames: game-thread ms per write when paced at the tick rate,
    and the background's wall time per tick when writing as fast as possible (throughput)."""
    from engine.plane import PlaneWorld

    world = PlaneWorld(width=size, height=size)
    obs_list = [world.reset(0)] + [world.step(Action(forward=True, yaw=2.0)) for _ in range(ticks)]
    result: dict[str, float] = {}
    for paced in (True, False):
        with tempfile.TemporaryDirectory() as d:
            rec = RecordingWriter(Path(d) / "r", RecordingMeta("plane", world.config, 0, tick_rate), video=video)
            rec.write(obs_list[0], None, reset=True, seed=0)
            fg = []
            t_all = time.perf_counter()
            for obs in obs_list[1:]:
                t0 = time.perf_counter()
                rec.write(obs, Action(forward=True, yaw=2.0))
                fg.append((time.perf_counter() - t0) * 1e3)
                if paced:
                    time.sleep(max(0.0, 1.0 / tick_rate - (time.perf_counter() - t0)))
            rec.close()
            total = (time.perf_counter() - t_all) / ticks * 1e3
            size_kb = sum(p.stat().st_size for p in (Path(d) / "r").rglob("*") if p.is_file()) / 1024
        if paced:
            result |= {"realtime_write_ms_median": round(statistics.median(fg), 4),
                       "realtime_write_ms_p99": round(float(np.percentile(fg, 99)), 3)}
        else:
            result |= {"throughput_ms_per_tick": round(total, 3), "kb_per_tick": round(size_kb / (ticks + 1), 2)}
    return result


def main() -> None:
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:
        pass
    out = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "loop_overhead_us_per_tick": round(loop_overhead_us(), 2),
        "present_ms_640x640": present_ms((64, 128, 256)),
        "record_ms_per_tick": {f"{s}x{s}_{'video' if v else 'novideo'}": record_ms(s, v) for s in (64, 128) for v in (False, True)},
        "notes": "loop overhead: headless Game with a world that returns a fixed observation (no world cost). "
                 "present: WindowFrontend.present incl. texture upload, HUD and ctx.finish(), SDL offscreen driver "
                 "(Mesa llvmpipe). record: the plane world's frames; RecordingWriter.write in the game thread "
                 "paced at 20 ticks/s (realtime_*), and wall ms per tick writing as fast as possible including "
                 "background compression, video and close (throughput).",
    }
    path = ROOT / "bench" / "results" / "engine.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
