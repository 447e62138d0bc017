"""Stage 1: the frame autoencoder, trained on single frames (RGB + depth when the data has it), then its latent
normalisation fitted; the stage's state is final only after that fit."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from worldmodel.autoencoder import AutoencoderLoss, AutoencoderLosses
from worldmodel.training.common import _hook, apply_gradients, broadcast_module, lr_at, stoppable_steps


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


class AutoencoderStage:
    """Stage 1 of the trainer (a part of worldmodel.train.Trainer)."""

    # -- stage 1 ---------------------------------------------------------------------------------------

    def train_autoencoder(self) -> None:
        """Stage 1. The state is final (progress `final: true`) only once the latent normalisation is fitted: a
        run killed between the last step and the fit fits it on resume."""
        cfg = self.cfg
        opt = torch.optim.AdamW(self.ae.parameters(), lr=cfg.ae_lr, weight_decay=1e-4)
        progress = self._restore("ae", self.ae, opt)
        if progress is None:
            start = 0
            self._seed_stage(1)
        else:
            start = int(progress["step"])
            if "final" not in progress:  # the old format: final when the normalisation was fitted before the save
                progress["final"] = bool(start >= cfg.ae_steps and not (
                    torch.all(self.ae.latent_shift == 0) and torch.all(self.ae.latent_scale == 1)))
        broadcast_module(self.ae, self.d)
        self.step["autoencoder"] = start
        if self.resume:
            self.log.resume_at("autoencoder", start)
        if cfg.ae_steps == 0:
            return  # fine-tuning: init_from's autoencoder, its normalisation included, is kept as it is
        if progress is not None and progress["final"]:
            if start != cfg.ae_steps:
                self._say(f"note: the run's autoencoder state is at step {start}, train.ae_steps is {cfg.ae_steps}; "
                          f"it is kept as it is")
            return
        if start >= cfg.ae_steps:
            self._finish_autoencoder(opt, start)
            return
        self._note_no_rng("ae", progress)
        loss_fn = AutoencoderLoss(depth_weight=0.5 if self.use_depth else 0.0)
        self._say(f"autoencoder: steps {start}..{cfg.ae_steps}, {self.store.frames} frames")
        from tqdm import tqdm

        bar = tqdm(range(start, cfg.ae_steps), desc="autoencoder", disable=not self.progress, initial=start, total=cfg.ae_steps)
        last_ckpt = time.time()
        ae_warmup = min(cfg.warmup, cfg.ae_steps // 10)
        self.ae.train()
        for step in stoppable_steps("autoencoder", bar, self._say, self.times):
            losses, recon, rgb = self._autoencoder_step(self.ae, opt, loss_fn, lr_at(step, cfg.ae_steps, cfg.ae_lr, ae_warmup))
            if step % cfg.log_every == 0:
                psnr = recon_psnr(recon, rgb)
                self.log.write("autoencoder", step, loss=losses.total.item(), rgb=losses.rgb.item(), depth=losses.depth.item(), psnr=psnr)
                bar.set_postfix(loss=f"{losses.total.item():.4f}", psnr=f"{psnr:.1f}")
            self.step["autoencoder"] = step + 1
            _hook("ae.step", step + 1)
            if self._checkpoint_due(last_ckpt, step + 1 == cfg.ae_steps):
                self._save("ae", self.ae, opt, self._progress(step + 1, cfg.ae_steps, cfg.ae_lr, ae_warmup, final=False))
                _hook("ae.saved", step + 1)
                last_ckpt = time.time()
                self._stop_if_asked("autoencoder", step + 1)
        self._finish_autoencoder(opt, cfg.ae_steps)

    def _autoencoder_step(self, trained: torch.nn.Module, opt: torch.optim.Optimizer, loss_fn: AutoencoderLoss,
                          lr: float) -> tuple[AutoencoderLosses, torch.Tensor, torch.Tensor]:
        """One step on a random batch of frames: the autoencoder's forward and loss, the gradients applied to `trained`
        (the whole autoencoder, or its decoder alone) -> (losses, reconstructed rgb clamped to [-1, 1], the batch's rgb)."""
        for g in opt.param_groups:
            g["lr"] = lr
        rows = self.rng.integers(0, self.store.frames, self.cfg.ae_batch)
        rgb, depth = self._frames(rows)
        with self.autocast:
            out = self.ae(rgb, depth)
            losses = loss_fn(self.ae, out, rgb, depth)
        apply_gradients(trained, opt, losses.total, self.cfg.grad_clip, self.d)
        return losses, out.recon.detach()[:, :3].float().clamp(-1, 1), rgb

    def _finish_autoencoder(self, opt: torch.optim.Optimizer, step: int) -> None:
        """Fit the latent normalisation, then declare the autoencoder state final and export the model."""
        _hook("ae.trained", step)
        self.ae.eval()
        self._fit_latent_normalization()
        ae_warmup = min(self.cfg.warmup, self.cfg.ae_steps // 10)
        self._save("ae", self.ae, opt, self._progress(step, self.cfg.ae_steps, self.cfg.ae_lr, ae_warmup, final=True))
        _hook("ae.final", step)
        self.export("autoencoder", step)

    @torch.no_grad()
    def _fit_latent_normalization(self) -> None:
        rows = np.random.default_rng(self.cfg.seed).integers(0, self.store.frames, min(2048, self.store.frames))
        raw = []
        for chunk in np.array_split(rows, max(1, len(rows) // 256)):
            rgb, depth = self._frames(chunk)
            z = self.ae.encode(rgb, depth).float()
            raw.append(z * self.ae.latent_scale[:, None, None] + self.ae.latent_shift[:, None, None])  # undo any earlier fit
        self.ae.fit_latent_normalization(torch.cat(raw))
        broadcast_module(self.ae, self.d)
