"""The frame autoencoder: RGB (+ depth) <-> a small latent grid the dynamics model works in.

    encode: rgb [B, 3, H, W] in [-1, 1], depth [B, 1, H, W] metres  ->  latent [B, C, H/ds, W/ds]
    decode: latent  ->  rgb [B, 3, H, W] in [-1, 1], depth [B, 1, H, W] metres (None without depth)

Depth is log-normalised inside (log1p(d) / log1p(max_depth) mapped to [-1, 1]) so near geometry gets
the resolution and far geometry does not dominate the loss. Both halves are plain residual conv stacks
with no normalisation layers and channels_last weights, because the decoder runs every tick on two
CPU threads (and the encoder once per tick for the rendered memory image). Latents are deterministic;
a buffer pair (shift, scale) maps them to ~zero-mean unit variance for the flow model, fitted once
after training with `fit_latent_normalization`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from worldmodel.config import AutoencoderConfig


@dataclass
class DecodedFrame:
    """A decoded frame."""

    rgb: Tensor  # [B, 3, H, W] in [-1, 1]
    depth: Tensor | None  # [B, 1, H, W] metres, None when the model has no depth channel


@dataclass
class AutoencoderOutput:
    """What a training forward returns."""

    latent: Tensor  # [B, C, h, w] (normalised)
    recon: Tensor  # [B, 3(+1), H, W] unclamped rgb (and normalised depth) — what the loss compares


class ResBlock(nn.Module):
    """x + conv(silu(conv(silu(x)))); the second conv starts small so a deep stack starts near identity."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        nn.init.normal_(self.conv2.weight, std=1e-3)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class Encoder(nn.Module):
    """[B, 3(+1), H, W] -> raw latent [B, C, H/ds, W/ds].

    Space-to-depth (pixel unshuffle) first, so no conv runs at full resolution, then stride-2 convs
    between residual stages.
    """

    def __init__(self, cfg: AutoencoderConfig, in_ch: int):
        super().__init__()
        ch = cfg.encoder_channels
        layers: list[nn.Module] = [nn.PixelUnshuffle(2), nn.Conv2d(4 * in_ch, ch[0], 3, padding=1)]
        for i in range(len(ch)):
            if i > 0:
                layers.append(nn.Conv2d(ch[i - 1], ch[i], 4, stride=2, padding=1))
            layers += [ResBlock(ch[i]) for _ in range(cfg.res_blocks)]
        layers += [nn.SiLU(), nn.Conv2d(ch[-1], cfg.latent_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """Raw latent -> [B, 3(+1), H, W]: nearest upsampling + conv between residual stages, and a
    sub-pixel conv (pixel shuffle, as in ESPCN) for the last 2x, so no conv runs at full resolution —
    the full-resolution convs were most of the decode time."""

    def __init__(self, cfg: AutoencoderConfig, out_ch: int):
        super().__init__()
        ch = cfg.decoder_channels
        layers: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, ch[0], 3, padding=1)]
        for i in range(len(ch)):
            if i > 0:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch[i - 1], ch[i], 3, padding=1)]
            layers += [ResBlock(ch[i]) for _ in range(cfg.res_blocks)]
        layers += [nn.SiLU(), nn.Conv2d(ch[-1], 4 * out_ch, 3, padding=1), nn.PixelShuffle(2)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class FrameAutoencoder(nn.Module):
    """Deterministic conv autoencoder for 64x64-class frames, with optional depth."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        ch = 4 if config.use_depth else 3
        self.encoder = Encoder(config, ch)
        self.decoder = Decoder(config, ch)
        # Latent normalisation for the flow model: z_norm = (z_raw - shift) / scale, per channel.
        self.register_buffer("latent_shift", torch.zeros(config.latent_channels))
        self.register_buffer("latent_scale", torch.ones(config.latent_channels))
        self._log_max = math.log1p(config.max_depth)
        self.to(memory_format=torch.channels_last)  # NHWC convs are the fast ones on CPU

    # -- depth normalisation -------------------------------------------------------------------------

    def normalize_depth(self, depth: Tensor) -> Tensor:
        """Metres [B, 1, H, W] -> [-1, 1] (log scale, clamped at max_depth)."""
        d = depth.clamp(0.0, self.config.max_depth)
        return torch.log1p(d) * (2.0 / self._log_max) - 1.0

    def denormalize_depth(self, d: Tensor) -> Tensor:
        """[-1, 1] -> metres [B, 1, H, W]."""
        return torch.expm1((d.clamp(-1.0, 1.0) + 1.0) * (self._log_max / 2.0))

    # -- the two halves ------------------------------------------------------------------------------

    def _input(self, rgb: Tensor, depth: Tensor | None) -> Tensor:
        if rgb.dim() != 4 or rgb.shape[1] != 3:
            raise ValueError(f"rgb must be [B, 3, H, W] in [-1, 1], got {list(rgb.shape)}")
        if self.config.use_depth:
            if depth is None:
                raise ValueError("this autoencoder has use_depth=true: pass depth [B, 1, H, W] in metres")
            x = torch.cat([rgb, self.normalize_depth(depth)], dim=1)
        else:
            x = rgb  # depth, if given, is ignored: the model was built without it
        w = self.encoder.net[1].weight
        return x.to(w.dtype).contiguous(memory_format=torch.channels_last)

    def encode(self, rgb: Tensor, depth: Tensor | None = None) -> Tensor:
        """rgb [B, 3, H, W] in [-1, 1], depth [B, 1, H, W] metres -> normalised latent [B, C, h, w]."""
        z = self.encoder(self._input(rgb, depth))
        return (z - self.latent_shift[:, None, None]) / self.latent_scale[:, None, None]

    def decode_raw(self, z: Tensor) -> Tensor:
        """Normalised latent [B, C, h, w] -> unclamped [B, 3(+1), H, W] (rgb, normalised depth)."""
        z = z * self.latent_scale[:, None, None] + self.latent_shift[:, None, None]
        w = self.decoder.net[0].weight
        return self.decoder(z.to(w.dtype).contiguous(memory_format=torch.channels_last))

    def decode(self, z: Tensor) -> DecodedFrame:
        """Normalised latent [B, C, h, w] -> DecodedFrame(rgb [B,3,H,W] in [-1,1], depth [B,1,H,W] m)."""
        out = self.decode_raw(z).float()
        depth = self.denormalize_depth(out[:, 3:4]) if self.config.use_depth else None
        return DecodedFrame(rgb=out[:, :3].clamp(-1.0, 1.0), depth=depth)

    def forward(self, rgb: Tensor, depth: Tensor | None = None, latent_noise: float = 0.0) -> AutoencoderOutput:
        """Training pass. latent_noise > 0 perturbs the latent before decoding, so the decoder learns
        to tolerate the small errors the flow model's latents will have."""
        z = self.encode(rgb, depth)
        z_dec = z + latent_noise * torch.randn_like(z) if latent_noise > 0 else z
        return AutoencoderOutput(latent=z, recon=self.decode_raw(z_dec))

    @torch.no_grad()
    def fit_latent_normalization(self, raw_latents: Tensor) -> None:
        """Set shift/scale from raw (un-normalised) latents [N, C, h, w] so they become ~N(0, 1) per channel.

        Get raw latents with `encode` while shift = 0, scale = 1 (i.e. before the first fit), or undo
        the current normalisation first: raw = z * scale + shift.
        """
        z = raw_latents.float().transpose(0, 1).reshape(self.config.latent_channels, -1)
        self.latent_shift.copy_(z.mean(dim=1))
        self.latent_scale.copy_(z.std(dim=1).clamp_min(1e-4))


@dataclass
class AutoencoderLosses:
    """Loss terms of one batch (scalars)."""

    total: Tensor
    rgb: Tensor  # L1 on rgb in [-1, 1]
    depth: Tensor  # L1 on normalised depth (0 without depth)
    edge: Tensor  # L1 on finite-difference image gradients (sharpness; no perceptual nets exist here)
    latent: Tensor  # mean squared latent: keeps the latent scale from drifting
    freq: Tensor  # focal frequency loss on rgb (0 unless freq_weight > 0)


def edge_loss(pred: Tensor, target: Tensor) -> Tensor:
    """L1 between the finite-difference image gradients (vertical + horizontal) of [B, C, H, W] images."""
    def grads(x: Tensor) -> tuple[Tensor, Tensor]:
        return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]

    (py, px), (ty, tx) = grads(pred), grads(target)
    return F.l1_loss(py, ty) + F.l1_loss(px, tx)


def focal_frequency_loss(pred: Tensor, target: Tensor, alpha: float = 1.0) -> Tensor:
    """The focal frequency loss (Jiang et al., arXiv 2012.12821) of [B, C, H, W] images: the squared distance of
    their 2D spectra, each frequency weighted by its own distance ** alpha (scaled to [0, 1] per image and
    channel, no gradient through the weight), so the frequencies reconstructed worst - the fine detail an L1
    loss averages away - carry the loss."""
    fp = torch.fft.fft2(pred.float(), norm="ortho")
    ft = torch.fft.fft2(target.float(), norm="ortho")
    dist = (fp - ft).abs().pow(2)
    with torch.no_grad():
        w = dist.sqrt().pow(alpha)
        w = w / w.flatten(-2).amax(-1).clamp_min(1e-12)[..., None, None]
    return (w * dist).mean()


@dataclass
class AutoencoderLoss:
    """The autoencoder objective: L1 on rgb and log-depth, a gradient (edge) term, a tiny latent L2, and optionally
    the focal frequency loss on rgb (`freq_weight`, the decoder sharpening stage)."""

    rgb_weight: float = 1.0
    depth_weight: float = 0.5
    edge_weight: float = 0.5
    latent_weight: float = 1e-4
    freq_weight: float = 0.0

    def __call__(self, model: FrameAutoencoder, out: AutoencoderOutput, rgb: Tensor, depth: Tensor | None = None) -> AutoencoderLosses:
        """out from `model(rgb, depth)`; rgb [B, 3, H, W] in [-1, 1]; depth [B, 1, H, W] metres or None."""
        target = rgb
        if model.config.use_depth:
            target = torch.cat([rgb, model.normalize_depth(depth)], dim=1)
        recon = out.recon.float()
        l_rgb = F.l1_loss(recon[:, :3], target[:, :3])
        l_depth = F.l1_loss(recon[:, 3:], target[:, 3:]) if model.config.use_depth else recon.new_zeros(())
        l_edge = edge_loss(recon, target)
        l_lat = out.latent.float().pow(2).mean()
        l_freq = focal_frequency_loss(recon[:, :3], target[:, :3]) if self.freq_weight > 0 else recon.new_zeros(())
        total = (self.rgb_weight * l_rgb + self.depth_weight * l_depth + self.edge_weight * l_edge
                 + self.latent_weight * l_lat + self.freq_weight * l_freq)
        return AutoencoderLosses(total=total, rgb=l_rgb, depth=l_depth, edge=l_edge, latent=l_lat, freq=l_freq)
