"""The window as a player sees it: presented frames per second, mouse-look latency, tick rate and the dream's costs,
minute by minute of a scripted session, with frames between ticks (engine/warp.py) and without, in one run.

    python bench/bench_window.py                  # 10 minutes each way, the shipped dream: bench/results/window.json
    python bench/bench_window.py --minutes 2 --world arena

Runs under its own Xvfb (needs Xvfb and xdotool: install.sh installs them). The session is the same for both
paths: a loop of walking forward while looking around with the mouse, turning on the keys, and walking back, driven
by one `xdotool -` process reading commands from this bench. Per minute: distinct frames presented per second,
the median input-to-photon latency of look input (event time -> the first presented frame turned by it; without
frames between ticks, the tick that takes it and its present), ticks per second and dropped ticks, the world's step
time, and for the dream its scene memory's Gaussians and render + insert ms.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (seconds, xdotool commands) of one 20-second loop of the session: each step's commands, then wait
MOUSE_EVERY_S = 0.02


def session_loop() -> list[tuple[float, list[str], tuple[int, int] | None]]:
    """(duration s, commands at its start, mouse motion (dx, dy) px every MOUSE_EVERY_S during it or None)."""
    return [
        (4.0, ["keydown w"], (3, 0)),          # walk, looking right with the mouse
        (2.0, [], (-2, 1)),                    # walk, looking back left and down
        (0.5, ["keyup w"], None),
        (1.5, ["keydown e"], None),            # turn on the key
        (0.5, ["keyup e"], (0, -1)),
        (4.0, ["keydown w"], (-3, 0)),         # walk on, looking left
        (1.0, ["keydown q"], None),            # turn back while walking
        (2.5, ["keyup q"], (2, 0)),
        (3.0, ["keyup w", "keydown s"], (1, 0)),  # walk back
        (1.0, ["keyup s"], None),
    ]


def drive(xdo: subprocess.Popen, stop: threading.Event) -> None:
    """Play the session loop into `xdo` (xdotool reading commands from stdin) until `stop`."""
    def send(line: str) -> None:
        xdo.stdin.write(line + "\n")
        xdo.stdin.flush()

    while not stop.is_set():
        for seconds, commands, mouse in session_loop():
            for c in commands:
                send(c)
            end = time.perf_counter() + seconds
            while time.perf_counter() < end and not stop.is_set():
                if mouse is not None:
                    send(f"mousemove_relative -- {mouse[0]} {mouse[1]}")
                time.sleep(MOUSE_EVERY_S)
            if stop.is_set():
                break
    for key in ("w", "s", "q", "e"):
        send(f"keyup {key}")


def run_path(world_name: str, settings: dict, warp_on: bool, minutes: float, display: str) -> dict:
    """One session in a window on `display`: per-minute figures (and the whole run's)."""
    import numpy as np

    from engine import make_world
    from engine.game import Game, LoopConfig
    from engine.input import InputAccumulator, Keymap
    from engine.window import WindowFrontend

    os.environ["DISPLAY"] = display
    world = make_world(world_name, **settings)
    keymap = Keymap.load().for_world(world_name, getattr(world, "commands", None))
    frontend = WindowFrontend(keymap, title=f"dreamwalk - {world_name}", size=(640, 640))
    game = Game(world, frontend, LoopConfig(tick_rate=20.0, warp=warp_on, tick_thread=True),
                input=InputAccumulator.for_keymap(keymap), world_name=world_name, log=lambda s: None)
    xdo = subprocess.Popen(["xdotool", "-"], stdin=subprocess.PIPE, text=True, env=dict(os.environ, DISPLAY=display),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop = threading.Event()
    driver = threading.Thread(target=drive, args=(xdo, stop), daemon=True)
    minutes_out = []
    step_ms: list[float] = []
    memory_ms: list[float] = []
    orig_end = game._end_tick

    def end_tick(obs, action, first_input, t0, t1):  # the world's own step time and memory cost per tick
        orig_end(obs, action, first_input, t0, t1)
        step_ms.append((t1 - t0) * 1e3)
        t = getattr(world, "timings", None) or {}
        if "memory_render_ms" in t:
            memory_ms.append(t["memory_render_ms"] + t["memory_insert_ms"])

    game._end_tick = end_tick
    try:
        for _ in range(20):  # the first view, and the window mapped, before the input starts
            game.frame()
        driver.start()
        start = time.perf_counter()
        mark = (start, game.stats.frames, game.stats.ticks, game.stats.dropped, len(game.look_latencies))
        while game.running and time.perf_counter() - start < minutes * 60:
            game.frame()
            now = time.perf_counter()
            if now - mark[0] >= 60.0 or now - start >= minutes * 60:
                span = now - mark[0]
                lat = game.look_latencies[mark[4]:]
                memory = getattr(world, "memory", None)
                minutes_out.append({
                    "minute": len(minutes_out) + 1,
                    "frames_per_s": round((game.stats.frames - mark[1]) / span, 1),
                    "ticks_per_s": round((game.stats.ticks - mark[2]) / span, 2),
                    "dropped": game.stats.dropped - mark[3],
                    "look_latency_ms_median": round(statistics.median(lat), 1) if lat else None,
                    "look_latency_ms_p90": round(float(np.percentile(lat, 90)), 1) if lat else None,
                    "step_ms_median": round(statistics.median(step_ms), 1) if step_ms else None,
                    "memory_ms_median": round(statistics.median(memory_ms), 1) if memory_ms else None,
                    "gaussians": len(memory) if memory is not None else None,
                })
                print(json.dumps({"warp": warp_on, **minutes_out[-1]}), flush=True)
                step_ms.clear()
                memory_ms.clear()
                mark = (now, game.stats.frames, game.stats.ticks, game.stats.dropped, len(game.look_latencies))
    finally:
        stop.set()
        driver.join(timeout=5)
        try:
            xdo.stdin.close()
        except OSError:
            pass
        xdo.wait(timeout=10)
        game.running = False
        game._collect(block=True)
        if game._worker is not None:
            game._worker.shutdown(wait=True)
        frontend.close()
        world.close()
    lat = game.look_latencies
    return {"warp": warp_on, "minutes": minutes_out, "ticks": game.stats.ticks, "frames": game.stats.frames,
            "look_latency_ms_median": round(statistics.median(lat), 1) if lat else None}


def main() -> int:
    from engine.cli import Parser, number

    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--world", default="dream")
    p.add_argument("--minutes", type=number(0.1, 60.0), default=10.0, help="of each session")
    p.add_argument("--only", choices=["warp", "ticks"], help="run one path only")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "window.json"))
    args = p.parse_args()
    missing = [t for t in ("Xvfb", "xdotool") if shutil.which(t) is None]
    if missing:
        p.error(f"needs {', '.join(missing)} (bash install.sh installs them)")
    import torch

    torch.set_num_threads(2)
    from bench.bench_startup import gemm_gflops

    gemm = gemm_gflops()
    from engine.xvfb import virtual_display

    os.environ.pop("SDL_VIDEODRIVER", None)
    with virtual_display() as display:
        paths = [] if args.only == "ticks" else [True]
        paths += [] if args.only == "warp" else [False]
        runs = [run_path(args.world, {}, warp_on, args.minutes, display) for warp_on in paths]
    result = {"bench": "window", "world": args.world, "minutes": args.minutes, "fp32_gemm_gflops": gemm,
              "machine": f"{os.cpu_count()} cores", "display": "Xvfb (Mesa llvmpipe)", "window": [640, 640],
              "time": time.strftime("%Y-%m-%d %H:%M"), "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
