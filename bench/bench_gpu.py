"""The device benchmark of issue 22: the dream, the vector environment and training, on one device.

    python bench/bench_gpu.py --device cuda                       # writes bench/results/gpu.json
    python bench/bench_gpu.py --device cpu --quick --sections train   # the CPU's training baseline (short)

Sections (each written to the JSON as soon as it is done, so a time limit still leaves the finished ones):
- dream:  DreamWorld with the shipped model at 64x64, batch 1, driven by the explore policy: median ms per tick and
          ticks/s with the scene memory off and on (which rasterizer the memory used: gsplat or the CPU renderer),
          with the per-part medians DreamWorld.timings gives (on CUDA the parts are host-side times: the pose and
          the frame are where the host waits for the device).
- vector: DreamVectorEnv total env ticks/s at B = 1, 4, 16 with RGB observations (decoded every tick) and with
          latent observations; the issue's target is B = 16 >= 8x B = 1 on a GPU.
- train:  optimizer steps/s of the shipped recipe (assets/configs/arena64.yaml: the autoencoder at ae_batch and the
          dynamics at batch_size x clip_frames with memory inputs and the pose loss, AdamW, grad clipping, bf16
          autocast on CUDA as worldmodel.train does), on synthetic data of the recipe's shapes (speed does not depend
          on the values), at the recipe's batch and larger ones (what a GPU run would use).

The shipped model's prompt world is the arena (moderngl over EGL); where it cannot start, the plane world (no GL)
prompts instead, which changes what is dreamed but not what a tick costs (the JSON says which).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _sync(device) -> None:
    from worldmodel.device import synchronize

    synchronize(device)


def _stats(ms: list[float]) -> dict:
    ms = sorted(ms)
    med = statistics.median(ms)
    return {"ms_median": round(med, 3), "ms_p90": round(ms[int(0.9 * (len(ms) - 1))], 3), "ticks_per_s": round(1000.0 / med, 1)}


def prompt_override(checkpoint: str) -> tuple[dict, str]:
    """({} to use the model's own prompt world, or a plane-world override}, a note saying which)."""
    from engine import make_world
    from worldmodel.checkpoint import read_model_config

    _, _, settings = read_model_config(checkpoint)
    name = settings.prompt_world
    try:
        make_world(name, **dict(settings.prompt_config or {})).close()
        return {}, f"the model's own prompt world ({name})"
    except Exception as e:
        render = settings.render_size or (128, 128)
        return ({"prompt_world": "plane", "prompt_config": {"width": render[1], "height": render[0]}},
                f"plane (the model's prompt world {name} could not start here: {type(e).__name__}: {str(e)[:160]})")


def bench_dream(args, device) -> dict:
    import worldmodel  # noqa: F401
    from engine import make_world
    from engine.arena.policies import ExplorePolicy
    from splat.render import gsplat_available

    prompt, note = prompt_override(args.checkpoint)
    out: dict = {"prompt": note, "warmup_ticks": args.warmup, "ticks": args.dream_ticks}
    for memory in (False, True):
        key = "memory_on" if memory else "memory_off"
        try:
            world = make_world("dream", checkpoint=args.checkpoint, memory=memory, device=str(device), **prompt)
        except Exception as e:
            out[key] = {"error": f"{type(e).__name__}: {e}"}
            continue
        try:
            policy = ExplorePolicy()
            policy.reset(args.seed)
            obs = world.reset(args.seed)
            for _ in range(args.warmup):
                obs = world.step(policy(obs))
            times, parts = [], {}
            for _ in range(args.dream_ticks):
                action = policy(obs)
                t0 = time.perf_counter()
                obs = world.step(action)  # returns host arrays: the device's work for the tick is done
                times.append((time.perf_counter() - t0) * 1e3)
                for k, v in world.timings.items():
                    parts.setdefault(k, []).append(v)
            res = _stats(times) | {"parts_ms_median": {k: round(statistics.median(v), 3) for k, v in parts.items()}}
            if memory:
                backend = world.memory.config.backend
                res["rasterizer"] = "gsplat" if backend == "gsplat" or (backend == "auto" and gsplat_available()) else "cpu"
                res["gaussians"] = len(world.memory)
            out[key] = res
        except Exception as e:
            out[key] = {"error": f"{type(e).__name__}: {e}", "where": traceback.format_exc(limit=3)[-600:]}
        finally:
            world.close()
        print("dream", key, out[key], flush=True)
    return out


def bench_vector(args, device) -> dict:
    import numpy as np

    from bench_vector import random_actions
    from worldmodel.vector import DreamVectorEnv

    prompt, note = prompt_override(args.checkpoint)
    out: dict = {"prompt": note, "ticks": args.vector_ticks}
    for mode in ("rgb", "latent"):
        res = {}
        for B in (1, 4, 16):
            envs = DreamVectorEnv(B, checkpoint=args.checkpoint, max_steps=10**9, observation=mode, device=str(device),
                                  **prompt)
            try:
                envs.reset(seed=0)
                rng = np.random.default_rng(0)
                acts = random_actions(rng, B, args.vector_ticks + 5)
                for a in acts[:5]:  # warm-up (and kernels chosen)
                    envs.step(a)
                t0 = time.perf_counter()
                for a in acts[5:]:
                    envs.step(a)  # returns host arrays: the tick's device work is done
                dt = time.perf_counter() - t0
            finally:
                envs.close()
            res[str(B)] = {"total_ticks_per_s": round(B * args.vector_ticks / dt, 1),
                           "ms_per_batched_tick": round(1000 * dt / args.vector_ticks, 3)}
            print("vector", mode, B, res[str(B)], flush=True)
        out[mode] = res
        out[f"speedup_16_over_1_{mode}"] = round(res["16"]["total_ticks_per_s"] / res["1"]["total_ticks_per_s"], 2)
    return out


def bench_train(args, device) -> dict:
    import numpy as np
    import torch

    from worldmodel.autoencoder import AutoencoderLoss, FrameAutoencoder
    from worldmodel.dynamics import DynamicsTransformer
    from worldmodel.flow import FlowMatching
    from worldmodel.training.common import apply_gradients, load_presets
    from worldmodel.training.memory_images import memory_batch

    mcfg, tcfg = load_presets(Path(args.config))
    amp = device.type == "cuda"  # what worldmodel.train does with bf16: auto there
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)
    H, W = mcfg.frame_size
    C, h, w = mcfg.latent_shape
    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    out: dict = {"config": args.config, "bf16_autocast": amp, "steps_timed": args.train_steps}

    def timed(step, n: int) -> float:
        for _ in range(3):  # warm-up: allocator, cuDNN / cuBLAS choices
            step()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        _sync(device)
        return n / (time.perf_counter() - t0)

    # Stage 1: the autoencoder on frames (a pool of frames on the host, gathered and copied per step like the trainer)
    ae = FrameAutoencoder(mcfg.autoencoder).to(device).train()
    ae_opt = torch.optim.AdamW(ae.parameters(), lr=tcfg.ae_lr, weight_decay=1e-4)
    loss_fn = AutoencoderLoss()
    pool = 512
    rgb_pool = (torch.rand(pool, 3, H, W, generator=g) * 2 - 1)
    depth_pool = torch.rand(pool, 1, H, W, generator=g) * 20 + 0.5
    ae_res = {}
    for B in args.ae_batches or [tcfg.ae_batch]:
        def ae_step(B=B):
            rows = torch.from_numpy(rng.integers(0, pool, B))
            rgb, depth = rgb_pool[rows].to(device, non_blocking=True), depth_pool[rows].to(device, non_blocking=True)
            with autocast:
                losses = loss_fn(ae, ae(rgb, depth), rgb, depth)
            apply_gradients(ae, ae_opt, losses.total, tcfg.grad_clip)
        sps = timed(ae_step, args.train_steps)
        ae_res[str(B)] = {"steps_per_s": round(sps, 2), "frames_per_s": round(sps * B, 1)}
        print("train autoencoder", B, ae_res[str(B)], flush=True)
    out["autoencoder"] = ae_res

    # Stage 2: the dynamics on clips of latents (the whole latent set on the device, as worldmodel.train keeps it)
    dyn = DynamicsTransformer(mcfg.dynamics, mcfg.latent_shape).to(device).train()
    opt = torch.optim.AdamW(dyn.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay, betas=(0.9, 0.99))
    objective = FlowMatching(context_noise_max=tcfg.context_noise_max, pure_noise_prob=tcfg.pure_noise_prob,
                             pose_weight=tcfg.pose_weight)
    frames, T = 8192, tcfg.clip_frames
    lat = torch.randn(frames, C, h, w, generator=g).to(device)
    mem = torch.randn(frames, C + 1, h, w, generator=g).to(device)
    actions = torch.randn(frames, 8, generator=g).to(device)
    ego = (torch.randn(frames, 5, generator=g) * 0.1).to(device)
    dyn_res = {}
    for B in args.dyn_batches or [tcfg.batch_size]:
        def dyn_step(B=B):
            rows = torch.from_numpy(rng.integers(0, frames - T, B)[:, None] + np.arange(T)).to(device)
            m, present = memory_batch(mem[rows], tcfg, rng)
            valid = torch.ones(rows.shape, dtype=torch.bool, device=device)
            valid[:, 0] = False
            with autocast:
                losses = objective.loss(dyn, lat[rows], actions[rows], memory=m, memory_present=present,
                                        pose_target=ego[rows], pose_valid=valid)
            apply_gradients(dyn, opt, losses.total, tcfg.grad_clip)
        sps = timed(dyn_step, args.train_steps)
        dyn_res[str(B)] = {"steps_per_s": round(sps, 2), "clips_per_s": round(sps * B, 1)}
        print("train dynamics", B, dyn_res[str(B)], flush=True)
    out["dynamics"] = dyn_res
    out["recipe"] = {"ae_steps": tcfg.ae_steps, "ae_batch": tcfg.ae_batch, "steps": tcfg.steps, "batch_size": tcfg.batch_size,
                     "clip_frames": tcfg.clip_frames}
    return out


SECTIONS = {"dream": bench_dream, "vector": bench_vector, "train": bench_train}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--checkpoint", default=str(ROOT / "assets" / "model"))
    p.add_argument("--config", default=str(ROOT / "assets" / "configs" / "arena64.yaml"), help="the training recipe")
    p.add_argument("--sections", default="dream,vector,train", help="comma-separated: dream, vector, train")
    p.add_argument("--dream-ticks", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--vector-ticks", type=int, default=100)
    p.add_argument("--train-steps", type=int, default=40)
    p.add_argument("--ae-batches", type=lambda s: [int(x) for x in s.split(",")], default=None,
                   help="autoencoder batch sizes (default: the recipe's ae_batch, plus 96,256 on CUDA)")
    p.add_argument("--dyn-batches", type=lambda s: [int(x) for x in s.split(",")], default=None,
                   help="dynamics batch sizes (default: the recipe's batch_size, plus 32,128 on CUDA)")
    p.add_argument("--seed", type=int, default=1_100_000)
    p.add_argument("--quick", action="store_true", help="few ticks and steps (a smoke run)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu.json"))
    p.add_argument("--append", action="store_true", help="keep the sections already in --out (a run in parts)")
    p.add_argument("--note", default=None, help="a note stored with each section run (e.g. what else was running)")
    args = p.parse_args(argv)

    import worldmodel  # noqa: F401  (OMP_WAIT_POLICY before torch)
    import torch

    from splat.render import gsplat_status
    from worldmodel import attention
    from worldmodel.device import DeviceError, resolve_device
    from worldmodel.training.common import load_presets

    try:
        device = resolve_device(args.device)
    except DeviceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    if args.quick:
        args.dream_ticks, args.warmup, args.vector_ticks, args.train_steps = 20, 5, 10, 3
    if device.type == "cuda":
        _, tcfg = load_presets(Path(args.config))
        args.ae_batches = args.ae_batches or [tcfg.ae_batch, 96, 256]
        args.dyn_batches = args.dyn_batches or [tcfg.batch_size, 32, 128]
    out = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "torch": torch.__version__, "cuda": torch.version.cuda, "xformers": attention.xformers_status(),
           "gsplat": gsplat_status(), "checkpoint": args.checkpoint}
    if args.append and Path(args.out).exists():
        out = json.loads(Path(args.out).read_text()) | out
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    code = 0
    for name in [s.strip() for s in args.sections.split(",") if s.strip()]:
        t0 = time.perf_counter()
        try:
            out[name] = SECTIONS[name](args, device)
        except Exception as e:
            out[name] = {"error": f"{type(e).__name__}: {e}", "where": traceback.format_exc(limit=4)[-800:]}
            code = 1
        out[name]["seconds"] = round(time.perf_counter() - t0, 1)
        if args.note:
            out[name]["note"] = args.note
        out["attention_backend_last"] = attention.last_backend()
        out["xformers"] = attention.xformers_status()
        Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
