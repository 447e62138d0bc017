"""Splat renderer and scene memory costs on this CPU, and the memory's size and cost over a long stream.

    python bench/bench_splat.py [--ticks 10000] [--frames 1000] [--size 64] [--threads 2] [--quick]

1. render ms (CPU backend: moderngl/llvmpipe point sprites) and memory insert ms at 64x64 for 5k/10k/20k/40k
   Gaussians (median of repeats). The Gaussians are memory-like (isotropic, sigma ~ 1 px) and all lie inside the
   view frustum at random depths: a worst case, since the memory's own renders cull everything out of view.
2. a stream like the dream's tick (render at the next pose, then insert that frame) over `--ticks` ticks of an
   arena explore rollout at 64x64 (`--frames` frames generated once and cycled), for each memory setting in
   `--configs`: size, render ms, insert ms, coverage (alpha > 0.5 on non-sky pixels of the frame, before it is
   inserted) and PSNR of that render against the frame on covered non-sky pixels, per window of ticks.
Writes bench/results/splat.json. Timings are medians; this machine is shared and noisy (docs/architecture.md, "The reference machine": +-30%).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from splat.memory import MemoryConfig, SceneMemory  # noqa: E402
from splat.render import rasterize  # noqa: E402

CONFIGS: dict[str, dict] = {
    "default": dict(),  # MemoryConfig defaults: subsample 2, scale_factor 0.5, budget 20000
    "sub1_sf0.3": dict(subsample=1, scale_factor=0.3),  # the high-fidelity setting (fills the 20k budget)
}


def synthetic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """n memory-like Gaussians in front of an identity camera with f = 32 px: sigma ~ 1 px on screen."""
    z = rng.uniform(1.0, 20.0, n)
    x, y = rng.uniform(-1, 1, n) * z, rng.uniform(-1, 1, n) * z
    means = np.stack([x, y, z], 1).astype(np.float32)
    quats = np.tile(np.float32([1, 0, 0, 0]), (n, 1))
    scales = np.repeat((z / 32.0)[:, None], 3, 1).astype(np.float32)
    return means, quats, scales, np.full(n, 0.9, np.float32), rng.uniform(0, 1, (n, 3)).astype(np.float32)


def bench_counts(counts: list[int], size: int, repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    K = np.float32([[size / 2, 0, size / 2], [0, size / 2, size / 2], [0, 0, 1]])
    out = []
    for n in counts:
        g = synthetic(n, rng)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            rasterize(*g, np.eye(4, dtype=np.float32)[None], K[None], size, size, backend="cpu")
            times.append((time.perf_counter() - t0) * 1e3)
        # insert into a memory already holding n Gaussians (its cost is O(n) numpy + one render)
        mem = SceneMemory(width=size, height=size, budget=max(n + 4096, 1))
        mem.gaussians.append(*g, tick=0)
        frame_rgb = (rng.uniform(0, 255, (size, size, 3))).astype(np.uint8)
        frame_depth = rng.uniform(2, 10, (size, size)).astype(np.float32)
        ins = []
        for r in range(repeats):
            snapshot = mem.gaussians.state_dict()
            mem.insert(frame_rgb, frame_depth, np.eye(4), K, tick=r + 1)
            ins.append(mem.last_insert_ms)
            mem.gaussians = type(mem.gaussians).from_state_dict(snapshot, capacity=mem.config.budget)
            mem._version += 1
        row = {"gaussians": n, "render_ms": round(statistics.median(times), 2),
               "insert_ms": round(statistics.median(ins), 2)}
        print(row, flush=True)
        out.append(row)
    return out


def explore_frames(count: int, size: int, seed: int) -> list:
    """`count` observations of one arena explore episode (reset seed `seed`)."""
    from engine import make_world
    from engine.script import load_policy

    world = make_world("arena", width=size, height=size)
    policy = load_policy("explore")
    try:
        obs = world.reset(seed)
        policy.reset(seed)
        frames = [obs]
        while len(frames) < count:
            obs = world.step(policy(obs))
            frames.append(obs)
    finally:
        world.close()
    return frames


def bench_stream(frames: list, ticks: int, settings: dict, size: int, window: int) -> dict:
    mem = SceneMemory(MemoryConfig(width=size, height=size, **settings))
    rows = []
    for t in range(ticks):
        f = frames[t % len(frames)]
        r = mem.render(f.cam_to_world, f.K, t)  # the dream renders the next pose first ...
        sky = f.depth > mem.config.max_depth
        covered = (r.alpha > 0.5) & ~sky
        if covered.any():
            err = r.rgb[covered].astype(np.float32) - f.rgb[covered].astype(np.float32)
            psnr = float(10 * np.log10(255.0**2 / max(float(np.mean(err**2)), 1e-6)))
        else:
            psnr = float("nan")
        render_ms = mem.last_render_ms
        mem.insert(f.rgb, f.depth, f.cam_to_world, f.K, t, f.dynamic_mask)  # ... then inserts that frame
        rows.append((len(mem), render_ms, mem.last_insert_ms, covered.sum() / max((~sky).sum(), 1), psnr))
    arr = np.array(rows, np.float64)
    windows = []
    for w0 in range(0, ticks, window):
        a = arr[w0:w0 + window]
        windows.append({"ticks": [w0, w0 + len(a)], "size_max": int(a[:, 0].max()),
                        "render_ms": round(float(np.median(a[:, 1])), 2),
                        "insert_ms": round(float(np.median(a[:, 2])), 2),
                        "tick_ms_p95": round(float(np.percentile(a[:, 1] + a[:, 2], 95)), 2),
                        "coverage": round(float(np.mean(a[:, 3])), 3),
                        "psnr_db": round(float(np.nanmedian(a[:, 4])), 2)})
        print(settings, windows[-1], flush=True)
    return {"settings": settings, "budget": mem.config.budget, "max_size": int(arr[:, 0].max()),
            "render_ms_median": round(float(np.median(arr[:, 1])), 2),
            "insert_ms_median": round(float(np.median(arr[:, 2])), 2),
            "tick_ms_median": round(float(np.median(arr[:, 1] + arr[:, 2])), 2),
            "coverage_mean": round(float(np.mean(arr[:, 3])), 3),
            "psnr_db_median": round(float(np.nanmedian(arr[:, 4])), 2), "windows": windows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ticks", type=int, default=10000)
    p.add_argument("--frames", type=int, default=1000, help="explore frames generated once and cycled")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--seed", type=int, default=1100000)
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated from {list(CONFIGS)}")
    p.add_argument("--quick", action="store_true", help="a short smoke run (300 ticks, 200 frames, 3 repeats)")
    p.add_argument("--no-counts", action="store_true", help="skip the fixed-count render/insert timings")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "splat.json"))
    args = p.parse_args()
    if args.quick:
        args.ticks, args.frames, args.repeats = 300, 200, 3
    import torch

    torch.set_num_threads(args.threads)
    result: dict = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                                "cpus": __import__("os").cpu_count(), "threads": args.threads},
                    "size": args.size}
    if not args.no_counts:
        result["render_insert_by_count"] = bench_counts([5000, 10000, 20000, 40000], args.size, args.repeats)
    t0 = time.perf_counter()
    frames = explore_frames(args.frames, args.size, args.seed)
    print(f"{len(frames)} explore frames in {time.perf_counter() - t0:.1f} s", flush=True)
    result["stream"] = {"ticks": args.ticks, "frames_cycled": len(frames), "seed": args.seed, "configs": {}}
    for name in args.configs.split(","):
        result["stream"]["configs"][name] = bench_stream(frames, args.ticks, CONFIGS[name], args.size,
                                                         window=max(args.ticks // 10, 1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
