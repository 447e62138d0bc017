"""Evaluate a model on the arena's held-out test set, against a copy-last-frame baseline measured in the same run.

    python -m worldmodel.evaluate --checkpoint assets/model --out runs/eval

Protocol: for every "moving" trajectory of the fixed test set (engine.arena.splits.TEST_SET) and
several start ticks t0, the model gets `--context` ground-truth frames ending at t0 (encoded, with
their true actions), then rolls out open loop with the true actions for 128 ticks. The dreamed frame at
t0 + h is compared with the ground truth at t0 + h (PSNR, SSIM on RGB at the model's resolution) for
h in 1, 8, 32, 128; the copy-last baseline compares the ground truth at t0 instead. The pose head's
ego-motion, integrated from t0, is compared with the true pose after 32 ticks. Also reported: the
autoencoder's reconstruction PSNR on the test frames and the dream's ticks/s (batch 1).

Then the memory revisit benchmark (`revisit`): dreams along the test set's revisit trajectories from their
first real view, with the scene memory off, on (built from the dream's own frames), and an oracle (the memory
fed the ground truth at the true poses: what a right memory would give this model; and the same true memory
seen from the dream's own drifted camera, which separates the pose drift's cost from the frames'), scored after
the return;
and the memory's fidelity on ground-truth inserts. `--revisit-only --revisit-split validation --memory K=V`
runs it alone on revisits planned on validation seeds, to choose the memory's settings.

Writes `report.json` (keys ae_psnr, psnr.model.{1,8,32,128}, psnr.copy_last.{...}, ssim.*,
pose_error_32.{position_m,yaw_deg}, ticks_per_s, revisit.{memory_on,memory_off,memory_oracle,...},
memory_fidelity, ...), `psnr.png` (PSNR against horizon) and `strip.png` (dreamed frames over ground truth).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from worldmodel.checkpoint import CheckpointError, LoadedModel, load_model
from worldmodel.data import area_resize, frames_to_tensor, tensor_to_frames
from worldmodel.flow import FlowSampler
from worldmodel.pose import apply_ego_motion, decompose, wrap_deg

HORIZONS = (1, 8, 32, 128)


@dataclass
class Trajectory:
    """A ground-truth trajectory at the model's resolution."""

    rgb: np.ndarray  # [T+1, H, W, 3] uint8
    depth: np.ndarray  # [T+1, H, W] float32
    c2w: np.ndarray  # [T+1, 4, 4]
    actions: np.ndarray  # [T+1, 8] (row i leads into frame i; row 0 zeros)
    name: str


def render_trajectory(entry, size: tuple[int, int], render_size: tuple[int, int]) -> Trajectory:
    """Render a test entry with the arena at `render_size`, area-resized to the model's `size` (as the data)."""
    from engine.arena import ArenaWorld
    from engine.arena.splits import TEST_PRESET, TEST_TICK_RATE, entry_actions

    actions = entry_actions(entry)
    world = ArenaWorld(preset=TEST_PRESET, width=render_size[1], height=render_size[0], tick_rate=TEST_TICK_RATE)
    try:
        obs = [world.reset(entry.level_seed)] + [world.step(a) for a in actions]
    finally:
        world.close()
    rgb = area_resize(np.stack([o.rgb for o in obs]), size)
    depth = area_resize(np.stack([o.depth for o in obs])[..., None], size)[..., 0]
    acts = np.zeros((len(obs), 8), np.float32)
    acts[1:] = np.stack([a.to_array() for a in actions])
    name = f"{entry.kind}-{entry.level_seed}"
    return Trajectory(rgb, depth.astype(np.float32), np.stack([o.cam_to_world for o in obs]), acts, name)


def render_at_poses(entry, c2w: np.ndarray, ticks: np.ndarray, size: tuple[int, int],
                    render_size: tuple[int, int]) -> np.ndarray:
    """The arena level of a test entry seen from given cameras c2w [N, 4, 4] at given ticks [N] (movers where
    they are then): the ground truth of what a dream should show from where *it* believes the camera is."""
    from engine.arena import ArenaWorld
    from engine.arena.splits import TEST_PRESET, TEST_TICK_RATE

    world = ArenaWorld(preset=TEST_PRESET, width=render_size[1], height=render_size[0], tick_rate=TEST_TICK_RATE)
    try:
        world.reset(entry.level_seed)
        rgb = np.stack([world.renderer.render(m, int(t) / TEST_TICK_RATE).rgb for m, t in zip(c2w, ticks)])
    finally:
        world.close()
    return area_resize(rgb, size)


def recorded_trajectories(paths: list[str], size: tuple[int, int]) -> list[Trajectory]:
    """Held-out recordings of any World as test trajectories (one per episode)."""
    from worldmodel.data import FrameStore

    store = FrameStore.load(paths, size)
    trajs = []
    for e, (s, n) in enumerate(zip(store.starts, store.lengths)):
        sl = slice(int(s), int(s + n))
        depth = store.depth[sl].astype(np.float32) if store.depth is not None else np.zeros((n, *size), np.float32)
        c2w = store.c2w[sl].astype(np.float64) if store.c2w is not None else np.tile(np.eye(4), (n, 1, 1))
        trajs.append(Trajectory(store.rgb[sl], depth, c2w, store.actions[sl], f"recording-episode-{e}"))
    return trajs


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """PSNR (dB) per image between uint8 [..., H, W, 3] stacks."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=(-3, -2, -1))
    return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM per image (Gaussian window 11, sigma 1.5, on each RGB channel, averaged) for uint8 [N, H, W, 3]."""
    x = torch.from_numpy(a).float().permute(0, 3, 1, 2) / 255.0
    y = torch.from_numpy(b).float().permute(0, 3, 1, 2) / 255.0
    g = torch.exp(-((torch.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    g = (g / g.sum())
    win = (g[:, None] * g[None, :]).expand(3, 1, 11, 11).contiguous()
    blur = lambda t: F.conv2d(F.pad(t, (5, 5, 5, 5), mode="reflect"), win, groups=3)  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3)).numpy()


@torch.no_grad()
def encode(model: LoadedModel, rgb: np.ndarray, depth: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] + metres [N, H, W] -> latents [N, C, h, w]."""
    ae = model.autoencoder
    out = []
    for i in range(0, len(rgb), 128):
        d = torch.from_numpy(depth[i:i + 128])[:, None] if ae.config.use_depth else None
        out.append(ae.encode(frames_to_tensor(rgb[i:i + 128]), d).float())
    return torch.cat(out)


@torch.no_grad()
def decode(model: LoadedModel, z: torch.Tensor) -> np.ndarray:
    return tensor_to_frames(model.autoencoder.decode(z.float()).rgb)


@dataclass
class RolloutResult:
    pred: np.ndarray  # [B, Hmax, H, W, 3] dreamed frames at t0+1 .. t0+Hmax
    c2w: np.ndarray  # [B, Hmax, 4, 4] integrated poses


@torch.no_grad()
def open_loop(model: LoadedModel, latents: torch.Tensor, actions: torch.Tensor, c2w0: np.ndarray, context: int,
              horizon: int, steps: int, seed: int, memory: Any = None, context_noise: float = 0.0) -> RolloutResult:
    """Batched rollouts. latents [B, context, C, h, w] and actions [B, context + horizon, 8] (row i leads into
    frame i); c2w0 [B, 4, 4] the pose of the last context frame. Returns dreamed frames and poses."""
    dyn = model.dynamics
    B = latents.shape[0]
    state = dyn.new_state(B)
    for i in range(context):
        dyn.commit_frame(state, latents[:, i].to(dyn.dtype), actions[:, i].to(dyn.dtype))
    sampler = FlowSampler(steps=steps, context_noise=context_noise)
    gen = torch.Generator().manual_seed(seed)
    frames, poses = [], []
    c2w = c2w0.copy()
    for h in range(horizon):
        a = actions[:, context + h].to(dyn.dtype)
        motion = dyn.predict_pose(state, a).float().numpy()
        c2w = apply_ego_motion(c2w, motion)
        out = sampler.sample(dyn, state, a, memory=None, generator=gen)
        frames.append(decode(model, out.latent))
        poses.append(c2w.copy())
    return RolloutResult(np.stack(frames, 1), np.stack(poses, 1))


def measure_ticks_per_s(model: LoadedModel, steps: int, ticks: int = 100) -> float:
    """Batch-1 dream ticks (pose + sampling + commit + decode) per second, after a warm-up."""
    dyn = model.dynamics
    C, h, w = model.config.latent_shape
    state = dyn.new_state(1)
    sampler = FlowSampler(steps=steps)
    gen = torch.Generator().manual_seed(0)
    a = torch.zeros(1, 8, dtype=dyn.dtype)
    a[0, 0] = 1.0
    with torch.no_grad():
        for i in range(ticks + 20):
            if i == 20:
                t0 = time.perf_counter()
            dyn.predict_pose(state, a)
            z = sampler.sample(dyn, state, a, generator=gen).latent
            model.autoencoder.decode(z.float())
    return ticks / (time.perf_counter() - t0)


def draw_plot(path: Path, series: dict[str, list[float]], horizons: tuple[int, ...], title: str) -> None:
    """A small line plot (PSNR against horizon) drawn with pygame, which is already a dependency."""
    import pygame

    pygame.font.init()
    W, H, m = 560, 360, 50
    surf = pygame.Surface((W, H))
    surf.fill((255, 255, 255))
    font = pygame.font.Font(None, 20)
    values = [v for s in series.values() for v in s if math.isfinite(v)]
    lo, hi = math.floor(min(values) - 1), math.ceil(max(values) + 1)
    xs = [m + i * (W - 2 * m) / (len(horizons) - 1) for i in range(len(horizons))]
    y = lambda v: H - m - (v - lo) / (hi - lo) * (H - 2 * m)  # noqa: E731
    pygame.draw.line(surf, (0, 0, 0), (m, H - m), (W - m, H - m))
    pygame.draw.line(surf, (0, 0, 0), (m, m), (m, H - m))
    for x, hz in zip(xs, horizons):
        surf.blit(font.render(str(hz), True, (0, 0, 0)), (x - 6, H - m + 6))
    for v in range(lo, hi + 1, max(1, (hi - lo) // 6)):
        surf.blit(font.render(f"{v}", True, (0, 0, 0)), (m - 30, y(v) - 7))
        pygame.draw.line(surf, (225, 225, 225), (m + 1, y(v)), (W - m, y(v)))
    colors = [(200, 40, 40), (40, 90, 200), (40, 160, 60), (150, 80, 180)]
    for k, (name, vals) in enumerate(series.items()):
        pts = [(x, y(v)) for x, v in zip(xs, vals)]
        pygame.draw.lines(surf, colors[k % 4], False, pts, 3)
        for p in pts:
            pygame.draw.circle(surf, colors[k % 4], p, 4)
        surf.blit(font.render(name, True, colors[k % 4]), (W - m - 150, m + 18 * k))
    surf.blit(font.render(title, True, (0, 0, 0)), (m, 16))
    surf.blit(font.render("horizon (ticks)", True, (0, 0, 0)), (W // 2 - 40, H - 22))
    pygame.image.save(surf, str(path))


def save_strip(path: Path, dream: np.ndarray, truth: np.ndarray, scale: int = 3) -> None:
    """Rows of dreamed frames over ground truth: dream [R, K, H, W, 3], truth [R, K, H, W, 3]."""
    import pygame

    rows = []
    for d, t in zip(dream, truth):
        rows.append(np.concatenate(list(d), 1))
        rows.append(np.concatenate(list(t), 1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    img = np.concatenate(rows, 0).repeat(scale, 0).repeat(scale, 1)
    pygame.image.save(pygame.image.frombuffer(np.ascontiguousarray(img).tobytes(), (img.shape[1], img.shape[0]), "RGB"), str(path))


def evaluate(model_dir: Path, out: Path, context: int = 8, steps: int = 1, starts_per_traj: int = 3,
             render_scale: int = 2, max_entries: int | None = None, seed: int = 0,
             data: list[str] | None = None, context_noise: float | None = None) -> dict[str, Any]:
    """Run the protocol in the module docstring; `data` replaces the arena test set with recordings.
    `context_noise`: the level the dream's own frames are committed at (as in DreamWorld; None: the
    model's own, from its model.yaml)."""
    torch.set_num_threads(2)
    model = load_model(model_dir)
    if context_noise is None:
        context_noise = model.context_noise
    H, W = model.config.frame_size
    context = min(context, model.config.dynamics.window)
    if data:
        trajs = recorded_trajectories(data, (H, W))[:max_entries]
    else:
        from engine.arena.splits import held_out_test_set

        entries = [e for e in held_out_test_set() if e.kind == "moving"][:max_entries]
        trajs = [render_trajectory(e, (H, W), (H * render_scale, W * render_scale)) for e in entries]
    shortest = min(len(tr.rgb) for tr in trajs) - 1
    horizons = tuple(h for h in HORIZONS if context + h <= shortest)
    if not horizons:
        raise ValueError(f"test episodes of {shortest + 1} frames are too short for {context} context frames + 1 tick")
    hmax = max(horizons)

    # Start ticks spread over each trajectory, leaving room for the context and the longest horizon.
    lat_b, act_b, c2w_b, truth, last = [], [], [], [], []
    for tr in trajs:
        T = len(tr.rgb) - 1
        latents = encode(model, tr.rgb, tr.depth)
        for t0 in np.linspace(context, T - hmax, starts_per_traj).astype(int):
            lat_b.append(latents[t0 - context + 1:t0 + 1])
            act_b.append(torch.from_numpy(tr.actions[t0 - context + 1:t0 + hmax + 1]))
            c2w_b.append(tr.c2w[t0])
            truth.append(tr.rgb[t0 + 1:t0 + hmax + 1])
            last.append(tr.rgb[t0])
    truth_np, last_np = np.stack(truth), np.stack(last)
    t_start = time.perf_counter()
    result = open_loop(model, torch.stack(lat_b), torch.stack(act_b), np.stack(c2w_b), context, hmax, steps, seed,
                       context_noise=context_noise)
    rollout_s = time.perf_counter() - t_start
    gt_c2w = []
    for tr in trajs:
        T = len(tr.rgb) - 1
        for t0 in np.linspace(context, T - hmax, starts_per_traj).astype(int):
            gt_c2w.append(tr.c2w[t0 + min(32, hmax)])
    gt_c2w = np.stack(gt_c2w)

    report: dict[str, Any] = {"psnr": {"model": {}, "copy_last": {}}, "ssim": {"model": {}, "copy_last": {}}}
    for h in horizons:
        pred, gt = result.pred[:, h - 1], truth_np[:, h - 1]
        report["psnr"]["model"][str(h)] = float(psnr(pred, gt).mean())
        report["psnr"]["copy_last"][str(h)] = float(psnr(last_np, gt).mean())
        report["ssim"]["model"][str(h)] = float(ssim(pred, gt).mean())
        report["ssim"]["copy_last"][str(h)] = float(ssim(last_np, gt).mean())
    report["psnr"]["gain_over_copy_last"] = {str(h): report["psnr"]["model"][str(h)] - report["psnr"]["copy_last"][str(h)]
                                             for h in horizons}
    k = min(32, hmax)
    p_pred, yaw_pred, _ = decompose(result.c2w[:, k - 1])
    p_true, yaw_true, _ = decompose(gt_c2w)
    report["pose_error_32"] = {"ticks": k, "position_m": float(np.linalg.norm(p_pred - p_true, axis=-1).mean()),
                               "yaw_deg": float(np.abs(wrap_deg(yaw_pred - yaw_true)).mean())}
    # Autoencoder reconstruction on every test frame of these trajectories.
    all_rgb = np.concatenate([tr.rgb for tr in trajs])
    all_depth = np.concatenate([tr.depth for tr in trajs])
    recon = np.concatenate([decode(model, encode(model, all_rgb[i:i + 256], all_depth[i:i + 256]))
                            for i in range(0, len(all_rgb), 256)])
    report["ae_psnr"] = float(psnr(recon, all_rgb).mean())
    report["ticks_per_s"] = measure_ticks_per_s(model, steps)
    report["setup"] = {"checkpoint": str(model_dir), "model_hash": model.hash, "trajectories": len(trajs),
                       "rollouts": len(lat_b), "context": context, "sampling_steps": steps, "context_noise": context_noise,
                       "frame_size": [H, W], "render_size": [H * render_scale, W * render_scale],
                       "batched_rollout_s": round(rollout_s, 2), "seed": seed, "model_info": model.info,
                       "test_set": data or "arena held-out TEST_SET (moving)", "horizons": list(horizons)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    draw_plot(out / "psnr.png", {"model": [report["psnr"]["model"][str(h)] for h in horizons],
                                 "copy last frame": [report["psnr"]["copy_last"][str(h)] for h in horizons]},
              horizons, f"PSNR on held-out {'recordings' if data else 'arena trajectories'} ({len(lat_b)} rollouts)")
    pick = list(range(0, len(lat_b), max(1, len(lat_b) // 4)))[:4]
    idx = [h - 1 for h in horizons]
    save_strip(out / "strip.png", result.pred[pick][:, idx], truth_np[pick][:, idx])
    return report


class GroundTruthMemory:
    """A scene memory fed the ground truth instead of the dream: every insert puts the trajectory's true frame
    and depth at its true pose, every render is at the true pose of that tick. Wrapped around the dream's own
    SceneMemory (same settings), it is the revisit benchmark's oracle: the dream still makes every frame, but
    the memory it is conditioned on is right, so `memory_oracle - memory_off` says how much this model could
    gain from memory, and `memory_oracle - memory_on` how much its own memory loses of that.
    `render_at_truth=False` renders that true memory at the dream's own camera instead (`memory_oracle_dream_pose`):
    `memory_oracle - memory_oracle_dream_pose` is what the dream's pose drift costs, and
    `memory_oracle_dream_pose - memory_on` what its frames (blur, wrong colours and depth) cost."""

    def __init__(self, memory: Any, trajectory: Trajectory, render_at_truth: bool = True) -> None:
        self.memory, self.tr, self.render_at_truth = memory, trajectory, render_at_truth

    def reset(self) -> None:
        self.memory.reset()

    def __len__(self) -> int:
        return len(self.memory)

    def render(self, cam_to_world: np.ndarray, K: np.ndarray, tick: int):
        # render_at_truth=False: the dream's own (drifted) camera, so the oracle's loss is the pose drift alone
        return self.memory.render(self.tr.c2w[tick] if self.render_at_truth else cam_to_world, K, tick)

    def insert(self, rgb: np.ndarray, depth: np.ndarray, cam_to_world: np.ndarray, K: np.ndarray, tick: int,
               dynamic_mask: np.ndarray | None = None, source_age: int = 0) -> None:
        self.memory.insert(self.tr.rgb[tick], self.tr.depth[tick], self.tr.c2w[tick], K, tick)  # real: age 0


def revisit(model_dir: Path, render_scale: int = 2, max_entries: int | None = None, steps: int = 1,
            context_noise: float | None = None, split: str = "test",
            memory_settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The revisit benchmark: open-loop dreams along the held-out revisit trajectories (which leave and
    come back after more ticks than the context window), memory on vs off, scored against ground truth
    on the frames after the return; plus the memory's own fidelity on ground-truth inserts.
    `split="validation"`: revisits planned the same way on validation seeds, for choosing settings;
    `memory_settings`: splat.MemoryConfig fields instead of the model's own (model.yaml info.memory)."""
    from engine.arena.splits import entry_actions, held_out_test_set, revisit_entries
    from splat import SceneMemory
    from worldmodel.checkpoint import check_memory_settings
    from worldmodel.dream import DreamWorld

    model = load_model(model_dir)
    H, W = model.config.frame_size
    if memory_settings is None:
        memory_settings = model.memory_settings
    memory_settings = check_memory_settings(memory_settings, "memory settings")
    if split == "test":
        entries = [e for e in held_out_test_set() if e.kind == "revisit"][:max_entries]
    else:
        entries = revisit_entries(split, max_entries or 8)
    rows, fidelity, fidelity_covered, coverage = [], [], [], []
    prompt = {"width": W * render_scale, "height": H * render_scale}
    worlds = {kind: DreamWorld(str(model_dir), steps=steps, memory=kind != "off", prompt_config=prompt,
                               context_noise=context_noise, memory_settings=memory_settings)
              for kind in ("off", "on", "oracle", "oracle_dream_pose")}
    for e in entries:
        tr = render_trajectory(e, (H, W), (H * render_scale, W * render_scale))
        actions = entry_actions(e)
        scores = {}
        for kind, world in worlds.items():
            if kind.startswith("oracle"):
                world.attach_memory(GroundTruthMemory(SceneMemory(width=W, height=H, **memory_settings), tr,
                                                      render_at_truth=kind == "oracle"))
            obs = [world.reset(e.level_seed)] + [world.step(a) for a in actions]
            pred = np.stack([o.rgb for o in obs[e.return_tick:]])
            gt = tr.rgb[e.return_tick:len(obs)]
            scores[kind] = (float(psnr(pred, gt).mean()), float(ssim(pred, gt).mean()))
            if kind in ("on", "off"):  # the truth from the dream's own (drifted) cameras
                ticks = np.arange(e.return_tick, len(obs))
                gt_there = render_at_poses(e, np.stack([o.cam_to_world for o in obs[e.return_tick:]]), ticks,
                                           (H, W), (H * render_scale, W * render_scale))
                scores[f"{kind}_at_dream_pose"] = (float(psnr(pred, gt_there).mean()),
                                                   float(ssim(pred, gt_there).mean()))
            if kind == "on":  # how far the dream's camera is from the truth on its return
                p_dream, yaw_dream, _ = decompose(obs[e.return_tick].cam_to_world[None])
                p_true, yaw_true, _ = decompose(tr.c2w[e.return_tick][None])
                drift = {"position_m": float(np.linalg.norm(p_dream - p_true)),
                         "yaw_deg": float(np.abs(wrap_deg(yaw_dream - yaw_true)).max())}
        rows.append({"level_seed": e.level_seed, "gap_ticks": e.return_tick, "pose_drift_at_return": drift,
                     **{f"psnr_memory_{k}": v[0] for k, v in scores.items()},
                     **{f"ssim_memory_{k}": v[1] for k, v in scores.items()}})
        # Fidelity: ground-truth frames in, rendered back at the same poses.
        memory = SceneMemory(width=W, height=H, **memory_settings)
        K = worlds["on"].K
        for t in range(0, len(tr.rgb), 5):
            memory.insert(tr.rgb[t], tr.depth[t], tr.c2w[t], K, t)
            view = memory.render(tr.c2w[t], K, t)
            fidelity.append(float(psnr(view.rgb, tr.rgb[t])))
            cov = view.alpha > 0.5
            coverage.append(float(cov.mean()))
            if cov.any():
                mse = ((view.rgb[cov].astype(float) - tr.rgb[t][cov].astype(float)) ** 2).mean()
                fidelity_covered.append(10 * math.log10(255.0**2 / max(mse, 1e-10)))
    for w in worlds.values():
        w.close()
    on = float(np.mean([r["psnr_memory_on"] for r in rows]))
    off = float(np.mean([r["psnr_memory_off"] for r in rows]))
    oracle = float(np.mean([r["psnr_memory_oracle"] for r in rows]))
    oracle_dream_pose = float(np.mean([r["psnr_memory_oracle_dream_pose"] for r in rows]))
    return {"revisit": {"memory_on": on, "memory_off": off, "gain_db": on - off,
                        "ssim_memory_on": float(np.mean([r["ssim_memory_on"] for r in rows])),
                        "ssim_memory_off": float(np.mean([r["ssim_memory_off"] for r in rows])),
                        # Diagnostic: the same dream given a memory of the ground truth instead of its own frames
                        # (see GroundTruthMemory) — how much a memory could help this model if it were right.
                        "memory_oracle": oracle, "oracle_gain_db": oracle - off,
                        "ssim_memory_oracle": float(np.mean([r["ssim_memory_oracle"] for r in rows])),
                        # ... and that true memory seen from the dream's own drifted camera: the pose drift's share
                        "memory_oracle_dream_pose": oracle_dream_pose,
                        "pose_drift_cost_db": oracle - oracle_dream_pose,
                        # Scored against the truth rendered at the dream's own cameras instead: the scene's
                        # consistency with the pose drift taken out (models whose camera is an input, not a
                        # prediction, are scored this way by construction)
                        "at_dream_pose": {k: float(np.mean([r[f"psnr_memory_{k}_at_dream_pose"] for r in rows]))
                                          for k in ("on", "off")},
                        "pose_drift_at_return_m": float(np.mean([r["pose_drift_at_return"]["position_m"] for r in rows])),
                        "pose_drift_at_return_deg": float(np.mean([r["pose_drift_at_return"]["yaw_deg"] for r in rows])),
                        "context_window_frames": model.config.dynamics.window, "split": split,
                        "memory_settings": memory_settings, "per_trajectory": rows},
            # The memory holds geometry, not the sky (depth beyond its max_depth): fidelity is scored on the
            # pixels it covers, with the coverage and the whole-frame figure beside it.
            "memory_fidelity": float(np.mean(fidelity_covered)) if fidelity_covered else None,
            "memory_fidelity_coverage": float(np.mean(coverage)),
            "memory_fidelity_full_frame": float(np.mean(fidelity))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m worldmodel.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="model directory (model.yaml + model.safetensors)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--context", type=int, default=8, help="ground-truth frames before the open loop")
    p.add_argument("--steps", type=int, default=1, help="sampling steps per frame")
    p.add_argument("--context-noise", type=float, default=None,
                   help="noise level the dream's own frames are committed at (default: the model's, from its "
                        "model.yaml info.sampling; sweep it on validation recordings with --data)")
    p.add_argument("--starts", type=int, default=3, help="start ticks per trajectory")
    p.add_argument("--max-entries", type=int, default=None, help="use only the first N test trajectories (smoke runs)")
    p.add_argument("--no-revisit", action="store_true", help="skip the memory revisit benchmark")
    p.add_argument("--revisit-only", action="store_true", help="only the memory revisit benchmark (no open loop)")
    p.add_argument("--revisit-split", choices=("test", "validation"), default="test",
                   help="revisit trajectories: the held-out test set, or the same kind planned on validation seeds "
                        "(choose memory settings there)")
    p.add_argument("--memory", action="append", default=[], metavar="KEY=VALUE",
                   help="scene-memory setting (a splat.MemoryConfig field, e.g. subsample=1) instead of the model's; "
                        "repeatable")
    p.add_argument("--data", nargs="+", default=None,
                   help="held-out recordings of any World to test on instead of the arena test set")
    args = p.parse_args(argv)
    if (args.revisit_only or args.memory or args.revisit_split != "test") and (args.no_revisit or args.data):
        p.error("--revisit-only, --memory and --revisit-split are for the arena revisit benchmark; "
                "they cannot go with --no-revisit or --data")
    try:
        memory_settings = None
        if args.memory:
            memory_settings = {}
            for item in args.memory:
                key, sep, value = item.partition("=")
                if not sep:
                    raise ValueError(f"--memory {item!r}: expected KEY=VALUE, e.g. --memory subsample=1")
                memory_settings[key.strip()] = yaml.safe_load(value)
            from worldmodel.checkpoint import check_memory_settings

            check_memory_settings(memory_settings, "--memory")  # before the open loop, not after it
        if args.revisit_only:
            args.out.mkdir(parents=True, exist_ok=True)
            report = {}
        else:
            report = evaluate(args.checkpoint, args.out, args.context, args.steps, args.starts,
                              max_entries=args.max_entries, data=args.data, context_noise=args.context_noise)
        if not args.no_revisit and not args.data:
            report.update(revisit(args.checkpoint, max_entries=args.max_entries, steps=args.steps,
                                  context_noise=args.context_noise, split=args.revisit_split,
                                  memory_settings=memory_settings))
            (args.out / "report.json").write_text(json.dumps(report, indent=2))
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    brief = {k: v for k, v in report.items() if k != "setup"}
    if "revisit" in brief:
        brief["revisit"] = {k: v for k, v in brief["revisit"].items() if k != "per_trajectory"}
    print(json.dumps(brief, indent=2))
    if args.revisit_only:
        print(f"report: {args.out / 'report.json'}")
    else:
        print(f"report: {args.out / 'report.json'}; plots: {args.out / 'psnr.png'}, {args.out / 'strip.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
