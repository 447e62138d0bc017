"""Stage 1b: sharpen the decoder. The encoder is frozen, so the latents - and a dynamics trained on them - stay
exactly as they are; the decoder alone is fine-tuned on the autoencoder's pixel losses plus the focal frequency
loss (Jiang et al., arXiv 2012.12821), which puts the weight on the frequencies reconstructed worst: the fine
texture an L1 loss averages away. Off unless train.decoder_steps > 0."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

from worldmodel.autoencoder import AutoencoderLoss
from worldmodel.training.autoencoder import autoencoder_step, batch_sharpness, recon_psnr
from worldmodel.training.common import _hook, lr_at, stoppable_steps

if TYPE_CHECKING:
    from worldmodel.training.context import TrainContext


# Stage 1b of the trainer (a function of training.context.TrainContext).


def sharpen_decoder(ctx: TrainContext) -> None:
    cfg = ctx.cfg
    if cfg.decoder_steps == 0:
        return
    opt = torch.optim.AdamW(ctx.ae.decoder.parameters(), lr=cfg.decoder_lr, weight_decay=1e-4)
    start = ctx.begin_stage("dec", "decoder", ctx.ae, opt, seed=3)
    if start >= cfg.decoder_steps:
        return
    loss_fn = AutoencoderLoss(depth_weight=0.5 if ctx.use_depth else 0.0, freq_weight=cfg.decoder_freq_weight)
    ctx.say(f"decoder: steps {start}..{cfg.decoder_steps} (encoder frozen, focal frequency weight "
              f"{cfg.decoder_freq_weight})")
    from tqdm import tqdm

    bar = tqdm(range(start, cfg.decoder_steps), desc="decoder", disable=not ctx.progress, initial=start,
               total=cfg.decoder_steps)
    warmup = min(cfg.warmup, cfg.decoder_steps // 10)
    ctx.ae.decoder.train()
    for p in ctx.ae.encoder.parameters():  # frozen: the latents stay exactly as they were
        p.requires_grad_(False)
    try:
        _decoder_steps(ctx, opt, loss_fn, bar, warmup)
    finally:
        ctx.ae.eval()
        for p in ctx.ae.encoder.parameters():
            p.requires_grad_(True)

def _decoder_steps(ctx: TrainContext, opt: torch.optim.Optimizer, loss_fn: AutoencoderLoss, bar, warmup: int) -> None:
    cfg = ctx.cfg
    last_ckpt = time.time()
    for step in stoppable_steps("decoder", bar, ctx.say, ctx.times):
        losses, recon, rgb = autoencoder_step(ctx, ctx.ae.decoder, opt, loss_fn,
                                                    lr_at(step, cfg.decoder_steps, cfg.decoder_lr, warmup))
        if step % cfg.log_every == 0:
            psnr = recon_psnr(recon, rgb)
            ctx.log.write("decoder", step, loss=losses.total.item(), freq=losses.freq.item(), psnr=psnr,
                           sharpness=batch_sharpness(recon, rgb))
            bar.set_postfix(loss=f"{losses.total.item():.4f}", psnr=f"{psnr:.1f}")
        ctx.step["decoder"] = step + 1
        if ctx.checkpoint_due(last_ckpt, step + 1 == cfg.decoder_steps):
            ctx.save_stage("dec", ctx.ae, opt, ctx.progress_state(step + 1, cfg.decoder_steps, cfg.decoder_lr, warmup))
            _hook("dec.saved", step + 1)
            last_ckpt = time.time()
            ctx.stop_if_asked("decoder", step + 1)
