"""Stage 1: the frame autoencoder, trained on single frames (RGB + depth when the data has it), then its latent
normalisation fitted; the stage's state is final only after that fit."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from worldmodel.autoencoder import AutoencoderLoss, AutoencoderLosses
from worldmodel.training.common import _hook, apply_gradients, broadcast_module, lr_at, stoppable_steps
from worldmodel.training.data import frame_batch

if TYPE_CHECKING:
    from worldmodel.training.context import TrainContext


def recon_psnr(recon: torch.Tensor, rgb: torch.Tensor) -> float:
    """PSNR (dB) of a batch's reconstruction, both in [-1, 1] (the logged training figure)."""
    return -10 * math.log10(max(1e-10, float(((recon - rgb) ** 2).mean()) / 4))


def batch_sharpness(frames: torch.Tensor, truth: torch.Tensor) -> float:
    """The evaluation's sharpness (summed image gradients over the truth's) of a batch of RGB frames in [-1, 1]
    [B, 3, H, W] (the logged training figure)."""
    from worldmodel.data import tensor_to_frames
    from worldmodel.evaluation.metrics import gradient_sum

    f, t = tensor_to_frames(frames.detach().float()), tensor_to_frames(truth.detach().float())
    return float(gradient_sum(f).sum() / max(gradient_sum(t).sum(), 1e-12))


# Stage 1 of the trainer (a function of training.context.TrainContext).


# -- stage 1 ---------------------------------------------------------------------------------------

def train_autoencoder(ctx: TrainContext) -> None:
    """Stage 1. The state is final (progress `final: true`) only once the latent normalisation is fitted: a
    run killed between the last step and the fit fits it on resume."""
    cfg = ctx.cfg
    opt = torch.optim.AdamW(ctx.ae.parameters(), lr=cfg.ae_lr, weight_decay=1e-4)
    progress = ctx.restore_stage("ae", ctx.ae, opt)
    if progress is None:
        start = 0
        ctx.seed_stage(1)
    else:
        start = int(progress["step"])
        if "final" not in progress:  # the old format: final when the normalisation was fitted before the save
            progress["final"] = bool(start >= cfg.ae_steps and not (
                torch.all(ctx.ae.latent_shift == 0) and torch.all(ctx.ae.latent_scale == 1)))
    broadcast_module(ctx.ae, ctx.d)
    ctx.step["autoencoder"] = start
    if ctx.resume:
        ctx.log.resume_at("autoencoder", start)
    if cfg.ae_steps == 0:
        return  # fine-tuning: init_from's autoencoder, its normalisation included, is kept as it is
    if progress is not None and progress["final"]:
        if start != cfg.ae_steps:
            ctx.say(f"note: the run's autoencoder state is at step {start}, train.ae_steps is {cfg.ae_steps}; "
                      f"it is kept as it is")
        return
    if start >= cfg.ae_steps:
        _finish_autoencoder(ctx, opt, start)
        return
    ctx._note_no_rng("ae", progress)
    loss_fn = AutoencoderLoss(depth_weight=0.5 if ctx.use_depth else 0.0)
    ctx.say(f"autoencoder: steps {start}..{cfg.ae_steps}, {ctx.store.frames} frames")
    from tqdm import tqdm

    bar = tqdm(range(start, cfg.ae_steps), desc="autoencoder", disable=not ctx.progress, initial=start, total=cfg.ae_steps)
    last_ckpt = time.time()
    ae_warmup = min(cfg.warmup, cfg.ae_steps // 10)
    ctx.ae.train()
    for step in stoppable_steps("autoencoder", bar, ctx.say, ctx.times):
        losses, recon, rgb = autoencoder_step(ctx, ctx.ae, opt, loss_fn, lr_at(step, cfg.ae_steps, cfg.ae_lr, ae_warmup))
        if step % cfg.log_every == 0:
            psnr = recon_psnr(recon, rgb)
            ctx.log.write("autoencoder", step, loss=losses.total.item(), rgb=losses.rgb.item(), depth=losses.depth.item(), psnr=psnr)
            bar.set_postfix(loss=f"{losses.total.item():.4f}", psnr=f"{psnr:.1f}")
        ctx.step["autoencoder"] = step + 1
        _hook("ae.step", step + 1)
        if ctx.checkpoint_due(last_ckpt, step + 1 == cfg.ae_steps):
            ctx.save_stage("ae", ctx.ae, opt, ctx.progress_state(step + 1, cfg.ae_steps, cfg.ae_lr, ae_warmup, final=False))
            _hook("ae.saved", step + 1)
            last_ckpt = time.time()
            ctx.stop_if_asked("autoencoder", step + 1)
    _finish_autoencoder(ctx, opt, cfg.ae_steps)

def autoencoder_step(ctx: TrainContext, trained: torch.nn.Module, opt: torch.optim.Optimizer, loss_fn: AutoencoderLoss,
                      lr: float) -> tuple[AutoencoderLosses, torch.Tensor, torch.Tensor]:
    """One step on a random batch of frames: the autoencoder's forward and loss, the gradients applied to `trained`
    (the whole autoencoder, or its decoder alone) -> (losses, reconstructed rgb clamped to [-1, 1], the batch's rgb)."""
    for g in opt.param_groups:
        g["lr"] = lr
    rows = ctx.rng.integers(0, ctx.store.frames, ctx.cfg.ae_batch)
    rgb, depth = frame_batch(ctx, rows)
    with ctx.autocast:
        out = ctx.ae(rgb, depth)
        losses = loss_fn(ctx.ae, out, rgb, depth)
    apply_gradients(trained, opt, losses.total, ctx.cfg.grad_clip, ctx.d)
    return losses, out.recon.detach()[:, :3].float().clamp(-1, 1), rgb

def _finish_autoencoder(ctx: TrainContext, opt: torch.optim.Optimizer, step: int) -> None:
    """Fit the latent normalisation, then declare the autoencoder state final and export the model."""
    _hook("ae.trained", step)
    ctx.ae.eval()
    _fit_latent_normalization(ctx)
    ae_warmup = min(ctx.cfg.warmup, ctx.cfg.ae_steps // 10)
    ctx.save_stage("ae", ctx.ae, opt, ctx.progress_state(step, ctx.cfg.ae_steps, ctx.cfg.ae_lr, ae_warmup, final=True))
    _hook("ae.final", step)
    ctx.export("autoencoder", step)

@torch.no_grad()
def _fit_latent_normalization(ctx: TrainContext) -> None:
    rows = np.random.default_rng(ctx.cfg.seed).integers(0, ctx.store.frames, min(2048, ctx.store.frames))
    raw = []
    for chunk in np.array_split(rows, max(1, len(rows) // 256)):
        rgb, depth = frame_batch(ctx, chunk)
        z = ctx.ae.encode(rgb, depth).float()
        raw.append(z * ctx.ae.latent_scale[:, None, None] + ctx.ae.latent_shift[:, None, None])  # undo any earlier fit
    ctx.ae.fit_latent_normalization(torch.cat(raw))
    broadcast_module(ctx.ae, ctx.d)
