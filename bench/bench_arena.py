"""Arena throughput: ticks per second headless, physics + movers + render + readback, on one core.

    python bench/bench_arena.py [--size 128] [--ticks 300] [--repeats 5] [--preset default]

One process pinned to one CPU core (sched_setaffinity), llvmpipe told to use one thread
(LP_NUM_THREADS=1, set before the GL context exists) and torch (if installed) one thread. Each repeat
steps an `ArenaWorld` through the same action sequence and times the `step` calls. The action sequence is the explore policy's, recorded once beforehand, so the views are
the ones training data sees but the policy's own cost is not counted (`--with-policy` times it too).
Prints and writes the median of the repeats to bench/results/arena.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# Before anything creates a GL context: llvmpipe reads this once.
os.environ.setdefault("LP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="image width and height in pixels")
    parser.add_argument("--ticks", type=int, default=300, help="ticks per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--with-policy", action="store_true", help="also time the explore policy")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "arena.json"))
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    try:
        import torch  # the arena does not use torch; pinned so a process that imports it is comparable

        torch.set_num_threads(1)
    except ImportError:
        pass

    from engine.arena import ArenaWorld
    from engine.arena.policies import ExplorePolicy

    world = ArenaWorld(preset=args.preset, width=args.size, height=args.size)
    explore = ExplorePolicy()
    explore.reset(args.seed)
    obs = world.reset(args.seed)
    actions = []
    for _ in range(args.ticks):
        actions.append(explore(obs))
        obs = world.step(actions[-1])

    rates: list[float] = []
    for repeat in range(args.repeats + 1):  # the first repeat warms up (shader compile, caches)
        obs = world.reset(args.seed)
        explore.reset(args.seed)
        start = time.perf_counter()
        for a in actions:
            obs = world.step(explore(obs) if args.with_policy else a)
        elapsed = time.perf_counter() - start
        if repeat:
            rates.append(args.ticks / elapsed)
    renderer = world.renderer.ctx.info["GL_RENDERER"]
    world.close()

    result = {
        "benchmark": "arena ticks/s (physics + movers + render + RGB/depth/id readback)",
        "ticks_per_s_median": round(statistics.median(rates), 1),
        "ticks_per_s_repeats": [round(r, 1) for r in rates],
        "ms_per_tick_median": round(1000.0 / statistics.median(rates), 3),
        "size": [args.size, args.size],
        "preset": args.preset,
        "ticks": args.ticks,
        "with_policy": args.with_policy,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "lp_num_threads": os.environ.get("LP_NUM_THREADS"),
        "gl_renderer": renderer,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"arena {args.size}x{args.size} {args.preset}: {result['ticks_per_s_median']} ticks/s median "
          f"({result['ms_per_tick_median']} ms/tick, repeats {result['ticks_per_s_repeats']}) -> {out}")


if __name__ == "__main__":
    main()
