"""The shown-frame upsampler: the frame a tick shows (RGB + depth at the model's size) -> RGB at twice that size.

The dream stays at the model's size (its latents, its memory, its depth); only the picture the player sees is
upsampled, after the memory-first composite, so the memory's render and the model's paint are sharpened by the
same network. A learned upsampler after a low-resolution decoder, as DIAMOND's CS:GO model does; the network is
ESPCN-like (Shi et al., arXiv 1609.05158): residual blocks at the input size and a sub-pixel conv (pixel
shuffle) to the output, added to the bilinear upsampling of the input, so it starts as bilinear and nothing runs
at the output size but the last shuffle. Trained by worldmodel/training/upsampler.py on the arena's 128 x 128
recordings: input their 64 x 64 area-resized frames and their autoencoder reconstructions, target the 128 x 128
frame.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldmodel.autoencoder import ResBlock
from worldmodel.config import UpsamplerConfig


class FrameUpsampler(nn.Module):
    """[B, 3, H, W] rgb in [-1, 1] + [B, 1, H, W] normalised depth in [-1, 1] -> [B, 3, sH, sW] rgb (unclamped)."""

    def __init__(self, config: UpsamplerConfig):
        super().__init__()
        if config.scale < 2:
            raise ValueError("an upsampler needs scale 2 (scale 1 means the model has none)")
        self.config = config
        ch, s = config.channels, config.scale
        self.inp = nn.Conv2d(4, ch, 3, padding=1)
        self.blocks = nn.Sequential(*[ResBlock(ch) for _ in range(config.blocks)])
        self.out = nn.Conv2d(ch, 3 * s * s, 3, padding=1)
        nn.init.normal_(self.out.weight, std=1e-3)  # starts as the bilinear upsampling
        nn.init.zeros_(self.out.bias)
        self.shuffle = nn.PixelShuffle(s)
        self.to(memory_format=torch.channels_last)

    def forward(self, rgb: Tensor, depth: Tensor) -> Tensor:
        s = self.config.scale
        w = self.inp.weight
        base = F.interpolate(rgb.float(), scale_factor=s, mode="bilinear", align_corners=False)
        x = torch.cat([rgb, depth], 1).to(w.dtype).contiguous(memory_format=torch.channels_last)
        h = self.blocks(self.inp(x))
        return base + self.shuffle(self.out(F.silu(h))).float()

    def upsample(self, rgb: Tensor, depth_norm: Tensor) -> Tensor:
        """The shown frame at the output size, clamped to [-1, 1]."""
        return self(rgb, depth_norm).clamp(-1.0, 1.0)


def upsample_frames(model, rgb: np.ndarray, depth: np.ndarray | None, batch: int = 64) -> np.ndarray:
    """Shown frames through `model`'s upsampler (a worldmodel.checkpoint.LoadedModel that has one): rgb
    [B, H, W, 3] uint8 and depth [B, H, W] metres (None: a world without depth, taken as all at the camera) ->
    [B, sH, sW, 3] uint8. What the tick shows (worldmodel.tick) and the evaluation scores."""
    from worldmodel.data import frames_to_tensor, tensor_to_frames

    if model.upsampler is None:
        raise ValueError("upsample_frames: the model has no upsampler (model.yaml model.upsampler.scale is 1)")
    dev, ae = model.device, model.autoencoder
    out = []
    with torch.no_grad():
        for lo in range(0, len(rgb), batch):
            x = frames_to_tensor(rgb[lo:lo + batch]).to(dev)
            d = (ae.normalize_depth(torch.from_numpy(np.asarray(depth[lo:lo + batch], np.float32))[:, None].to(dev))
                 if depth is not None else torch.full_like(x[:, :1], -1.0))
            out.append(tensor_to_frames(model.upsampler.upsample(x, d)))
    return np.concatenate(out)
