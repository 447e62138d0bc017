"""The dream as the evaluation runs it: `batch_dreams` builds B dreams through the one tick (worldmodel.tick) with the
model's own camera, memory-first and scene-memory settings, as play.py dreams; `dream_batch` starts them from real
views and steps them along known actions; `dream_open_loop` does that for the open loop's rollouts; `dream_from`
continues one DreamWorld from recorded frames. Also the held-out walks of a kind (`held_out`) and the sizes they are
rendered at."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodel.checkpoint import LoadedModel
from worldmodel.data import frames_to_tensor, tensor_to_frames
from worldmodel.evaluation.trajectories import Trajectory
from worldmodel.flow import FlowSampler
from worldmodel.tick import Dreams, StartView, scaled_K


@torch.no_grad()
def encode(model: LoadedModel, rgb: np.ndarray, depth: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] + metres [N, H, W] -> latents [N, C, h, w]."""
    ae, dev = model.autoencoder, model.device
    out = []
    for i in range(0, len(rgb), 128):
        d = torch.from_numpy(depth[i:i + 128])[:, None].to(dev) if ae.config.use_depth else None
        out.append(ae.encode(frames_to_tensor(rgb[i:i + 128]).to(dev), d).float())
    return torch.cat(out)


@torch.no_grad()
def decode(model: LoadedModel, z: torch.Tensor) -> np.ndarray:
    return tensor_to_frames(model.autoencoder.decode(z.float()).rgb)


@dataclass
class RolloutResult:
    pred: np.ndarray  # [B, Hmax, H, W, 3] dreamed frames at t0+1 .. t0+Hmax
    c2w: np.ndarray  # [B, Hmax, 4, 4] integrated poses
    depth: np.ndarray | None = None  # [B, Hmax, H, W] the frames' depth (metres), None for a model without depth



def say(text: str) -> None:
    """A progress line on stderr (the report goes to stdout and report.json)."""
    print(f"evaluate: {text}", file=sys.stderr, flush=True)


def batch_dreams(model_dir: Path, model: LoadedModel, batch: int, steps: int = 1, context_noise: float | None = None,
                 memory: bool | None = None, memory_settings: dict[str, Any] | None = None) -> Dreams:
    """`batch` dreams (worldmodel.tick) with the camera, memory-first and scene-memory settings of the model's own
    model.yaml, as play.py dreams (`memory`: None takes the model's choice); bf16 autocast on CUDA."""
    from worldmodel.device import default_amp
    from worldmodel.dream import build_dreams

    cn = model.settings.context_noise if context_noise is None else context_noise
    return build_dreams(model, str(model_dir), batch, FlowSampler(steps=steps, context_noise=cn),
                        default_amp(model.device), memory=memory, memory_settings=memory_settings)[0]


def dream_batch(dreams: Dreams, views: list[StartView], seeds: list[int],
                actions: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Every row started from its real frames (`views`, seed `seeds[b]`), then dreamed along its actions [T_b, 8]
    together (rows that end early are stepped with no input and cut): per row the frames [T_b + 1, H, W, 3], cameras
    [T_b + 1, 4, 4] and shown depth [T_b + 1, H, W] (None without depth), the start's last frame first."""
    out = dreams.start(views, seeds)
    rgb, c2w, depth = [out.rgb], [out.cam_to_world], [out.depth]
    T = max(len(a) for a in actions)
    for t in range(T):
        a = np.stack([np.asarray(x[t], np.float32) if t < len(x) else np.zeros(8, np.float32) for x in actions])
        out = dreams.step(a)
        rgb.append(out.rgb)
        c2w.append(out.cam_to_world)
        depth.append(out.depth)
    rgb, c2w = np.stack(rgb, 1), np.stack(c2w, 1)
    depth = np.stack(depth, 1) if all(d is not None for d in depth) else None
    return [(rgb[b, :len(actions[b]) + 1], c2w[b, :len(actions[b]) + 1],
             None if depth is None else depth[b, :len(actions[b]) + 1]) for b in range(len(views))]


def recorded_dream_world(model_dir: Path, memory: bool, steps: int = 1, context_noise: float | None = None,
                         memory_settings: dict[str, Any] | None = None, device: str = "auto"):
    """A DreamWorld that only dreams on from recorded frames (`dream_from`), with the camera, memory-first and
    scene-memory settings of the model's own model.yaml (info.dream, info.memory) unless `memory_settings`. Its
    prompt world is never built, so it is named as the built-in plane: a model whose own prompt world is a
    module:Class (one's own game) is not refused, and nothing named in a model.yaml is imported."""
    from worldmodel.dream import DreamWorld

    return DreamWorld(str(model_dir), steps=steps, memory=memory, context_noise=context_noise, prompt_world="plane",
                      memory_settings=memory_settings, device=device, upsample=False)


def dream_from(world, tr: Trajectory, t0: int, context: int, horizon: int,
               seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The dream started (DreamWorld.start) from the `context` true frames of `tr` up to tick t0 (as context and,
    with a memory, as real views in it), then stepped along the true actions: frames [horizon, H, W, 3], cameras
    [horizon, 4, 4] and the shown depth [horizon, H, W] (None without depth) at ticks t0 + 1 .. t0 + horizon."""
    from engine.action import Action

    ctx = slice(t0 - context + 1, t0 + 1)
    world.start(tr.rgb[ctx], tr.depth[ctx], tr.c2w[ctx], tr.K, tr.actions[ctx], seed=seed)
    obs = [world.step(Action.from_array(tr.actions[t0 + h])) for h in range(1, horizon + 1)]
    depth = np.stack([o.depth for o in obs]) if all(o.depth is not None for o in obs) else None
    return np.stack([o.rgb for o in obs]), np.stack([o.cam_to_world for o in obs]), depth


def dream_open_loop(model_dir: Path, model: LoadedModel, trajs: list[Trajectory], starts: list[tuple[int, int]],
                    context: int, horizon: int, steps: int, seed: int, context_noise: float, memory: bool | None = None,
                    batch: int = 24) -> RolloutResult:
    """The open loop as play.py dreams (the one tick, worldmodel.tick: camera, memory first and scene memory as the
    model's model.yaml says, `memory` to override), `batch` rollouts at a time: rollout r starts from the `context`
    true frames of its walk up to its start tick (as context and, with a memory, as real views in it) with seed
    seed + r, then dreams `horizon` ticks along the true actions. Frames, cameras and depth at t0 + 1 .. t0 + horizon."""
    runs = []
    for lo in range(0, len(starts), batch):
        part = starts[lo:lo + batch]
        dreams = batch_dreams(model_dir, model, len(part), steps, context_noise, memory)
        views, acts = [], []
        for i, t0 in part:
            tr, ctx = trajs[i], slice(t0 - context + 1, t0 + 1)
            views.append(StartView(tr.rgb[ctx], tr.depth[ctx],
                                   tr.c2w[ctx], tr.K if tr.K is not None else default_K(model), tr.actions[ctx]))
            acts.append(tr.actions[t0 + 1:t0 + horizon + 1])
        runs += dream_batch(dreams, views, [seed + lo + r for r in range(len(part))], acts)
    depth = np.stack([d[1:] for _, _, d in runs]) if all(d is not None for _, _, d in runs) else None
    return RolloutResult(np.stack([f[1:] for f, _, _ in runs]), np.stack([c[1:] for _, c, _ in runs]), depth)


def default_K(model: LoadedModel) -> np.ndarray:
    H, W = model.config.frame_size
    return scaled_K(None, (H, W), H, W)


def measure_ticks_per_s(model_dir: Path, model: LoadedModel, steps: int, ticks: int = 100) -> float:
    """Batch-1 dream ticks per second (the one tick, worldmodel.tick, without a scene memory: pose, camera, sampling,
    decode to host frames, commit) walking forward from a grey frame, after a warm-up."""
    dreams = batch_dreams(model_dir, model, 1, steps, memory=False)
    H, W = model.config.frame_size
    depth = np.full((1, H, W), 3.0, np.float32) if model.autoencoder.config.use_depth else None
    dreams.start([StartView(np.full((1, H, W, 3), 128, np.uint8), depth, np.eye(4)[None], default_K(model),
                            np.zeros((1, 8), np.float32))], [0])
    a = np.zeros((1, 8), np.float32)
    a[0, 0] = 1.0
    for i in range(ticks + 20):
        if i == 20:
            t0 = time.perf_counter()
        dreams.step(a)
    return ticks / (time.perf_counter() - t0)


def held_out(split: str, kind: str, max_entries: int | None) -> list:
    from engine.arena.splits import held_out_entries

    return held_out_entries(split, kind)[:max_entries]


def render_size(H: int, W: int, render_scale: int) -> tuple[int, int]:
    return H * render_scale, W * render_scale


