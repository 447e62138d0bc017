"""Stage 2: the dynamics transformer on clips of latents, with the flow-matching objective (Diffusion Forcing
noise levels), memory images dropped at random, and the ego-motion loss when the data has poses."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from worldmodel.flow import FlowMatching
from worldmodel.training.common import _hook, apply_gradients, lr_at, stoppable_steps
from worldmodel.training.data import encode_all
from worldmodel.training.memory_images import memory_batch

if TYPE_CHECKING:
    from worldmodel.training.context import TrainContext


# Stage 2 of the trainer (a function of training.context.TrainContext).


# -- stage 2 ---------------------------------------------------------------------------------------

def train_dynamics(ctx: TrainContext) -> None:
    cfg = ctx.cfg
    data = clip_data(ctx)
    starts = ctx.clip_starts
    opt = torch.optim.AdamW(ctx.dyn.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    start = ctx.begin_stage("dyn", "dynamics", ctx.dyn, opt, seed=2)
    if start >= cfg.steps:
        if start > cfg.steps:
            ctx.say(f"note: the run's dynamics state is at step {start}, past train.steps {cfg.steps}: "
                      f"nothing to train; the model stays at step {start}")
        return
    objective = FlowMatching(context_noise_max=cfg.context_noise_max, pure_noise_prob=cfg.pure_noise_prob,
                             pose_weight=cfg.pose_weight)
    ctx.say(f"dynamics: steps {start}..{cfg.steps}, {len(starts)} clip starts of {cfg.clip_frames} frames, "
              f"memory {'on' if data.memory is not None else 'off'}, {sum(p.numel() for p in ctx.dyn.parameters())/1e6:.2f}M params")
    from tqdm import tqdm

    bar = tqdm(range(start, cfg.steps), desc="dynamics", disable=not ctx.progress, initial=start, total=cfg.steps)
    last_ckpt = time.time()
    ctx.dyn.train()
    for step in stoppable_steps("dynamics", bar, ctx.say, ctx.times):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.steps, cfg.lr, cfg.warmup)
        b = clip_batch(ctx, data)
        t = weights = None
        if b.x_in is not None:  # student forcing: the dream's regime (its context at its commit level, the
            t, weights = student_levels(ctx, len(b.x0))  # last frame from pure noise), targets the truth
        with ctx.autocast:
            losses = objective.loss(ctx.dyn, b.x0, b.actions, memory=b.memory, memory_present=b.present,
                                    pose_target=b.pose, pose_valid=b.pose_valid, t=t, x_in=b.x_in,
                                    frame_weights=weights)
        gnorm = apply_gradients(ctx.dyn, opt, losses.total, cfg.grad_clip, ctx.d)
        if step % cfg.log_every == 0:
            ctx.log.write("dynamics", step, loss=losses.total.item(), flow=losses.flow.item(), pose=losses.pose.item(),
                           grad_norm=float(gnorm), lr=opt.param_groups[0]["lr"])
            bar.set_postfix(flow=f"{losses.flow.item():.4f}", pose=f"{losses.pose.item():.4f}")
        ctx.step["dynamics"] = step + 1
        _hook("dyn.step", step + 1)
        if ctx.checkpoint_due(last_ckpt, step + 1 == cfg.steps):
            ctx.save_stage("dyn", ctx.dyn, opt, ctx.progress_state(step + 1, cfg.steps, cfg.lr, cfg.warmup))
            _hook("dyn.saved", step + 1)
            ctx.export("dynamics", step + 1)
            last_ckpt = time.time()
            ctx.stop_if_asked("dynamics", step + 1)
    ctx.dyn.eval()

def student_levels(ctx: TrainContext, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise levels [B, T] and frame weights [T] of a student-forced clip: the context frames at the level the
    dream commits its frames at (U(0, context_noise_max) when the model has none), the last frame at 1, the
    level every one-step sample starts from; the last frame weighs as much as the context frames together."""
    T, dev = ctx.cfg.clip_frames, ctx.device
    level = ctx.dream_context_noise()
    t = torch.full((batch, T), level, device=dev)
    if level == 0:
        t = torch.rand((batch, T), device=dev) * ctx.cfg.context_noise_max
    t[:, -1] = 1.0
    weights = torch.full((T,), 0.5 / (T - 1), device=dev)
    weights[-1] = 0.5
    return t, weights * T  # mean 1

def clip_data(ctx: TrainContext) -> ClipData:
    """The latent data set on the training device (100k frames of the shipped recipe: ~1.8 GB with their
    memory images): a step gathers its clips there, no host copies but the clip indices."""
    lat, memory, context = encode_all(ctx)
    dev = ctx.device
    is_start = np.zeros(ctx.store.frames, bool)
    is_start[ctx.store.starts] = True
    return ClipData(lat=lat.to(dev), memory=memory.to(dev) if memory is not None else None,
                    ego=torch.from_numpy(ctx.ego).to(dev) if ctx.ego is not None else None,
                    actions=torch.from_numpy(ctx.store.actions).to(dev), is_start=is_start, starts=ctx.clip_starts,
                    context=context.to(dev) if context is not None else None)

def clip_batch(ctx: TrainContext, data: ClipData) -> ClipBatch:
    """batch_size clips of clip_frames frames from the run's sampler: latents, actions, memory images (dropped
    at random, memory_batch) and ego-motion targets."""
    cfg, dev = ctx.cfg, ctx.device
    rows_np = ctx.rng.choice(data.starts, cfg.batch_size)[:, None] + np.arange(cfg.clip_frames)  # [B, T]
    rows = torch.from_numpy(rows_np).to(dev)
    mem = present = None
    if data.memory is not None:
        mem, present = memory_batch(data.memory[rows], cfg, ctx.rng)
    pose = pose_valid = None
    if data.ego is not None:
        pose = data.ego[rows]
        pose_valid = torch.from_numpy(~data.is_start[rows_np]).to(dev)
        pose_valid[:, 0] = False  # the clip's first frame has no earlier frame in view
    return ClipBatch(x0=data.lat[rows], actions=data.actions[rows], memory=mem, present=present, pose=pose,
                     pose_valid=pose_valid, x_in=data.context[rows] if data.context is not None else None,
                     memory_clean=data.memory[rows[:, -1]] if data.memory is not None else None)


@dataclass
class ClipData:
    lat: torch.Tensor  # [N, C, h, w] every frame's latent
    memory: torch.Tensor | None  # [N, C+1, h, w] memory images, or None
    ego: torch.Tensor | None  # [N, 5] ego-motion targets, or None without poses
    actions: torch.Tensor  # [N, 8]
    is_start: np.ndarray  # [N] bool: an episode's first frame
    starts: np.ndarray  # the rows a clip may start at (with own rollouts: inside one dreamed segment)
    context: torch.Tensor | None = None  # [N, C, h, w] the dream's own context latents (memory_mode "rollout")


@dataclass
class ClipBatch:
    x0: torch.Tensor  # [B, T, C, h, w]
    actions: torch.Tensor  # [B, T, 8]
    memory: torch.Tensor | None
    present: torch.Tensor | None
    pose: torch.Tensor | None
    pose_valid: torch.Tensor | None
    x_in: torch.Tensor | None = None  # [B, T, C, h, w] the frames the inputs are noised from, when not x0 (own rollouts)
    memory_clean: torch.Tensor | None = None  # [B, C+1, h, w] the last frame's memory image before noise and dropping
