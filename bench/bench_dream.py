"""A long open-loop dream: does it stay sane, and does each tick cost the same at the end as at the start?

    python bench/bench_dream.py --ticks 10000     # as the model dreams (the shipped one: memory on): dream_memory.json
    python bench/bench_dream.py --no-memory --ticks 10000     # the scene memory off: bench/results/dream.json
    python bench/bench_dream.py --device cuda   # on a GPU: bench/results/dream_cuda.json (dream_memory_cuda.json)

Drives DreamWorld (batch 1, memory off unless --memory) with the explore policy for `--ticks` ticks and records, per
window of 500 ticks: median ms per tick, process RSS, and the mean and standard deviation of the
frames' pixel values, next to the same statistics of ground-truth arena frames (the range a
non-collapsed dream should stay in). NaN anywhere fails the run. With --memory, each window also
records the memory's Gaussian count and its render + insert ms (both must stay flat).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default=str(ROOT / "assets" / "model"))
    p.add_argument("--ticks", type=int, default=10000)
    p.add_argument("--window", type=int, default=500)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--seed", type=int, default=1_100_000)
    p.add_argument("--memory", action="store_true", default=None,
                   help="dream with the splat scene memory on (default: as the model says, model.yaml info.dream.memory)")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="dream with the scene memory off")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where the model runs")
    p.add_argument("--out", default=None, help="default bench/results/dream.json (dream_memory.json with the memory on; "
                                              "_cuda before .json on a GPU)")
    args = p.parse_args()

    import torch

    torch.set_num_threads(2)
    import worldmodel  # noqa: F401
    from engine import make_world
    from engine.arena.policies import ExplorePolicy
    from worldmodel.device import resolve_device

    device = resolve_device(args.device)
    world = make_world("dream", checkpoint=args.checkpoint, steps=args.steps, memory=args.memory, device=str(device))
    memory = world.memory is not None and world.memory_enabled
    if args.out is None:
        name = ("dream_memory" if memory else "dream") + ("_cuda" if device.type == "cuda" else "")
        args.out = str(ROOT / "bench" / "results" / f"{name}.json")
    policy = ExplorePolicy()
    policy.reset(args.seed)
    obs = world.reset(args.seed)
    # Ground-truth statistics: the arena along the same policy for a while.
    truth = make_world(world.prompt_name, **world.prompt_config)
    tp = ExplorePolicy()
    tp.reset(args.seed)
    t_obs = truth.reset(args.seed)
    gt_means, gt_stds = [], []
    for _ in range(1000):
        t_obs = truth.step(tp(t_obs))
        gt_means.append(float(t_obs.rgb.mean()))
        gt_stds.append(float(t_obs.rgb.std()))
    truth.close()

    windows = []
    times, means, stds, mem_ms = [], [], [], []
    nan = False
    for tick in range(1, args.ticks + 1):
        action = policy(obs)
        t0 = time.perf_counter()
        obs = world.step(action)
        times.append((time.perf_counter() - t0) * 1e3)
        means.append(float(obs.rgb.mean()))
        stds.append(float(obs.rgb.std()))
        if memory:
            t = world.timings
            mem_ms.append(t["memory_render_ms"] + t["memory_insert_ms"])
        nan |= obs.depth is not None and not np.all(np.isfinite(obs.depth))
        nan |= not np.all(np.isfinite(obs.cam_to_world))
        if tick % args.window == 0:
            windows.append({"end_tick": tick, "ms_median": round(statistics.median(times), 3),
                            "rss_mb": round(rss_mb(), 1), "frame_mean": round(statistics.mean(means), 2),
                            "frame_std": round(statistics.mean(stds), 2)})
            if memory:
                windows[-1].update(gaussians=len(world.memory), memory_ms_median=round(statistics.median(mem_ms), 3))
            print(json.dumps(windows[-1]), flush=True)
            times, means, stds, mem_ms = [], [], [], []
    reference = None
    if memory:
        # The memory's cost in one stretch of the same run: the same dream without a memory (a second DreamWorld,
        # memory=False) and this one, 200 ticks each, alternating in blocks of 50 so both see the same machine (the
        # target: the memory-on tick <= 1.3x the memory-off tick), beside the GEMM speed of the moment.
        from worldmodel.device import measure_peak_gflops

        gflops = measure_peak_gflops(torch.float32)
        plain = make_world("dream", checkpoint=args.checkpoint, steps=args.steps, memory=False, device=str(device))
        plain_obs = plain.reset(args.seed)
        plain_policy = ExplorePolicy()
        plain_policy.reset(args.seed)
        ms: dict[str, list[float]] = {"memory_off": [], "memory_on": []}
        for _ in range(4):
            for label, w, pol in (("memory_off", plain, plain_policy), ("memory_on", world, policy)):
                for _ in range(50):
                    current = plain_obs if w is plain else obs
                    action = pol(current)
                    t0 = time.perf_counter()
                    current = w.step(action)
                    ms[label].append((time.perf_counter() - t0) * 1e3)
                    if w is plain:
                        plain_obs = current
                    else:
                        obs = current
        plain.close()
        reference = {f"{k}_ms_median": round(statistics.median(v), 3) for k, v in ms.items()}
        reference["ratio_on_over_off"] = round(reference["memory_on_ms_median"] / reference["memory_off_ms_median"], 3)
        reference["fp32_gemm_gflops"] = round(gflops, 1)
        print(json.dumps(reference), flush=True)
    world.close()
    first, last = windows[0], windows[-1]
    gt = {"frame_mean_range": [round(min(gt_means), 2), round(max(gt_means), 2)],
          "frame_std_range": [round(min(gt_stds), 2), round(max(gt_stds), 2)]}
    in_range = all(gt["frame_mean_range"][0] - 10 <= w["frame_mean"] <= gt["frame_mean_range"][1] + 10 and
                   gt["frame_std_range"][0] - 10 <= w["frame_std"] <= gt["frame_std_range"][1] + 10 for w in windows)
    out = {
        "checkpoint": args.checkpoint, "ticks": args.ticks, "sampling_steps": args.steps, "memory": memory,
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "ticks_per_s_last_window": round(1000.0 / last["ms_median"], 1),
        "windows": windows, "ground_truth": gt, "no_nan": not nan, "stats_in_ground_truth_range": in_range,
        "ms_per_tick_first_window": first["ms_median"], "ms_per_tick_last_window": last["ms_median"],
        "cost_ratio_last_over_first": round(last["ms_median"] / first["ms_median"], 3),
        "rss_growth_mb": round(last["rss_mb"] - first["rss_mb"], 1),
    }
    if reference is not None:
        out["memory_cost"] = reference
    if memory:
        out["gaussians_max"] = max(w["gaussians"] for w in windows)
        out["memory_ms_first_window"] = first["memory_ms_median"]
        out["memory_ms_last_window"] = last["memory_ms_median"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k != "windows"}, indent=2))
    return 0 if not nan else 1


if __name__ == "__main__":
    sys.exit(main())
