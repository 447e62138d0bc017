"""The trainer's data side: every frame of the recordings (cached in state/, keyed on their contents), frames on
the training device, and the latents of every frame with their memory images (cached in state/latents.npz, keyed
on the autoencoder's weights, the recordings and the memory settings)."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from worldmodel.checkpoint import module_hash
from worldmodel.data import FrameStore, find_recordings, frames_to_tensor, recordings_key
from worldmodel.training.common import ROLLOUT_INFO_KEYS, _hook
from worldmodel.training.memory_images import memory_latents, own_rollouts

if TYPE_CHECKING:
    from worldmodel.training.context import TrainContext


# The trainer's data (a function of training.context.TrainContext).


def load_data(ctx: TrainContext) -> FrameStore:
    """All frames of the data set; cached in state/ so a resumed run starts in seconds."""
    size = tuple(ctx.mcfg.frame_size)
    sources = [str(p) for p in find_recordings(list(ctx.cfg.data))]
    ctx.store_key = recordings_key(sources)  # the recordings' contents: both caches are keyed on it
    if ctx.cfg.max_frames:
        store = FrameStore.load(list(ctx.cfg.data), size, ctx.cfg.max_frames, progress=ctx.progress)
        ctx.store_key = f"{recordings_key(store.sources)}:{ctx.cfg.max_frames}"
        return store
    cache = ctx.state_dir / f"frames_{size[0]}x{size[1]}.npz"
    store = FrameStore.load_cache(cache, sources, ctx.store_key)
    if store is None:
        store = FrameStore.load(list(ctx.cfg.data), size, None, progress=ctx.progress)
        if ctx.d.main:
            ctx.state_dir.mkdir(parents=True, exist_ok=True)
            store.save(cache, ctx.store_key)
    return store

def frame_batch(ctx: TrainContext, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Frames `rows` of the data, on the training device (rgb [B, 3, H, W] in [-1, 1], depth [B, 1, H, W] m)."""
    rgb = frames_to_tensor(ctx.store.rgb[rows]).to(ctx.device, non_blocking=True)
    depth = None
    if ctx.use_depth:
        depth = torch.from_numpy(ctx.store.depth[rows].astype(np.float32))[:, None].to(ctx.device, non_blocking=True)
    return rgb, depth

# -- latents and memory images ---------------------------------------------------------------------

@torch.no_grad()
def encode_all(ctx: TrainContext) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Latents [N, C, h, w] of every frame, memory conditioning [N, C+1, h, w] (None without poses/depth), and
    with train.memory_mode "rollout" the dream's own context latents [N, C, h, w] (training/rollouts.py; else
    None)."""
    cache = ctx.state_dir / "latents.npz"
    # Keyed on what the latents are made from: the autoencoder's weights, the recordings' contents, the
    # memory settings. Any change (another autoencoder, an edited recording) rebuilds them.
    key = json.dumps({"autoencoder": module_hash(ctx.ae), "data": ctx.store_key, "frames": ctx.store.frames,
                      "memory_mode": ctx.cfg.memory_mode, "memory": memory_key(ctx),
                      "use_memory": ctx.mcfg.dynamics.use_memory}, sort_keys=True)
    if cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as z:
                if "key" in z.files and str(z["key"]) == key:
                    mem = torch.from_numpy(z["memory"]) if "memory" in z.files else None
                    ctx = torch.from_numpy(z["context"]) if "context" in z.files else None
                    return torch.from_numpy(z["latents"]), mem, ctx
        except (OSError, ValueError, KeyError, EOFError) as e:
            ctx.say(f"note: the latents cache {cache} is unreadable ({e}); encoding again")
    from tqdm import tqdm

    N = ctx.store.frames
    t_prepare = time.perf_counter()
    lat = torch.zeros((N, *ctx.mcfg.latent_shape))
    for rows in tqdm(np.array_split(np.arange(N), max(1, N // 256)), desc="encoding frames", disable=not ctx.progress):
        rgb, depth = frame_batch(ctx, rows)
        lat[rows] = ctx.ae.encode(rgb, depth).float().cpu()
    memory = context = None
    if ctx.store.c2w is not None and ctx.store.depth is not None and ctx.mcfg.dynamics.use_memory:
        if ctx.cfg.memory_mode == "rollout":
            rollouts = own_rollouts(ctx, lat)
            memory, context = rollouts.memory, rollouts.context
        else:
            memory = memory_latents(ctx, lat)
    # the latents and memory images of every frame, in this memory mode: [frames, seconds]
    ctx.times[f"prepare_{ctx.cfg.memory_mode if memory is not None else 'latents'}"] = [
        N, round(time.perf_counter() - t_prepare, 3)]
    if ctx.d.main:
        arrays = {"latents": lat.numpy(), "frames": np.array(N), "memory_mode": np.array(ctx.cfg.memory_mode),
                  "memory_settings": np.array(memory_key(ctx)), "key": np.array(key)}
        if memory is not None:
            arrays["memory"] = memory.numpy()
        if context is not None:
            arrays["context"] = context.numpy()
        ctx.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = ctx.state_dir / "latents.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, cache)
    _hook("latents.encoded")
    return lat, memory, context

def memory_key(ctx: TrainContext) -> str:
    """The memory settings as the latents cache records them (a change rebuilds the memory images)."""
    if ctx.cfg.memory_mode == "reproject":
        return "{}"
    key = dict(ctx.memory_settings)
    if ctx.cfg.memory_mode in ("splat_predicted", "rollout"):
        key["predicted_by"] = ctx.init_hash  # another starting model predicts other frames
    if ctx.cfg.memory_mode == "rollout":  # the dreams also depend on how init_from dreams, and on the seed
        key.update(rollout_ticks=ctx.cfg.rollout_ticks, seed=ctx.cfg.seed,
                   dream={k: ctx.init_info.get(k) for k in ROLLOUT_INFO_KEYS})
    return json.dumps(key, sort_keys=True)
