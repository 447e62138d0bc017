"""Per-tick cost of the dream model on this machine: pose + sampling + commit + decode.

One tick = predict_pose -> FlowSampler(steps) (steps x denoise_step, then commit_frame) -> decode.
Measured after the KV-cache window is full (the steady state), as medians over many ticks, in fp32
and in bf16 (bf16 weights and cache, and fp32 weights under bf16 autocast), with the achieved GFLOP/s
against the machine's measured GEMM peak, per-tick time at the start vs after thousands of ticks (the
sliding window + sinks must keep it flat), and two baselines measured in the same run: naive
attention, and no KV cache (a full forward over the window each step).

    python bench/bench_dynamics.py                      # default config, writes bench/results/dynamics.json
    python bench/bench_dynamics.py --quick               # fewer ticks
    python bench/bench_dynamics.py --dim 192 --layers 6  # try a variant (written under "variant")

Weights are random: cost does not depend on their values.
"""

from __future__ import annotations

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
from worldmodel.dynamics import DynamicsTransformer
from worldmodel.flow import FlowSampler

ROOT = Path(__file__).resolve().parents[1]
PEAK_GFLOPS = {"fp32": 149.0, "bf16": 401.0}  # 2-thread GEMM peak measured on this machine (STACK.md)
BUDGET_MS = 25.0


def build(cfg: ModelConfig, mode: str) -> tuple[DynamicsTransformer, FrameAutoencoder, contextlib.AbstractContextManager]:
    """Models in eval mode for `mode` in fp32 | bf16 (weights) | autocast; returns a context to run in."""
    torch.manual_seed(0)
    dyn = DynamicsTransformer(cfg.dynamics, cfg.latent_shape).eval()
    # Zero-init heads make a random model trivially cheap nowhere, but give them values anyway.
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


def run_ticks(cfg: ModelConfig, mode: str, steps: int, ticks: int, warm_ticks: int, memory: bool = True, extra_ticks: int = 0) -> dict:
    """Time `ticks` ticks after `warm_ticks` (>= window + sinks fills the cache); optionally run
    `extra_ticks` more untimed and time `ticks` again to show cost is flat."""
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
    if extra_ticks:
        for _ in range(extra_ticks):
            tick()
        late = [tick() for _ in range(ticks)]
        out["after_ticks"] = warm_ticks + ticks + extra_ticks
        out["median_ms_late"] = statistics.median(late)
        out["cache_bytes"] = state.k.numel() * state.k.element_size() * 2
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
    peak = PEAK_GFLOPS["fp32" if mode == "fp32" else "bf16"]
    out["achieved_gflops"] = out["gflop_per_tick"] / (out["median_ms"] / 1e3)
    out["fraction_of_peak"] = out["achieved_gflops"] / peak
    return out


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "assets/configs/model_default.yaml"))
    ap.add_argument("--quick", action="store_true", help="fewer ticks (noisier)")
    ap.add_argument("--dim", type=int)
    ap.add_argument("--layers", type=int)
    ap.add_argument("--heads", type=int)
    ap.add_argument("--window", type=int)
    ap.add_argument("--modes", default="fp32,bf16,autocast")
    ap.add_argument("--flat-ticks", type=int, default=2000, help="untimed ticks between the early and late timing")
    ap.add_argument("--out", default=str(ROOT / "bench/results/dynamics.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)

    cfg = load_config(args.config)
    overrides = {k: getattr(args, k) for k in ("dim", "layers", "heads", "window") if getattr(args, k) is not None}
    if overrides:
        cfg = dataclasses.replace(cfg, dynamics=dataclasses.replace(cfg.dynamics, **overrides))
    ticks = 50 if args.quick else 200
    warm = cfg.dynamics.window + cfg.dynamics.sinks + 5
    n_params = sum(p.numel() for p in DynamicsTransformer(cfg.dynamics, cfg.latent_shape).parameters())
    result: dict = {
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}",
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
            r = run_ticks(cfg, mode, steps, ticks, warm)
            result["modes"][mode][f"steps{steps}"] = r
            print(f"{mode:8s} steps={steps}: {r['median_ms']:.1f} ms/tick (p90 {r['p90_ms']:.1f}), "
                  f"{r['gflop_per_tick']:.2f} GFLOP, {r['achieved_gflops']:.0f} GFLOP/s = {100 * r['fraction_of_peak']:.0f}% of peak", flush=True)
    best = min(result["modes"], key=lambda m: result["modes"][m]["steps1"]["median_ms"])
    result["fastest_mode"] = best
    # Flat cost: the same timing early and after thousands of ticks, fastest mode, 1 step.
    flat = run_ticks(cfg, best, 1, ticks // 2, warm, extra_ticks=args.flat_ticks)
    result["flat"] = {"mode": best, **flat}
    print(f"flat ({best}): {flat['median_ms']:.1f} ms at tick ~{warm} vs {flat['median_ms_late']:.1f} ms at tick ~{flat['after_ticks']}", flush=True)
    # Baselines in the same run: naive attention, and no KV cache.
    attn.force_backend("naive")
    try:
        result["baseline_naive_attention"] = run_ticks(cfg, best, 1, ticks // 4, warm)["median_ms"]
    finally:
        attn.force_backend(None)
    result["baseline_no_kv_cache_ms"] = no_cache_ms(cfg, best, max(5, ticks // 20))
    print(f"baselines ({best}, 1 step): naive attention {result['baseline_naive_attention']:.1f} ms, "
          f"no KV cache {result['baseline_no_kv_cache_ms']:.1f} ms", flush=True)
    result["meets_budget_1step"] = result["modes"][best]["steps1"]["median_ms"] <= BUDGET_MS

    out = Path(args.out)
    if overrides:
        out = out.with_name(out.stem + "_variant_" + "_".join(f"{k}{v}" for k, v in overrides.items()) + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
