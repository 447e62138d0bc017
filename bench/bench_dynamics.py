"""Per-tick cost of the dream model on this machine: pose + sampling + commit + decode.

One tick = predict_pose -> FlowSampler(steps) (steps x denoise_step, then commit_frame) -> decode.
Measured after the KV-cache window is full (the steady state), as medians over many ticks, in fp32
and in bf16 (bf16 weights and cache, and fp32 weights under bf16 autocast), with the achieved GFLOP/s
against the machine's measured GEMM peak, per-tick time early vs after thousands of ticks (timed interleaved;
the sliding window + sinks must keep it flat), and two baselines measured in the same run: naive
attention, and no KV cache (a full forward over the window each step).

    python bench/bench_dynamics.py                      # default config, writes bench/results/dynamics.json
    python bench/bench_dynamics.py --quick               # fewer ticks
    python bench/bench_dynamics.py --dim 192 --layers 6  # try a variant (written under "variant")

Weights are random: cost does not depend on their values.
"""

from __future__ import annotations

import os

# A 2-thread OpenMP team that busy-waits collapses (we measured 500-800 ms instead of ~35 ms per tick)
# when another process holds one of the two cores; passive waiting keeps it usable. Must be set before
# torch (and its OpenMP runtime) is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import contextlib
import dataclasses
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from worldmodel import attention as attn
from worldmodel.autoencoder import FrameAutoencoder
from worldmodel.config import ModelConfig, load_config
from worldmodel.device import measure_peak_gflops  # noqa: F401  (the benches import it from here too)
from worldmodel.dynamics import DynamicsTransformer
from worldmodel.flow import FlowSampler

ROOT = Path(__file__).resolve().parents[1]
# 2-thread GEMM peak of the reference machine (docs/architecture.md, "The reference machine"). Machines
# differ (some instances are Intel Xeons without AVX-512 bf16, where bf16 GEMMs are ~4x slower than
# fp32), so the bench also measures the peak of the machine it runs on and reports both.
STACK_PEAK_GFLOPS = {"fp32": 149.0, "bf16": 401.0}
BUDGET_MS = 25.0


def build(cfg: ModelConfig, mode: str) -> tuple[DynamicsTransformer, FrameAutoencoder, contextlib.AbstractContextManager]:
    """Models in eval mode for `mode` in fp32 | bf16 (weights) | autocast; returns a context to run in."""
    torch.manual_seed(0)
    dyn = DynamicsTransformer(cfg.dynamics, cfg.latent_shape).eval()
    # Cost does not depend on weight values; perturb the zero-initialised (adaLN-Zero) weights anyway
    # so every path computes something nonzero, as in a trained model.
    with torch.no_grad():
        for p in dyn.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    ae = FrameAutoencoder(cfg.autoencoder).eval()  # the decoder stays fp32: bf16 convs were slower here
    ctx: contextlib.AbstractContextManager = contextlib.nullcontext()
    if mode == "bf16":
        dyn = dyn.to(torch.bfloat16)
    elif mode == "autocast":
        ctx = torch.autocast("cpu", dtype=torch.bfloat16)
    return dyn, ae, ctx


def run_ticks(
    cfg: ModelConfig, mode: str, steps: int, ticks: int, warm_ticks: int, peak: dict[str, float], memory: bool = True
) -> dict:
    """Time `ticks` ticks after `warm_ticks` (>= window + sinks fills the cache)."""
    dyn, ae, ctx = build(cfg, mode)
    c, h, w = cfg.latent_shape
    sampler = FlowSampler(steps=steps)
    gen = torch.Generator().manual_seed(0)
    state = dyn.new_state(1)
    action = torch.zeros(1, 8)
    action[0, 0] = 1.0
    mem = torch.randn(1, c + 1, h, w) if (memory and cfg.dynamics.use_memory) else None

    def tick() -> float:
        t0 = time.perf_counter()
        with torch.no_grad(), ctx:
            dyn.predict_pose(state, action)
            frame = sampler.sample(dyn, state, action, mem, generator=gen)
            ae.decode(frame.latent.float())
        return (time.perf_counter() - t0) * 1e3

    for _ in range(warm_ticks):
        tick()
    times = [tick() for _ in range(ticks)]
    out = {"median_ms": statistics.median(times), "p90_ms": sorted(times)[int(0.9 * len(times))], "ticks": ticks}
    out["cache_bytes"] = state.kv.numel() * state.kv.element_size()
    # FLOPs of one steady-state tick (FlopCounterMode counts matmuls/attention/convs analytically).
    fc = FlopCounterMode(display=False)
    with fc:
        tick()
    out["gflop_per_tick"] = fc.get_total_flops() / 1e9
    # Split out the decode so the transformer's own efficiency is visible.
    fd = FlopCounterMode(display=False)
    with fd, torch.no_grad():
        ae.decode(torch.zeros(1, c, h, w))
    out["decode_gflop"] = fd.get_total_flops() / 1e9
    kind = "fp32" if mode == "fp32" else "bf16"
    out["achieved_gflops"] = out["gflop_per_tick"] / (out["median_ms"] / 1e3)
    out["fraction_of_measured_peak"] = out["achieved_gflops"] / peak[kind]
    out["fraction_of_stack_peak"] = out["achieved_gflops"] / STACK_PEAK_GFLOPS[kind]
    return out


def flat_check(cfg: ModelConfig, mode: str, ticks: int, warm_ticks: int, late_ticks: int) -> dict:
    """Per-tick time early in a rollout vs after `late_ticks` ticks, timed interleaved (early, late,
    early, ...) so that load from other processes hits both alike."""
    dyn, ae, ctx = build(cfg, mode)
    c, h, w = cfg.latent_shape
    sampler = FlowSampler(steps=1)
    action = torch.zeros(1, 8)
    mem = torch.randn(1, c + 1, h, w) if cfg.dynamics.use_memory else None
    early, late = dyn.new_state(1), dyn.new_state(1)
    gen = torch.Generator().manual_seed(0)

    def tick(state) -> float:
        t0 = time.perf_counter()
        with torch.no_grad(), ctx:
            dyn.predict_pose(state, action)
            frame = sampler.sample(dyn, state, action, mem, generator=gen)
            ae.decode(frame.latent.float())
        return (time.perf_counter() - t0) * 1e3

    for _ in range(warm_ticks):
        tick(early)
    for _ in range(late_ticks):
        tick(late)
    t_early, t_late = [], []
    for _ in range(ticks):
        t_early.append(tick(early))
        t_late.append(tick(late))
    return {
        "mode": mode,
        "early_tick": warm_ticks,
        "late_tick": late_ticks,
        "median_ms_early": statistics.median(t_early),
        "median_ms_late": statistics.median(t_late),
        "cache_shape_early": list(early.kv.shape),
        "cache_shape_late": list(late.kv.shape),
    }


def decode_ms(cfg: ModelConfig, n: int = 100) -> float:
    _, ae, _ = build(cfg, "fp32")
    z = torch.randn(1, *cfg.latent_shape)
    with torch.no_grad():
        for _ in range(10):
            ae.decode(z)
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            ae.decode(z)
            ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def no_cache_ms(cfg: ModelConfig, mode: str, ticks: int) -> float:
    """Baseline: no KV cache — every denoise pass is a full forward over the window + sinks + new frame."""
    dyn, ae, ctx = build(cfg, mode)
    c, h, w = cfg.latent_shape
    frames = cfg.dynamics.window + cfg.dynamics.sinks + 1
    x = torch.randn(1, frames, c, h, w)
    t = torch.zeros(1, frames)
    a = torch.zeros(1, frames, 8)
    ts = []
    with torch.no_grad(), ctx:
        for _ in range(ticks + 2):
            t0 = time.perf_counter()
            dyn(x, t, a)  # 1 sampling step; the clean frame is re-encoded next tick anyway
            ae.decode(x[:, -1].float())
            ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts[2:])


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "assets/configs/model_default.yaml"))
    ap.add_argument("--quick", action="store_true", help="fewer ticks (noisier)")
    ap.add_argument("--dim", type=int)
    ap.add_argument("--layers", type=int)
    ap.add_argument("--heads", type=int)
    ap.add_argument("--window", type=int)
    ap.add_argument("--modes", default="fp32,bf16,autocast")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--flat-ticks", type=int, default=2000, help="ticks rolled out before the 'late' timing")
    ap.add_argument("--out", default=str(ROOT / "bench/results/dynamics.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cfg = load_config(args.config)
    overrides = {k: getattr(args, k) for k in ("dim", "layers", "heads", "window") if getattr(args, k) is not None}
    if args.threads != 2:
        overrides_note = f"threads{args.threads}"
    else:
        overrides_note = ""
    if overrides:
        cfg = dataclasses.replace(cfg, dynamics=dataclasses.replace(cfg.dynamics, **overrides))
    ticks = 50 if args.quick else 200
    warm = cfg.dynamics.window + cfg.dynamics.sinks + 5
    n_params = sum(p.numel() for p in DynamicsTransformer(cfg.dynamics, cfg.latent_shape).parameters())
    peak = {"fp32": measure_peak_gflops(torch.float32), "bf16": measure_peak_gflops(torch.bfloat16)}
    print(f"measured GEMM peak ({args.threads} threads): fp32 {peak['fp32']:.0f}, bf16 {peak['bf16']:.0f} GFLOP/s", flush=True)
    result: dict = {
        "machine": f"{_cpu_name()}, torch {torch.__version__}, threads {torch.get_num_threads()}",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_at_start": os.getloadavg(),  # other processes on the 2 cores inflate every timing
        "measured_peak_gflops": peak,
        "stack_peak_gflops": STACK_PEAK_GFLOPS,
        "config": cfg.to_dict(),
        "dynamics_params_M": n_params / 1e6,
        "tokens_per_frame": 1 + (cfg.latent_shape[1] // cfg.dynamics.patch_size) * (cfg.latent_shape[2] // cfg.dynamics.patch_size),
        "budget_ms": BUDGET_MS,
        "decode_ms_fp32": decode_ms(cfg),
        "modes": {},
    }
    for mode in args.modes.split(","):
        result["modes"][mode] = {}
        for steps in (1, 2):
            r = run_ticks(cfg, mode, steps, ticks, warm, peak)
            result["modes"][mode][f"steps{steps}"] = r
            print(f"{mode:8s} steps={steps}: {r['median_ms']:.1f} ms/tick (p90 {r['p90_ms']:.1f}), "
                  f"{r['gflop_per_tick']:.2f} GFLOP, {r['achieved_gflops']:.0f} GFLOP/s = "
                  f"{100 * r['fraction_of_measured_peak']:.0f}% of measured peak", flush=True)
    best = min(result["modes"], key=lambda m: result["modes"][m]["steps1"]["median_ms"])
    result["fastest_mode"] = best
    # Flat cost: the same timing early and after thousands of ticks, fastest mode, 1 step.
    flat = flat_check(cfg, best, ticks // 2, warm, args.flat_ticks)
    result["flat"] = flat
    print(f"flat ({best}): {flat['median_ms_early']:.1f} ms at tick ~{warm} vs {flat['median_ms_late']:.1f} ms "
          f"at tick ~{args.flat_ticks} (interleaved)", flush=True)
    # Baselines in the same run: naive attention, and no KV cache.
    attn.force_backend("naive")
    try:
        result["baseline_naive_attention"] = run_ticks(cfg, best, 1, ticks // 4, warm, peak)["median_ms"]
    finally:
        attn.force_backend(None)
    result["baseline_no_kv_cache_ms"] = no_cache_ms(cfg, best, max(5, ticks // 20))
    print(f"baselines ({best}, 1 step): naive attention {result['baseline_naive_attention']:.1f} ms, "
          f"no KV cache {result['baseline_no_kv_cache_ms']:.1f} ms", flush=True)
    result["meets_budget_1step"] = result["modes"][best]["steps1"]["median_ms"] <= BUDGET_MS
    result["load_average_at_end"] = os.getloadavg()

    out = Path(args.out)
    if overrides or overrides_note:
        tag = "_".join([f"{k}{v}" for k, v in overrides.items()] + ([overrides_note] if overrides_note else []))
        out = out.with_name(out.stem + "_variant_" + tag + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
