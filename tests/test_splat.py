"""splat/: the CPU renderer against a brute-force reference (and gsplat on CUDA), the scene memory's behaviour on
arena frames and synthetic scenes, the 3DGS .ply round trip and the export CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from splat.camera import world_to_camera
from splat.gaussians import Gaussians
from splat.memory import MemoryConfig, SceneMemory
from splat.ply import read_ply, write_ply
from splat.render import rasterize, rasterize_reference

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


# -- renderer ---------------------------------------------------------------------------------------------------


def random_scene(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """n anisotropic, arbitrarily rotated Gaussians 0.5-6 m in front of the origin, mixed opacities."""
    rng = np.random.default_rng(seed)
    means = rng.uniform([-1.5, -1.5, 0.5], [1.5, 1.5, 6.0], (n, 3)).astype(np.float32)
    quats = rng.normal(size=(n, 4)).astype(np.float32)  # unnormalised on purpose: both normalise
    scales = rng.uniform(0.01, 0.4, (n, 3)).astype(np.float32)
    opacities = rng.uniform(0.05, 1.0, n).astype(np.float32)
    colors = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    return means, quats, scales, opacities, colors


def cameras(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Two cameras: identity, and one yawed 0.3 rad and shifted, with off-centre principal points."""
    a = 0.3
    v2 = np.eye(4, dtype=np.float32)
    v2[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    v2[:3, 3] = [0.2, -0.1, 0.5]
    viewmats = np.stack([np.eye(4, dtype=np.float32), v2])
    K1 = [[0.9 * width, 0, 0.5 * width], [0, 0.85 * width, 0.5 * height], [0, 0, 1]]
    K2 = [[0.7 * width, 0, 0.45 * width], [0, 0.7 * width, 0.55 * height], [0, 0, 1]]
    return viewmats, np.array([K1, K2], np.float32)


# Tolerances, CPU (GL, float32) vs reference (float64, early stop off: the same maths). Both composite in the order
# of the means' camera depth (gsplat's order), so the order is identical and what remains is float32 arithmetic
# (~1e-6, measured max ~1e-6) and, rarely, a fragment whose alpha sits within float error of the 1/255 threshold
# flipping (at most ~1/255 on that pixel). The bounds leave room for that on other GL drivers.
MAX_ERR, MEAN_ERR = 5e-3, 1e-4
# gsplat's exclusive early stop (the reference's default) leaves out a T <= 1e-4 a / (1 - a) per pixel: 9e-4 for
# opacities <= 0.9. Random scenes with opacities up to 1 can differ by ~0.1 on a pixel, so that comparison caps
# opacities at 0.9, as the scene memory does.
EARLY_STOP_ERR = 9e-4 + MAX_ERR


def assert_close(got, want, max_err: float = MAX_ERR, mean_err: float = MEAN_ERR) -> None:
    for a, b in ((got.rgb, want.rgb), (got.alpha, want.alpha)):
        err = np.abs(a - b)
        assert err.max() < max_err and err.mean() < mean_err
    covered = want.alpha > 0.05  # expected depth divides by alpha: compare where there is coverage
    # depth: the colour bound times the scene's depth range (6 m) over the smallest compared alpha
    assert np.abs(got.depth - want.depth)[covered].max() < max_err * 6.0 / 0.05
    assert np.all(got.depth[want.alpha == 0] == 0)


@pytest.mark.parametrize("n,seed", [(50, 0), (120, 1), (200, 2)])
def test_cpu_renderer_matches_reference(n: int, seed: int) -> None:
    scene = random_scene(n, seed)
    viewmats, Ks = cameras(32, 32)
    cpu = rasterize(*scene, viewmats, Ks, 32, 32, backend="cpu")
    assert cpu.rgb.shape == (2, 32, 32, 3) and cpu.depth.shape == (2, 32, 32) and cpu.alpha.shape == (2, 32, 32)
    ref = rasterize_reference(*scene, viewmats, Ks, 32, 32, early_stop=False)
    assert ref.alpha.mean() > 0.2, "the scene should cover a good part of the image"
    assert_close(cpu, ref)
    # against gsplat's semantics (with its early stop), for opacities <= 0.9
    capped = scene[:3] + (np.minimum(scene[3], 0.9),) + scene[4:]
    cpu = rasterize(*capped, viewmats, Ks, 32, 32, backend="cpu")
    ref = rasterize_reference(*capped, viewmats, Ks, 32, 32, early_stop=True)
    assert_close(cpu, ref, max_err=EARLY_STOP_ERR)


def test_a_per_gaussian_scalar_renders_like_the_depth() -> None:
    """`extras` (the memory's trust): composited like the expected depth on the CPU as in the reference, and a
    constant scalar renders as that constant wherever anything is drawn."""
    scene = random_scene(120, 5)
    viewmats, Ks = cameras(32, 32)
    values = np.random.default_rng(5).uniform(0, 1, len(scene[0])).astype(np.float32)
    cpu = rasterize(*scene, viewmats, Ks, 32, 32, backend="cpu", extras=values)
    ref = rasterize_reference(*scene, viewmats, Ks, 32, 32, early_stop=False, extras=values)
    assert_close(cpu, ref)
    covered = ref.alpha > 0.05
    assert np.abs(cpu.extra - ref.extra)[covered].max() < MAX_ERR / 0.05
    assert 0.2 < cpu.extra[covered].mean() < 0.8  # a blend of the values, not one of them
    same = rasterize(*scene, viewmats, Ks, 32, 32, backend="cpu", extras=np.full(len(values), 0.25, np.float32))
    assert np.allclose(same.extra[same.alpha > 1e-3], 0.25, atol=1e-3)
    assert rasterize(*scene, viewmats, Ks, 32, 32, backend="cpu").extra is None
    plain = rasterize(*scene, viewmats, Ks, 32, 32, backend="cpu")
    assert np.array_equal(plain.rgb, cpu.rgb) and np.array_equal(plain.depth, cpu.depth)  # nothing else changes


def test_cpu_renderer_large_image_tiles() -> None:
    """Images beyond the 254-px point-sprite tile are drawn in tiles, with the same result."""
    scene = random_scene(30, 3)
    viewmats, Ks = cameras(300, 270)
    cpu = rasterize(*scene, viewmats[1:], Ks[1:], 300, 270, backend="cpu")
    ref = rasterize_reference(*scene, viewmats[1:], Ks[1:], 300, 270, early_stop=False)
    assert_close(cpu, ref)


def test_renderer_culls_behind_and_empty() -> None:
    means = np.float32([[0, 0, -2.0], [0, 0, 0.01]])  # behind the camera, and closer than near_plane
    g = (means, np.float32([[1, 0, 0, 0]] * 2), np.full((2, 3), 0.1, np.float32), np.float32([1, 1]),
         np.ones((2, 3), np.float32))
    out = rasterize(*g, np.eye(4)[None], np.float32([[[16, 0, 8], [0, 16, 8], [0, 0, 1]]]), 16, 16, backend="cpu")
    assert out.alpha.max() == 0 and out.rgb.max() == 0 and out.depth.max() == 0
    with pytest.raises(ValueError, match="quats"):
        rasterize(means, np.zeros((3, 4)), *g[2:], np.eye(4)[None], np.eye(3)[None], 16, 16, backend="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat.rasterization needs CUDA")
def test_gsplat_matches_cpu() -> None:
    scene = random_scene(200, 4)
    viewmats, Ks = cameras(64, 64)
    gs = rasterize(*scene, viewmats, Ks, 64, 64, backend="gsplat")
    # gsplat against the reference with its own semantics (early stop), then against the CPU renderer with the
    # early-stop bound (opacities capped at 0.9)
    assert_close(gs, rasterize_reference(*scene, viewmats, Ks, 64, 64, early_stop=True))
    capped = scene[:3] + (np.minimum(scene[3], 0.9),) + scene[4:]
    gs = rasterize(*capped, viewmats, Ks, 64, 64, backend="gsplat")
    assert_close(gs, rasterize(*capped, viewmats, Ks, 64, 64, backend="cpu"), max_err=EARLY_STOP_ERR)
    values = np.random.default_rng(4).uniform(0, 1, len(scene[0])).astype(np.float32)
    gs = rasterize(*capped, viewmats, Ks, 64, 64, backend="gsplat", extras=values)
    cpu = rasterize(*capped, viewmats, Ks, 64, 64, backend="cpu", extras=values)
    assert_close(gs, cpu, max_err=EARLY_STOP_ERR)
    covered = cpu.alpha > 0.05
    assert np.abs(gs.extra - cpu.extra)[covered].max() < EARLY_STOP_ERR / 0.05


# -- memory on arena frames ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arena_frames() -> list:
    """The reset view of a held-out arena level and three ticks of walking forward with a slight turn."""
    from engine import make_world
    from engine.action import Action

    world = make_world("arena", width=64, height=64)
    try:
        frames = [world.reset(1100000)]
        for _ in range(3):
            frames.append(world.step(Action(forward=True, yaw=2.0)))
    finally:
        world.close()
    return frames


def psnr_covered(render, obs, max_depth: float = 40.0) -> tuple[float, float]:
    """(PSNR dB, fraction of non-sky pixels covered) over non-sky pixels with alpha > 0.5."""
    nonsky = obs.depth < max_depth
    mask = nonsky & (render.alpha > 0.5)
    err = render.rgb[mask].astype(np.float64) - obs.rgb[mask].astype(np.float64)
    return float(10 * np.log10(255.0**2 / max(np.mean(err**2), 1e-9))), float(mask.sum() / nonsky.sum())


def test_memory_fidelity_same_pose(arena_frames: list) -> None:
    obs = arena_frames[0]
    # subsample=1: one Gaussian per pixel. With the default subsample=2 there are 4x fewer Gaussians than pixels
    # and the pixel-scale texture of the arena caps the same-pose PSNR near 21-22 dB (printed below).
    hi = SceneMemory(subsample=1, scale_factor=0.3)
    hi.insert(obs.rgb, obs.depth, obs.cam_to_world, obs.K, 0, obs.dynamic_mask)
    psnr, coverage = psnr_covered(hi.render(obs.cam_to_world, obs.K, 0), obs)
    default = SceneMemory()
    default.insert(obs.rgb, obs.depth, obs.cam_to_world, obs.K, 0, obs.dynamic_mask)
    psnr_default, cov_default = psnr_covered(default.render(obs.cam_to_world, obs.K, 0), obs)
    print(f"same-pose PSNR: subsample=1 {psnr:.2f} dB ({len(hi)} Gaussians, coverage {coverage:.3f}); "
          f"default subsample=2 {psnr_default:.2f} dB ({len(default)} Gaussians, coverage {cov_default:.3f})")
    assert psnr >= 28.0 and coverage > 0.98
    assert psnr_default >= 19.0 and cov_default > 0.98
    # depth: the expected depth of the render matches the frame's on covered pixels
    r = default.render(obs.cam_to_world, obs.K, 0)
    mask = (obs.depth < 40) & (r.alpha > 0.5)
    assert np.median(np.abs(r.depth - obs.depth)[mask] / obs.depth[mask]) < 0.05


def test_memory_moved_pose_is_plausible(arena_frames: list) -> None:
    mem = SceneMemory()
    first, moved = arena_frames[0], arena_frames[-1]
    mem.insert(first.rgb, first.depth, first.cam_to_world, first.K, 0, first.dynamic_mask)
    assert not np.allclose(first.cam_to_world, moved.cam_to_world), "the player should have moved"
    r = mem.render(moved.cam_to_world, moved.K, 3)
    assert r.rgb.shape == (64, 64, 3) and r.rgb.dtype == np.uint8
    assert r.depth.dtype == np.float32 and r.alpha.dtype == np.float32
    psnr, coverage = psnr_covered(r, moved)
    print(f"moved-pose render: PSNR {psnr:.2f} dB on covered non-sky pixels, coverage {coverage:.3f}")
    assert coverage > 0.8 and psnr > 15.0


def test_same_view_twice_does_not_double(arena_frames: list) -> None:
    obs = arena_frames[0]
    mem = SceneMemory()
    mem.insert(obs.rgb, obs.depth, obs.cam_to_world, obs.K, 0, obs.dynamic_mask)
    n1 = len(mem)
    mem.insert(obs.rgb, obs.depth, obs.cam_to_world, obs.K, 1, obs.dynamic_mask)
    assert n1 > 300 and len(mem) <= 1.05 * n1
    assert mem.last_insert.confirmed > 0.8 * n1  # the second view confirms what the first one added


def test_budget_never_exceeded(arena_frames: list) -> None:
    mem = SceneMemory(budget=700)
    rng = np.random.default_rng(0)
    for t in range(30):
        obs = arena_frames[t % len(arena_frames)]
        c2w = obs.cam_to_world.copy()
        c2w[:3, 3] += rng.normal(0, 0.5, 3)  # new viewpoints keep adding Gaussians
        mem.insert(obs.rgb, obs.depth, c2w, obs.K, t)
        assert len(mem) <= 700
    assert len(mem) > 500


# -- memory on synthetic scenes -----------------------------------------------------------------------------------

K32 = np.array([[32.0, 0, 16], [0, 32.0, 16], [0, 0, 1]])


def flat_frame(depth_m: float, size: int = 32, color: tuple[int, int, int] = (200, 100, 50)) -> tuple:
    rgb = np.zeros((size, size, 3), np.uint8)
    rgb[:] = color
    return rgb, np.full((size, size), depth_m, np.float32)


def memory32(**kw: object) -> SceneMemory:
    return SceneMemory(width=32, height=32, **kw)


def test_contradiction_removes_gaussians_in_free_space() -> None:
    mem = memory32()
    rgb, depth = flat_frame(10.0)
    depth[8:24, 8:24] = 2.0  # a close object in front of a wall at 10 m
    rgb[8:24, 8:24] = (0, 255, 0)
    mem.insert(rgb, depth, np.eye(4), K32, 0)
    close = lambda: int((mem.gaussians.live("means")[:, 2] < 5.0).sum())  # noqa: E731
    assert close() > 30
    rgb2, depth2 = flat_frame(10.0)  # the object is gone: free space up to the wall
    for t in range(1, 8):
        mem.insert(rgb2, depth2, np.eye(4), K32, t)
    assert close() == 0
    r = mem.render(np.eye(4), K32, 8)
    assert r.alpha[16, 16] > 0.9 and abs(r.depth[16, 16] - 10.0) < 0.5  # the wall behind was filled in
    assert abs(int(r.rgb[16, 16, 0]) - 200) < 20


def test_sky_counts_as_free_space() -> None:
    mem = memory32()
    rgb, depth = flat_frame(3.0)
    mem.insert(rgb, depth, np.eye(4), K32, 0)
    sky = np.full((32, 32), 150.0, np.float32)  # the arena's sky depth: an object that flew away against the sky
    for t in range(1, 8):
        mem.insert(rgb, sky, np.eye(4), K32, t)
    assert len(mem) == 0


def test_dreamed_max_depth_limits_dreamed_frames_only() -> None:
    """dreamed_max_depth: a dreamed frame's depth beyond it is sky (nothing lifted, and free space that clears what
    the dream lifted before), while a real frame's is still lifted up to max_depth."""
    rgb, _ = flat_frame(0.0)
    far45 = np.full((32, 32), 45.0, np.float32)  # beyond the dream's 40 m, within max_depth 200
    mem = memory32(max_depth=200.0, far_plane=1000.0, dreamed_max_depth=40.0)
    mem.insert(rgb, far45, np.eye(4), K32, 1, source_age=1)
    assert len(mem) == 0  # dreamed: nothing lifted at 45 m
    mem.insert(rgb, far45, np.eye(4), K32, 2, source_age=0)
    assert len(mem) > 0  # real: lifted
    near, d30 = flat_frame(30.0)
    uncapped = memory32(max_depth=200.0, far_plane=1000.0)
    uncapped.insert(rgb, far45, np.eye(4), K32, 1, source_age=1)
    assert len(uncapped) == len(mem)  # without the setting a dreamed frame is lifted like a real one
    mem = memory32(max_depth=200.0, far_plane=1000.0, dreamed_max_depth=40.0)
    mem.insert(near, d30, np.eye(4), K32, 1, source_age=1)  # a dreamed surface within 40 m is lifted ...
    n = len(mem)
    assert n > 0
    for t in range(2, 9):  # ... and later dreamed views that see sky (45 m) through it clear it
        mem.insert(rgb, far45, np.eye(4), K32, t, source_age=1)
    assert len(mem) == 0
    with pytest.raises(ValueError, match="dreamed_max_depth"):
        memory32(dreamed_max_depth=-1.0)

def test_dynamic_gaussians_expire() -> None:
    mem = memory32(dynamic_lifetime=20)
    rgb, depth = flat_frame(5.0)
    dyn = np.zeros((32, 32), bool)
    dyn[:, :16] = True
    mem.insert(rgb, depth, np.eye(4), K32, 0, dynamic_mask=dyn)
    n_dyn = int(mem.gaussians.live("dynamic").sum())
    assert n_dyn > 0 and len(mem) > n_dyn
    mem.render(np.eye(4), K32, 20)
    assert int(mem.gaussians.live("dynamic").sum()) == n_dyn  # still within its lifetime
    r = mem.render(np.eye(4), K32, 21)
    assert int(mem.gaussians.live("dynamic").sum()) == 0 and len(mem) > 0
    assert r.alpha[:, 20:].mean() > 0.9 and r.alpha[:, :12].mean() < 0.1  # the static half stays


def test_confirmed_dynamic_gaussians_live_on() -> None:
    mem = memory32(dynamic_lifetime=5)
    rgb, depth = flat_frame(5.0)
    dyn = np.ones((32, 32), bool)
    for t in range(0, 30, 3):  # a still object, seen again every 3 ticks: confirmed each time
        mem.insert(rgb, depth, np.eye(4), K32, t, dynamic_mask=dyn)
    assert int(mem.gaussians.live("dynamic").sum()) > 100


def test_trust_keeps_a_real_view_against_later_dreamed_ones() -> None:
    """A real red wall, then dreamed views of the same wall in another colour and with the wall gone: with trust,
    the dreamed frames (far from the real one) barely move its colour and do not erase it; without, they do."""
    real, depth = flat_frame(5.0, color=(200, 40, 40))
    dreamed, _ = flat_frame(5.0, color=(40, 40, 200))
    gone = np.full((32, 32), 150.0, np.float32)  # the dream lost the wall: sky
    results = {}
    for half_life in (0.0, 4.0):
        mem = memory32(trust_half_life=half_life)
        mem.insert(real, depth, np.eye(4), K32, 0)
        assert np.all(mem.gaussians.live("trust") == 1.0)
        for t in range(12, 18):  # dreamed 12-17 ticks after the real view: trust 0.125 ... 0.05
            mem.insert(dreamed, depth, np.eye(4), K32, t, source_age=t)
        colour = mem.render(np.eye(4), K32, 18).rgb[8:24, 8:24].reshape(-1, 3).mean(0)
        for t in range(18, 20):
            mem.insert(real, gone, np.eye(4), K32, t, source_age=t)
        results[half_life] = colour, mem.render(np.eye(4), K32, 20).alpha[8:24, 8:24].mean()
    (c_off, a_off), (c_on, a_on) = results[0.0], results[4.0]
    assert c_off[2] > c_off[0]  # untrusting memory: the dreamed blue took over
    assert c_on[0] > 150 and c_on[2] < 90  # trust: still close to the real red
    assert a_off < 0.5 < 0.8 < a_on  # two sky views erase the wall, unless they are much less trusted
    assert memory32(trust_half_life=4.0).trust(8) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="source_age"):
        memory32().insert(real, depth, np.eye(4), K32, 0, source_age=-1)
    with pytest.raises(ValueError, match="trust_half_life"):
        memory32(trust_half_life=-1.0)


def test_carve_dreamed_lets_a_newer_dream_clear_an_older_dreams_wall_but_not_a_real_one() -> None:
    """A dreamed wall (5 ticks from a real view), then a later dream that sees open space there (sky): without
    carve_dreamed the older, more trusted dream's wall stays; with it, it fades. A real wall stays either way, and
    the later dream never recolours the older one's Gaussians."""
    wall, depth = flat_frame(5.0, color=(200, 40, 40))
    blue, _ = flat_frame(5.0, color=(40, 40, 200))
    gone = np.full((32, 32), 150.0, np.float32)
    alpha = {}
    for carve in (False, True):
        for first_age in (5, 0):  # a dreamed wall, a real one
            mem = memory32(trust_half_life=4.0, carve_dreamed=carve)
            mem.insert(wall, depth, np.eye(4), K32, 0, source_age=first_age)
            mem.insert(blue, depth, np.eye(4), K32, 10, source_age=first_age + 10)  # less trusted: no recolouring
            colour = mem.render(np.eye(4), K32, 11).rgb[8:24, 8:24].reshape(-1, 3).mean(0)
            assert colour[0] > 150 and colour[2] < 90, (carve, first_age, colour)
            for t in range(12, 16):
                mem.insert(wall, gone, np.eye(4), K32, t, source_age=first_age + t)
            alpha[carve, first_age] = mem.render(np.eye(4), K32, 16).alpha[8:24, 8:24].mean()
    assert alpha[False, 5] > 0.8 and alpha[True, 5] < 0.2  # the older dream's wall: kept, or carved away
    assert alpha[False, 0] > 0.8 and alpha[True, 0] > 0.8  # a real wall stays


def test_dedup_keeps_the_most_trusted() -> None:
    """Duplicates of a real view's Gaussians, made later by a dreamed view: the confirming view's deduplication
    keeps the real ones when the duplicates are less trusted, and the newer ones when they are trusted alike."""
    rgb, depth = flat_frame(5.0)
    for dup_trust, survivor_tick in ((0.25, 0), (1.0, 1)):
        mem = memory32(max_per_cell=1)
        mem.insert(rgb, depth, np.eye(4), K32, 0)
        g = mem.gaussians
        n = len(g)
        g.append(g.means[:n].copy(), g.quats[:n].copy(), g.scales[:n].copy(), g.opacities[:n].copy(),
                 g.colors[:n].copy(), 1, trust=dup_trust)
        mem.insert(rgb, depth, np.eye(4), K32, 2)
        assert len(mem) <= n and np.all(mem.gaussians.live("created_tick") == survivor_tick)


@pytest.mark.parametrize("case,match", [
    ("nan_depth", "depth"), ("zero_depth", "depth"), ("degenerate_K", "K"), ("nan_K", "K"),
    ("rgb_shape", "rgb"), ("depth_shape", "depth"), ("pose", "cam_to_world"), ("mask_shape", "dynamic_mask"),
])
def test_bad_inputs_raise_and_leave_memory_usable(case: str, match: str) -> None:
    mem = memory32()
    rgb, depth = flat_frame(4.0)
    mem.insert(rgb, depth, np.eye(4), K32, 0)
    n = len(mem)
    before = mem.render(np.eye(4), K32, 0)
    args = dict(rgb=rgb, depth=depth, cam_to_world=np.eye(4), K=K32, tick=1, dynamic_mask=None)
    if case == "nan_depth":
        args["depth"] = np.full((32, 32), np.nan, np.float32)
    elif case == "zero_depth":
        args["depth"] = np.zeros((32, 32), np.float32)
    elif case == "degenerate_K":
        args["K"] = np.array([[0.0, 0, 16], [0, 32, 16], [0, 0, 1]])
    elif case == "nan_K":
        args["K"] = np.array([[np.nan, 0, 16], [0, 32, 16], [0, 0, 1]])
    elif case == "rgb_shape":
        args["rgb"] = rgb[:, :, :2]
    elif case == "depth_shape":
        args["depth"] = depth[:16]
    elif case == "pose":
        args["cam_to_world"] = np.eye(4) * 2.0
    elif case == "mask_shape":
        args["dynamic_mask"] = np.ones((8, 8), bool)
    with pytest.raises(ValueError, match=match):
        mem.insert(**args)
    assert len(mem) == n
    after = mem.render(np.eye(4), K32, 0)
    assert np.array_equal(before.rgb, after.rgb) and np.array_equal(before.alpha, after.alpha)


def test_render_checks_K_and_reset() -> None:
    mem = memory32()
    with pytest.raises(ValueError, match="K"):
        mem.render(np.eye(4), np.zeros((3, 3)), 0)
    mem.insert(*flat_frame(4.0), np.eye(4), K32, 0)
    assert len(mem) > 0 and mem.last_insert_ms > 0
    mem.reset()
    r = mem.render(np.eye(4), K32, 1)
    assert len(mem) == 0 and r.alpha.max() == 0 and r.rgb.max() == 0 and mem.last_render_ms > 0


def test_state_dict_round_trip(arena_frames: list) -> None:
    obs = arena_frames[0]
    mem = SceneMemory(budget=5000)
    mem.insert(obs.rgb, obs.depth, obs.cam_to_world, obs.K, 0, obs.dynamic_mask)
    state = mem.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    again = SceneMemory.from_state_dict(state)
    assert again.config == mem.config and len(again) == len(mem)
    a, b = mem.render(obs.cam_to_world, obs.K, 0), again.render(obs.cam_to_world, obs.K, 0)
    assert np.array_equal(a.rgb, b.rgb)


def test_memory_config_rejects_unknown_settings() -> None:
    with pytest.raises(ValueError, match="budgit"):
        SceneMemory(budgit=10)
    with pytest.raises(ValueError, match="subsample"):
        MemoryConfig(subsample=0)


# -- .ply and export -------------------------------------------------------------------------------------------------


def test_ply_round_trip(tmp_path: Path) -> None:
    means, quats, scales, opacities, colors = random_scene(100, 5)
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    g = Gaussians.empty(100)
    g.append(means, quats, scales, opacities, colors, tick=0)
    path = tmp_path / "scene.ply"
    assert write_ply(path, g) == 100
    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")
    back = read_ply(path)
    assert len(back) == 100
    np.testing.assert_array_equal(back.live("means"), means)
    np.testing.assert_array_equal(back.live("quats"), quats)
    np.testing.assert_allclose(back.live("scales"), scales, rtol=1e-5)
    np.testing.assert_allclose(back.live("opacities"), opacities, atol=1e-5)
    np.testing.assert_allclose(back.live("colors"), colors, atol=1e-5)


def test_ply_that_is_not_3dgs_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "points.ply"
    header = ("ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
              "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    path.write_bytes(header.encode() + np.zeros(2, "<f4,<f4,<f4,u1,u1,u1").tobytes())
    with pytest.raises(ValueError, match="f_dc_0"):
        read_ply(path)
    (tmp_path / "text.ply").write_text("hello\n")
    with pytest.raises(ValueError, match="not a .ply"):
        read_ply(tmp_path / "text.ply")


def test_export_cli_on_a_tiny_recording(tmp_path: Path) -> None:
    from engine.rollout import rollout

    rollout(world="arena", out=tmp_path / "rec", episodes=1, ticks=20, policy="explore",
            config={"width": 32, "height": 32}, progress=False)
    out = tmp_path / "scene.ply"
    proc = subprocess.run([sys.executable, "-m", "splat.export", str(tmp_path / "rec"), "--ply", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    g = read_ply(out)
    assert len(g) > 100
    # the scene sits where the camera looked: most means are in front of the first camera
    from engine.recording import Recording

    first = Recording(next((tmp_path / "rec").glob("ep_*")))[0].obs
    z = g.live("means") @ world_to_camera(first.cam_to_world)[:3, :3].T + world_to_camera(first.cam_to_world)[:3, 3]
    assert (z[:, 2] > 0).mean() > 0.5


def test_export_rejects_recordings_without_depth(tmp_path: Path) -> None:
    from engine.recording import RecordingMeta, RecordingWriter
    from engine.world import Observation
    from splat.export import main

    rec = tmp_path / "rgb_only"
    with RecordingWriter(rec, RecordingMeta(world="test", world_config={}, seed=0, tick_rate=20.0), video=False) as w:
        for t in range(3):
            w.write(Observation(rgb=np.zeros((16, 16, 3), np.uint8), tick=t), reset=(t == 0),
                    seed=0 if t == 0 else None)
    assert main([str(rec), "--ply", str(tmp_path / "x.ply")]) == 2
    assert not (tmp_path / "x.ply").exists()
    assert main([str(tmp_path / "nothing_here"), "--ply", str(tmp_path / "x.ply")]) == 2


def test_both_scene_memories_implement_the_interface_the_dream_uses():
    """splat.SceneMemoryLike: the splat memory and the evaluation's ground-truth memory (the revisit oracle) both
    give every method a dream calls, with the protocol's parameters."""
    import inspect

    from splat import SceneMemory, SceneMemoryLike
    from worldmodel.evaluation.baselines import GroundTruthMemory

    wanted = {n: inspect.signature(getattr(SceneMemoryLike, n)) for n in
              ("insert", "render", "obstacles", "reset", "save_ply", "__len__")}
    for cls in (SceneMemory, GroundTruthMemory):
        for name, sig in wanted.items():
            assert callable(getattr(cls, name, None)), f"{cls.__name__} has no {name}"
            got = list(inspect.signature(getattr(cls, name)).parameters)
            assert got == list(sig.parameters), (cls.__name__, name, got)
