"""CUDA against the CPU (issue 22): attention backends, one dream tick, one memory render, one training step.

Every test here is marked `gpu` and skips cleanly without CUDA (`pytest -m gpu tests/test_gpu.py` on a GPU machine;
bench/gpu_check.sh runs them there). The models are the tiny preset with random weights (tests/randmodel.py): no
training and no data. The CPU side of the device plumbing (device resolution, the autocast code path, the errors)
is tested without a GPU in tests/test_device.py.

Tolerances:
- fp32 on CUDA (TF32 off) against the CPU: the same maths in another order: attention 1e-4, a dream frame at most
  2/255 per pixel (uint8 rounding of ~1e-5 differences), a training loss 1e-3 relative.
- bf16 autocast on CUDA (what the dream and training use there) against the CPU's fp32: attention 3e-2, a dream frame
  within a few levels on average, a training loss 5e-2 relative (bf16 keeps 8 bits of mantissa: ~4e-3 per rounding).
- gsplat against the CPU renderer, for one scene-memory render (uint8 RGB, as the dream sees it): alpha within 6e-3
  (gsplat stops a pixel early at transmittance 1e-4: at most 9e-4 for the memory's opacities <= 0.9, plus float
  error), RGB within 3/255 (2/255 on average) where alpha > 0.5 (the unpremultiply divides by alpha), depth within
  1% there. A scene of random Gaussians, gsplat against the brute-force reference with gsplat's early stop: 5e-3. Where moderngl has no EGL display, the brute-force reference stands in for the CPU
  renderer (which is tested against it in tests/test_splat.py).
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
import torch

from tests.randmodel import random_model_dir, random_networks

CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device (torch.cuda.is_available() is False)")]


@contextlib.contextmanager
def no_tf32():
    """fp32 comparisons in true fp32: TF32 matmuls / convolutions (cuDNN's default) round to 10 mantissa bits."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def report(line: str) -> None:
    """A line for the GPU check's log (pytest -s shows it; bench/gpu_check.sh keeps it)."""
    print(f"[gpu] {line}", flush=True)
    path = os.environ.get("DREAMWALK_GPU_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


# -- attention ---------------------------------------------------------------------------------------------------


def attention_inputs():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 40, 32, generator=g) for _ in range(3))
    frame = torch.arange(40) // 8
    causal = torch.zeros(40, 40).masked_fill(frame[None, :] > frame[:, None], float("-inf"))
    bias = causal[None, None] + 0.1 * torch.randn(1, 3, 40, 40, generator=g)  # block-causal + a position bias
    return q, k, v, bias


def test_attention_on_cuda_matches_the_cpu_path():
    from worldmodel import attention as attn

    q, k, v, bias = attention_inputs()
    cpu = attn.attention(q, k, v, bias)
    assert attn.last_backend() == "sdpa"  # the CPU path
    ref = attn.naive_attention(q, k, v, bias)
    with no_tf32():
        out = attn.attention(q.cuda(), k.cuda(), v.cuda(), bias.cuda())
    used = attn.last_backend()
    status = attn.xformers_status()
    assert used == ("xformers" if status == "usable" else "sdpa")
    torch.testing.assert_close(out.cpu(), cpu, atol=1e-4, rtol=1e-4)
    # bf16, as the dynamics runs under autocast on CUDA
    qb, kb, vb = (t.cuda().bfloat16() for t in (q, k, v))
    outb = attn.attention(qb, kb, vb, bias.cuda())
    torch.testing.assert_close(outb.float().cpu(), ref, atol=3e-2, rtol=3e-2)
    # a boolean may-attend mask means the same there too
    allowed = torch.isfinite(bias)
    torch.testing.assert_close(attn.attention(q.cuda(), k.cuda(), v.cuda(), allowed.cuda()).cpu(),
                               attn.naive_attention(q, k, v, allowed), atol=1e-4, rtol=1e-4)
    report(f"attention: CUDA dispatch used {attn.last_backend()}; xformers: {attn.xformers_status()}")


def test_xformers_matches_sdpa_on_cuda():
    from worldmodel import attention as attn

    if attn.xformers_status() != "usable":
        pytest.skip(f"xformers is not available here ({attn.xformers_status()}): SDPA serves on CUDA")
    q, k, v, bias = (t.cuda() for t in attention_inputs())
    attn.force_backend("xformers")
    try:
        out = attn.attention(q, k, v, bias)
        outb = attn.attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), bias)
    except Exception as e:  # installed, but built for another torch / CUDA
        pytest.skip(f"xformers imports but cannot run here: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    finally:
        attn.force_backend(None)
    attn.force_backend("sdpa")
    try:
        with no_tf32():
            ref = attn.attention(q, k, v, bias)
    finally:
        attn.force_backend(None)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(outb.float(), ref, atol=3e-2, rtol=3e-2)
    report("attention: xformers agrees with SDPA on CUDA")


# -- one dream tick ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return random_model_dir(tmp_path_factory.mktemp("models") / "tiny-random")


def dream(model_dir, device: str, amp: bool, ticks: int) -> list:
    import worldmodel  # noqa: F401
    from engine.action import Action
    from worldmodel.dream import DreamWorld

    actions = [Action(forward=True, yaw=3.0), Action(left=True, pitch=-2.0), Action(forward=True, sprint=True)]
    world = DreamWorld(str(model_dir), device=device, amp=amp, context_noise=0.1)  # noise: the commit's draw too
    try:
        out = [world.reset(7)]
        out += [world.step(a) for a in actions[:ticks]]
    finally:
        world.close()
    return out


def frame_diff(a, b) -> tuple[float, float]:
    d = np.abs(a.rgb.astype(np.int16) - b.rgb.astype(np.int16))
    return float(d.max()), float(d.mean())


def test_dream_tick_on_cuda_matches_cpu(model_dir):
    cpu = dream(model_dir, "cpu", False, 3)
    with no_tf32():
        fp32 = dream(model_dir, "cuda", False, 3)
    assert cpu[-1].rgb.std() > 1.0, "the random model should draw something (not a flat frame)"
    for c, g in zip(cpu, fp32):
        mx, mean = frame_diff(c, g)
        assert mx <= 2 and mean <= 0.1, (mx, mean)
        np.testing.assert_allclose(g.depth, c.depth, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(g.cam_to_world, c.cam_to_world, atol=1e-4)
    bf16 = dream(model_dir, "cuda", True, 1)  # the default on CUDA: bf16 autocast for the dynamics
    mx, mean = frame_diff(cpu[1], bf16[1])
    assert mean <= 4.0, (mx, mean)
    np.testing.assert_allclose(bf16[1].cam_to_world, cpu[1].cam_to_world, atol=2e-2)
    report(f"dream tick: CUDA fp32 vs CPU max |d rgb| {frame_diff(cpu[-1], fp32[-1])[0]:.0f}/255 after 3 ticks; "
           f"bf16 vs CPU fp32 one tick: max {mx:.0f}, mean {mean:.2f} levels")


# -- one memory render: gsplat against the CPU renderer ---------------------------------------------------------------


def test_memory_render_gsplat_matches_cpu_renderer():
    from splat.render import gsplat_status

    status = gsplat_status()
    if status != "ready":
        pytest.skip(f"gsplat cannot rasterize here: {status}")
    from engine.action import Action
    from engine.plane import PlaneWorld
    from splat import SceneMemory
    from splat.render import rasterize, rasterize_reference

    # the rasterizer on its own: a random scene against the reference with gsplat's early stop
    rng = np.random.default_rng(4)
    n = 300
    scene = (rng.uniform([-1.5, -1.5, 0.5], [1.5, 1.5, 6.0], (n, 3)).astype(np.float32),
             rng.normal(size=(n, 4)).astype(np.float32), rng.uniform(0.01, 0.4, (n, 3)).astype(np.float32),
             rng.uniform(0.05, 0.9, n).astype(np.float32), rng.uniform(0, 1, (n, 3)).astype(np.float32))
    K = np.float32([[[0.9 * 64, 0, 32], [0, 0.85 * 64, 32], [0, 0, 1]]])
    gs = rasterize(*scene, np.eye(4, dtype=np.float32)[None], K, 64, 64, backend="gsplat")
    ref = rasterize_reference(*scene, np.eye(4, dtype=np.float32)[None], K, 64, 64, early_stop=True)
    assert np.abs(gs.alpha - ref.alpha).max() < 5e-3 and np.abs(gs.rgb - ref.rgb).max() < 5e-3

    # a scene memory built from a walk over the plane world, rendered by gsplat and by the CPU renderer
    world = PlaneWorld(width=64, height=64)
    memory = SceneMemory(width=64, height=64, backend="gsplat")
    obs = world.reset(3)
    obs = world.step(Action(pitch=-25.0))
    for tick in range(6):
        memory.insert(obs.rgb, obs.depth, obs.cam_to_world, obs.K, tick)
        obs = world.step(Action(forward=True, yaw=4.0))
    assert len(memory) > 100
    gsplat_view = memory.render(obs.cam_to_world, obs.K, 6)
    other = SceneMemory.from_state_dict({**memory.state_dict(), "config.backend": np.asarray("cpu")})
    try:
        cpu_view = other.render(obs.cam_to_world, obs.K, 6)
        against = "the CPU renderer (moderngl)"
    except Exception as e:  # no EGL display for moderngl here: the reference it is tested against stands in
        from splat.camera import world_to_camera

        g, viewmat = memory.gaussians, world_to_camera(obs.cam_to_world)
        sel = memory._visible(viewmat, obs.K, 64, 64)  # what the memory draws (its occlusion cull)
        ref = rasterize_reference(g.means[sel], g.quats[sel], g.scales[sel], g.opacities[sel], g.colors[sel],
                                  viewmat[None], obs.K[None], 64, 64, early_stop=False)
        alpha = ref.alpha[0]
        rgb = np.where(alpha[..., None] >= 1 / 255, ref.rgb[0] / np.maximum(alpha, 1e-6)[..., None], 0.0)
        cpu_view = type(gsplat_view)(rgb=(np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8),
                                     depth=ref.depth[0], alpha=alpha)
        against = f"the brute-force reference (the CPU renderer could not start: {type(e).__name__})"
    covered = cpu_view.alpha > 0.5
    assert covered.mean() > 0.2, "the memory should cover a good part of the view"
    d_alpha = np.abs(gsplat_view.alpha - cpu_view.alpha).max()
    d_rgb = np.abs(gsplat_view.rgb.astype(np.int16) - cpu_view.rgb.astype(np.int16))[covered]
    d_depth = (np.abs(gsplat_view.depth - cpu_view.depth) / np.maximum(cpu_view.depth, 1e-3))[covered]
    assert d_alpha < 6e-3, d_alpha
    assert d_rgb.max() <= 3 and d_rgb.mean() <= 2, (d_rgb.max(), d_rgb.mean())
    assert d_depth.max() < 0.01, d_depth.max()
    report(f"memory render: gsplat vs {against}: max |d alpha| {d_alpha:.1e}, max |d rgb| {d_rgb.max()}/255 "
           f"(covered), max relative |d depth| {d_depth.max():.1e}; {len(memory)} Gaussians")


# -- one training step -------------------------------------------------------------------------------------------


def training_losses(device: str, amp: bool, steps: int = 2) -> list[tuple[float, float]]:
    """(dynamics loss, autoencoder loss) of `steps` AdamW steps on one fixed batch, from the same random init."""
    from worldmodel.autoencoder import AutoencoderLoss
    from worldmodel.device import autocast
    from worldmodel.flow import FlowMatching

    dev = torch.device(device)
    cfg, ae, dyn = random_networks(seed=3)
    ae.to(dev).train()
    dyn.to(dev).train()
    g = torch.Generator().manual_seed(5)
    B, T = 2, 6
    C, h, w = cfg.latent_shape
    H, W = cfg.frame_size
    x0 = torch.randn(B, T, C, h, w, generator=g)
    actions = torch.cat([(torch.rand(B, T, 6, generator=g) > 0.5).float(), torch.randn(B, T, 2, generator=g) * 5], -1)
    memory = torch.randn(B, T, C + 1, h, w, generator=g)
    present = torch.rand(B, T, generator=g) > 0.5
    pose = torch.randn(B, T, 5, generator=g) * 0.1
    rgb = torch.rand(4, 3, H, W, generator=g) * 2 - 1
    depth = torch.rand(4, 1, H, W, generator=g) * 10 + 0.5
    x0, actions, memory, present, pose, rgb, depth = (t.to(dev) for t in (x0, actions, memory, present, pose, rgb, depth))
    opt = torch.optim.AdamW(list(ae.parameters()) + list(dyn.parameters()), lr=1e-3)
    objective, ae_loss = FlowMatching(), AutoencoderLoss()
    out = []
    for step in range(steps):
        with autocast(dev, amp):
            ld = objective.loss(dyn, x0, actions, memory=memory, memory_present=present, pose_target=pose,
                                generator=torch.Generator().manual_seed(9 + step))  # same t and noise on both devices
            la = ae_loss(ae, ae(rgb, depth), rgb, depth)
        opt.zero_grad(set_to_none=True)
        (ld.total + la.total).backward()
        opt.step()
        out.append((ld.total.item(), la.total.item()))
    return out


def test_training_step_on_cuda_matches_cpu():
    cpu = training_losses("cpu", False)
    with no_tf32():
        fp32 = training_losses("cuda", False)
    bf16 = training_losses("cuda", True)
    for c, g in zip(cpu, fp32):  # the second step's loss also checks the first step's gradients and update
        np.testing.assert_allclose(g, c, rtol=1e-3)
    for c, g in zip(cpu, bf16):
        np.testing.assert_allclose(g, c, rtol=5e-2)
    report(f"training step: losses CPU {cpu[-1]}, CUDA fp32 {fp32[-1]}, CUDA bf16 {bf16[-1]} (dynamics, autoencoder)")
