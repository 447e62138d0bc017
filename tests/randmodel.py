"""A model directory with random weights (the tiny preset, no training, no data): for device tests."""

from __future__ import annotations

from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "assets" / "configs" / "model_tiny.yaml"


def random_networks(seed: int = 0, perturb: float = 0.05):
    """(config, autoencoder, dynamics) of the tiny preset, seeded. `perturb` adds N(0, perturb) to every
    parameter: the adaLN-Zero and zero-initialised heads would otherwise make the dynamics output 0, and a
    comparison of two devices would compare nothing."""
    from worldmodel.autoencoder import FrameAutoencoder
    from worldmodel.config import load_config
    from worldmodel.dynamics import DynamicsTransformer

    cfg = load_config(TINY)
    torch.manual_seed(seed)
    ae = FrameAutoencoder(cfg.autoencoder)
    dyn = DynamicsTransformer(cfg.dynamics, cfg.latent_shape)
    if perturb:
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in list(ae.parameters()) + list(dyn.parameters()):
                p.add_(torch.randn(p.shape, generator=g) * perturb)
    return cfg, ae.eval(), dyn.eval()


def random_model_dir(path: Path, seed: int = 0, perturb: float = 0.05, upsampler: bool = False) -> Path:
    """Save the tiny preset with random weights to `path`, prompted by the plane world (no GL) at 64x64; with
    `upsampler`, a random shown-frame upsampler too (model.upsampler.scale 2)."""
    import dataclasses

    from worldmodel.checkpoint import save_model
    from worldmodel.config import UpsamplerConfig
    from worldmodel.upsampler import FrameUpsampler

    cfg, ae, dyn = random_networks(seed, perturb)
    up = None
    if upsampler:
        cfg = dataclasses.replace(cfg, upsampler=UpsamplerConfig(scale=2, channels=8, blocks=1))
        torch.manual_seed(seed + 2)
        up = FrameUpsampler(cfg.upsampler)
        with torch.no_grad():
            for p in up.parameters():
                p.add_(torch.randn(p.shape) * perturb)
        up.eval()
    save_model(path, cfg, ae, dyn, {"prompt_world": "plane", "prompt_config": {"width": 64, "height": 64}},
               upsampler=up)
    return path
