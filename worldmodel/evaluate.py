"""Evaluate a model on held-out arena trajectories as a player sees it, beside baselines measured in the same run.

    python -m worldmodel.evaluate --checkpoint assets/model --out runs/eval                    # the test set
    python -m worldmodel.evaluate --checkpoint runs/m --out runs/val --split validation        # choose here

Choose settings and models on `--split validation` (trajectories planned the same way on validation seeds);
score the test set once for a candidate that is to ship. Compare two reports with paired bootstrap intervals:
`python -m worldmodel.evaluation.report compare A/report.json B/report.json`.

The parts (worldmodel/evaluation/): `trajectories` renders the held-out walks, `metrics` measures frames (PSNR,
SSIM, ST-LPIPS, sharpness, brightness and contrast drift, paired bootstrap), `baselines` holds copy-last, the
mean frame and the geometric baseline (the true frames lifted into the splat memory, rendered at the true
camera), `report` writes the plots, the strip and the README table.

1. Open loop (`psnr`, `ssim`, `lpips`, `sharpness`, `sharpness_hf`, `brightness_drift`, `contrast_ratio`, each
   {model, copy_last, mean_frame, geometric: {horizon: value}}): for every "moving" walk and several start
   ticks t0, the model gets `--context` real frames ending at t0 (encoded, with their true actions), then
   dreams open loop with the true actions; its frame at t0 + h is scored against the truth for h in HORIZONS.
   `ci95` holds model - baseline differences with paired bootstrap 95% intervals over walks; `per_rollout`
   the per-frame scores (for `report compare`). Also the pose after 32 ticks, the autoencoder's
   reconstruction PSNR and the dream's ticks/s.
2. Places (`returns`, `idle`, `wall`, `long_walk`): the dream as `play.py` runs it (from the real first view,
   with the scene memory off, and on as shipped; every walk of a kind dreamed together through the one tick,
   worldmodel.tick) along the held-out kinds of engine.arena.splits: a 360° turn in
   place, out and back, looking up and down (each back at the start view at its return tick: scored against
   the truth there and against the frame the dream left), standing still 200 ticks (frame change and camera
   drift), walking into a wall (how far from where the player stopped the dream's camera ends) and a
   1,000-tick walk; the geometric baseline beside each.
3. Revisits (`revisit`, `memory_fidelity`): dreams along the revisit walks with the scene memory off, on and an
   oracle (the memory fed the truth); `--revisit-only` runs this alone, `--memory K=V` tries memory settings.

`--data REC ...` (one's own game): part 1 on the recordings, and part 3 on the returns found in them
(`recorded_revisit`; evaluation/returns.py says what counts as a return), scored at the return tick with the
geometric baseline beside; the report's `setup.world` and `setup.render_size` are the recordings'. Part 2 is
scripted arena walks and is skipped (`skipped.places`); a recording without poses or depth, or without returns,
gets `skipped.revisit` (one line) instead of a `revisit` section.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.cli import Parser, integer, number
from engine.files import atomic_write_text, check_write_target, io_reason
from worldmodel.checkpoint import CheckpointError, LoadedModel, load_model
from worldmodel.device import DEVICE_CHOICES
from worldmodel.data import frames_to_tensor, tensor_to_frames
from worldmodel.evaluation.baselines import GEOMETRIC_MEMORY, GroundTruthMemory, geometric, mean_frame, seen_views
from worldmodel.evaluation.metrics import (FrameScores, paired_bootstrap, psnr, score_frames, score_regions, ssim,
                                           summarize)
from worldmodel.evaluation.report import CI_METRICS, draw_plot, save_strip
from worldmodel.evaluation.returns import AWAY_DEG, AWAY_M, NEAR_DEG, NEAR_M, find_returns, rotation_deg
from worldmodel.evaluation.consistency import PhysicsAgreement, physics_agreement
from worldmodel.evaluation.trajectories import (Trajectory, play, recorded_trajectories, recordings_setup,
                                                render_actions, render_at_poses, render_trajectory)
from worldmodel.evaluation.unseen import (BANDS, LONG_BAND, REFERENCE_FROM, REFERENCE_STRIDE, FrameSet, band_name,
                                          band_ticks, realism_scores, realism_setup, reference_set, seen_cells)
from worldmodel.motion import MotionModel
from worldmodel.flow import FlowSampler
from worldmodel.pose import decompose, wrap_deg
from worldmodel.tick import Dreams, StartView, prompt_view, scaled_K

HORIZONS = (1, 4, 8, 16, 32, 64, 128)
RETURN_KINDS = ("turn_360", "out_and_back", "look_up_down")
PLACE_KINDS = RETURN_KINDS + ("idle", "wall", "long_walk", "dream_revisit", "long_play")
LONG_WALK_TICKS = (250, 500, 1000)
REPORT_SPACE = 16 << 20  # bytes free that an evaluation asks for (report.json, plots, strips: 0.7 MB on the arena)
TURN_FIRST_PASS = (10, 50)  # ticks of the 360° turn scored as "first pass": most of each frame newly seen


@torch.no_grad()
def encode(model: LoadedModel, rgb: np.ndarray, depth: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] + metres [N, H, W] -> latents [N, C, h, w]."""
    ae, dev = model.autoencoder, model.device
    out = []
    for i in range(0, len(rgb), 128):
        d = torch.from_numpy(depth[i:i + 128])[:, None].to(dev) if ae.config.use_depth else None
        out.append(ae.encode(frames_to_tensor(rgb[i:i + 128]).to(dev), d).float())
    return torch.cat(out)


@torch.no_grad()
def decode(model: LoadedModel, z: torch.Tensor) -> np.ndarray:
    return tensor_to_frames(model.autoencoder.decode(z.float()).rgb)


@dataclass
class RolloutResult:
    pred: np.ndarray  # [B, Hmax, H, W, 3] dreamed frames at t0+1 .. t0+Hmax
    c2w: np.ndarray  # [B, Hmax, 4, 4] integrated poses
    depth: np.ndarray | None = None  # [B, Hmax, H, W] the frames' depth (metres), None for a model without depth


SHARPNESS_WARNING = 0.5  # below this share of the truth's detail, a frame reads as a blur


def quality_warnings(report: dict[str, Any], horizons) -> list[str]:
    """One line per thing a player would notice first: frames blurred below SHARPNESS_WARNING of the truth's detail,
    and horizons where the dream is no better than the mean frame (PSNR and ST-LPIPS both)."""
    out = []
    sharp = report.get("sharpness", {}).get("model", {})
    blurred = [h for h in map(str, horizons) if sharp.get(h) is not None and sharp[h] < SHARPNESS_WARNING]
    if blurred:
        out.append(f"the dream is blurred at tick(s) {', '.join(blurred)}: sharpness "
                   f"{', '.join(f'{sharp[h]:.2f}' for h in blurred)}, below {SHARPNESS_WARNING} of the truth's")
    p, lp = report["psnr"], report["lpips"]
    mean_wins = [h for h in map(str, horizons) if p["model"][h] <= p["mean_frame"][h]
                 and lp["mean_frame"][h] is not None and lp["model"][h] >= lp["mean_frame"][h]]
    if mean_wins:
        out.append(f"the dream is no better than the mean frame at tick(s) {', '.join(mean_wins)} (PSNR and ST-LPIPS)")
    return out


def _say(text: str) -> None:
    """A progress line on stderr (the report goes to stdout and report.json)."""
    print(f"evaluate: {text}", file=sys.stderr, flush=True)


def batch_dreams(model_dir: Path, model: LoadedModel, batch: int, steps: int = 1, context_noise: float | None = None,
                 memory: bool | None = None, memory_settings: dict[str, Any] | None = None) -> Dreams:
    """`batch` dreams (worldmodel.tick) with the camera, memory-first and scene-memory settings of the model's own
    model.yaml, as play.py dreams (`memory`: None takes the model's choice); bf16 autocast on CUDA."""
    from worldmodel.device import default_amp
    from worldmodel.dream import build_dreams

    cn = model.context_noise if context_noise is None else context_noise
    return build_dreams(model, str(model_dir), batch, FlowSampler(steps=steps, context_noise=cn),
                        default_amp(model.device), memory=memory, memory_settings=memory_settings)[0]


def dream_batch(dreams: Dreams, views: list[StartView], seeds: list[int],
                actions: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Every row started from its real frames (`views`, seed `seeds[b]`), then dreamed along its actions [T_b, 8]
    together (rows that end early are stepped with no input and cut): per row the frames [T_b + 1, H, W, 3], cameras
    [T_b + 1, 4, 4] and shown depth [T_b + 1, H, W] (None without depth), the start's last frame first."""
    out = dreams.start(views, seeds)
    rgb, c2w, depth = [out.rgb], [out.cam_to_world], [out.depth]
    T = max(len(a) for a in actions)
    for t in range(T):
        a = np.stack([np.asarray(x[t], np.float32) if t < len(x) else np.zeros(8, np.float32) for x in actions])
        out = dreams.step(a)
        rgb.append(out.rgb)
        c2w.append(out.cam_to_world)
        depth.append(out.depth)
    rgb, c2w = np.stack(rgb, 1), np.stack(c2w, 1)
    depth = np.stack(depth, 1) if all(d is not None for d in depth) else None
    return [(rgb[b, :len(actions[b]) + 1], c2w[b, :len(actions[b]) + 1],
             None if depth is None else depth[b, :len(actions[b]) + 1]) for b in range(len(views))]


def recorded_dream_world(model_dir: Path, memory: bool, steps: int = 1, context_noise: float | None = None,
                         memory_settings: dict[str, Any] | None = None, device: str = "auto"):
    """A DreamWorld that only dreams on from recorded frames (`dream_from`), with the camera, memory-first and
    scene-memory settings of the model's own model.yaml (info.dream, info.memory) unless `memory_settings`. Its
    prompt world is never built, so it is named as the built-in plane: a model whose own prompt world is a
    module:Class (one's own game) is not refused, and nothing named in a model.yaml is imported."""
    from worldmodel.dream import DreamWorld

    return DreamWorld(str(model_dir), steps=steps, memory=memory, context_noise=context_noise, prompt_world="plane",
                      memory_settings=memory_settings, device=device)


def dream_from(world, tr: Trajectory, t0: int, context: int, horizon: int,
               seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The dream started (DreamWorld.start) from the `context` true frames of `tr` up to tick t0 (as context and,
    with a memory, as real views in it), then stepped along the true actions: frames [horizon, H, W, 3], cameras
    [horizon, 4, 4] and the shown depth [horizon, H, W] (None without depth) at ticks t0 + 1 .. t0 + horizon."""
    from engine.action import Action

    ctx = slice(t0 - context + 1, t0 + 1)
    world.start(tr.rgb[ctx], tr.depth[ctx], tr.c2w[ctx], tr.K, tr.actions[ctx], seed=seed)
    obs = [world.step(Action.from_array(tr.actions[t0 + h])) for h in range(1, horizon + 1)]
    depth = np.stack([o.depth for o in obs]) if all(o.depth is not None for o in obs) else None
    return np.stack([o.rgb for o in obs]), np.stack([o.cam_to_world for o in obs]), depth


def dream_open_loop(model_dir: Path, model: LoadedModel, trajs: list[Trajectory], starts: list[tuple[int, int]],
                    context: int, horizon: int, steps: int, seed: int, context_noise: float, memory: bool | None = None,
                    batch: int = 24) -> RolloutResult:
    """The open loop as play.py dreams (the one tick, worldmodel.tick: camera, memory first and scene memory as the
    model's model.yaml says, `memory` to override), `batch` rollouts at a time: rollout r starts from the `context`
    true frames of its walk up to its start tick (as context and, with a memory, as real views in it) with seed
    seed + r, then dreams `horizon` ticks along the true actions. Frames, cameras and depth at t0 + 1 .. t0 + horizon."""
    runs = []
    for lo in range(0, len(starts), batch):
        part = starts[lo:lo + batch]
        dreams = batch_dreams(model_dir, model, len(part), steps, context_noise, memory)
        views, acts = [], []
        for i, t0 in part:
            tr, ctx = trajs[i], slice(t0 - context + 1, t0 + 1)
            views.append(StartView(tr.rgb[ctx], tr.depth[ctx],
                                   tr.c2w[ctx], tr.K if tr.K is not None else _default_K(model), tr.actions[ctx]))
            acts.append(tr.actions[t0 + 1:t0 + horizon + 1])
        runs += dream_batch(dreams, views, [seed + lo + r for r in range(len(part))], acts)
    depth = np.stack([d[1:] for _, _, d in runs]) if all(d is not None for _, _, d in runs) else None
    return RolloutResult(np.stack([f[1:] for f, _, _ in runs]), np.stack([c[1:] for _, c, _ in runs]), depth)


def _default_K(model: LoadedModel) -> np.ndarray:
    H, W = model.config.frame_size
    return scaled_K(None, (H, W), H, W)


def measure_ticks_per_s(model_dir: Path, model: LoadedModel, steps: int, ticks: int = 100) -> float:
    """Batch-1 dream ticks per second (the one tick, worldmodel.tick, without a scene memory: pose, camera, sampling,
    decode to host frames, commit) walking forward from a grey frame, after a warm-up."""
    dreams = batch_dreams(model_dir, model, 1, steps, memory=False)
    H, W = model.config.frame_size
    depth = np.full((1, H, W), 3.0, np.float32) if model.autoencoder.config.use_depth else None
    dreams.start([StartView(np.full((1, H, W, 3), 128, np.uint8), depth, np.eye(4)[None], _default_K(model),
                            np.zeros((1, 8), np.float32))], [0])
    a = np.zeros((1, 8), np.float32)
    a[0, 0] = 1.0
    for i in range(ticks + 20):
        if i == 20:
            t0 = time.perf_counter()
        dreams.step(a)
    return ticks / (time.perf_counter() - t0)


def _entries(split: str, kind: str, max_entries: int | None) -> list:
    from engine.arena.splits import held_out_entries

    return held_out_entries(split, kind)[:max_entries]


def _render_size(H: int, W: int, render_scale: int) -> tuple[int, int]:
    return H * render_scale, W * render_scale


def _world_setup(data: list[str] | None, H: int, W: int, render_scale: int) -> dict[str, Any]:
    """The report's world and render_size (frames as rendered or recorded, before the resize to the model's H x W):
    the arena's for its walks, the recordings' own (from their meta.yaml) for --data: [H, W], or a list of them
    when the recordings differ."""
    if not data:
        return {"world": "arena", "render_size": list(_render_size(H, W, render_scale))}
    rec = recordings_setup(data)
    sizes = rec["resolutions"]
    return {"world": rec["worlds"][0] if len(rec["worlds"]) == 1 else rec["worlds"],
            "render_size": sizes[0] if len(sizes) == 1 else sizes}


def _ci(a: FrameScores, b: FrameScores, groups: np.ndarray) -> dict[str, list[float]]:
    return {m: [round(v, 4) for v in paired_bootstrap(a, b, groups, m)] for m in CI_METRICS}


@dataclass
class OpenLoopViews:
    """What every open-loop rollout is compared with at the horizons `ticks`: frames {method: uint8 [R, len(ticks), H,
    W, 3]} of the truth ("truth") and the baselines, their depth {"truth", "copy_last": [R, len(ticks), H, W]}, and the
    real context's coverage there at the true camera, alpha [R, len(ticks), H, W] (None without intrinsics)."""

    ticks: list[int]
    frames: dict[str, np.ndarray]
    depth: dict[str, np.ndarray]
    alpha: np.ndarray | None


def baseline_views(trajs: list[Trajectory], starts: list[tuple[int, int]], ticks: list[int], context: int) -> OpenLoopViews:
    """OpenLoopViews of rollouts `starts` (trajectory, start tick t0) at horizons `ticks` (the tick t0 + h of each)."""
    mean_img = mean_frame(trajs)
    n = len(ticks)
    at = lambda field: np.stack([getattr(trajs[i], field)[[t0 + h for h in ticks]] for i, t0 in starts])  # noqa: E731
    held = lambda field: np.stack([np.repeat(getattr(trajs[i], field)[t0][None], n, 0) for i, t0 in starts])  # noqa: E731
    frames = {"truth": at("rgb"), "copy_last": held("rgb"),
              "mean_frame": np.broadcast_to(mean_img, (len(starts), n, *mean_img.shape))}
    depth = {"truth": at("depth"), "copy_last": held("depth")}
    alpha = None
    if all(tr.K is not None for tr in trajs):
        geo: dict[tuple[int, int], np.ndarray] = {}
        for i, tr in enumerate(trajs):
            want = sorted({t0 + h for j, t0 in starts if j == i for h in ticks})
            geo.update({(i, t): img for t, img in zip(want, geometric(tr, want))})
        frames["geometric"] = np.stack([np.stack([geo[(i, t0 + h)] for h in ticks]) for i, t0 in starts])
        views = [seen_views(trajs[i], t0, context, [t0 + h for h in ticks], mean_img) for i, t0 in starts]
        frames["seen"] = np.stack([f for f, _ in views])
        alpha = np.stack([a for _, a in views])
    return OpenLoopViews(list(ticks), frames, depth, alpha)


def score_open_loop(pred: np.ndarray, trajs: list[Trajectory], starts: list[tuple[int, int]],
                    horizons: tuple[int, ...], *, context: int, coverage: dict[str, float] | None = None,
                    views: OpenLoopViews | None = None, regions: dict[str, Any] | None = None,
                    cell: int = 4) -> dict[str, dict[str, FrameScores]]:
    """Per-frame scores of the open-loop dream and of every baseline: {method: {horizon: FrameScores}}, rollout
    r being trajectory starts[r][0] from tick starts[r][1] after `context` real frames, pred [R, >= max(horizons),
    H, W, 3] its frames at ticks t0 + 1, t0 + 2, ... The geometric and seen baselines are left out when a trajectory
    has no intrinsics; `coverage`, when given, gets the seen baseline's mean coverage per horizon. `views`: the
    baselines at these horizons (or more), from baseline_views; `regions`, when given (and the trajectories have
    intrinsics), gets the same scores on the seen and on the unseen cells (evaluation.unseen; `cell` pixels a side)
    {"seen": {method: {horizon: FrameScores}}, "unseen": ..., "unseen_share": {horizon: share of unseen cells}}."""
    from worldmodel.evaluation.unseen import seen_cells

    views = views or baseline_views(trajs, starts, list(horizons), context)
    if coverage is not None and views.alpha is not None:
        coverage.update({str(h): float(views.alpha[:, views.ticks.index(h)].mean()) for h in horizons})
    methods = ("model", "copy_last", "mean_frame", "geometric", "seen")
    scores: dict[str, dict[str, FrameScores]] = {m: {} for m in methods}
    split = regions is not None and views.alpha is not None
    if split:
        regions.update({"seen": {m: {} for m in methods}, "unseen": {m: {} for m in methods}, "unseen_share": {}})
    for h in horizons:
        k = views.ticks.index(h)
        truth = views.frames["truth"][:, k]
        candidates = {"model": pred[:, h - 1], **{m: np.ascontiguousarray(f[:, k]) for m, f in views.frames.items()
                                                 if m != "truth"}}
        seen_mask = seen_cells(views.alpha[:, k], cell) if split else None
        if split:
            regions["unseen_share"][str(h)] = float(1 - seen_mask.mean())
        for name, frames in candidates.items():
            if split:
                parts = score_regions(frames, truth, seen_mask)
                scores[name][str(h)] = parts["all"]
                regions["seen"][name][str(h)], regions["unseen"][name][str(h)] = parts["seen"], parts["unseen"]
            else:
                scores[name][str(h)] = score_frames(frames, truth)
    if split:
        for part in ("seen", "unseen"):
            regions[part] = {k: v for k, v in regions[part].items() if v}
    return {k: v for k, v in scores.items() if v}


def evaluate(model_dir: Path, out: Path, context: int = 8, steps: int = 1, starts_per_traj: int = 3,
             render_scale: int = 2, max_entries: int | None = None, seed: int = 0,
             data: list[str] | None = None, context_noise: float | None = None, split: str = "test",
             places: bool = True, device: str = "auto") -> dict[str, Any]:
    """Part 1 of the module docstring (and part 2 unless `places=False` or `data` is given); `data` replaces
    the arena walks with held-out recordings. `context_noise`: the level the dream's own frames are committed
    at (None: the model's own, from its model.yaml). `device`: where the model runs (worldmodel.device)."""
    torch.set_num_threads(2)
    model = load_model(model_dir, device=device)
    if context_noise is None:
        context_noise = model.context_noise
    H, W = model.config.frame_size
    context = min(context, model.config.dynamics.window)
    if data:
        trajs = recorded_trajectories(data, (H, W))[:max_entries]
    else:
        trajs = [render_trajectory(e, (H, W), _render_size(H, W, render_scale))
                 for e in _entries(split, "moving", max_entries)]
    shortest = min(len(tr.rgb) for tr in trajs) - 1
    horizons = tuple(h for h in HORIZONS if context + h <= shortest)
    if not horizons:
        raise ValueError(f"test episodes of {shortest + 1} frames are too short for {context} context frames + 1 tick")
    hmax = max(horizons)

    # Start ticks spread over each trajectory, leaving room for the context and the longest horizon.
    starts = []
    for i, tr in enumerate(trajs):
        T = len(tr.rgb) - 1
        for t0 in np.linspace(context, T - hmax, starts_per_traj).astype(int):
            starts.append((i, int(t0)))
    groups = np.array([i for i, _ in starts])
    t_start = time.perf_counter()
    with_memory = bool(model.dream_settings.get("memory")) and all(tr.K is not None for tr in trajs)
    # the dream as play.py runs it (with its scene memory when the model dreams with one), all rollouts together
    result = dream_open_loop(model_dir, model, trajs, starts, context, hmax, steps, seed, context_noise,
                             memory=with_memory)
    rollout_s = time.perf_counter() - t_start

    timings = {"open_loop_dream_s": round(rollout_s, 1)}
    _say(f"open loop: {len(starts)} rollouts of {hmax} ticks dreamed in {rollout_s:.0f} s; scoring")
    t_phase = time.perf_counter()
    coverage: dict[str, float] = {}
    regions: dict[str, Any] = {}
    bands = [b for b in BANDS if b[0] <= hmax]
    all_ticks = sorted(set(horizons) | {h for b in bands for h in band_ticks(b, hmax)})
    views = baseline_views(trajs, starts, all_ticks, context)
    cell = H // model.config.latent_shape[1]
    scores = score_open_loop(result.pred, trajs, starts, horizons, context=context, coverage=coverage, views=views,
                             regions=regions, cell=cell)
    report: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    timings["open_loop_scores_s"] = round(time.perf_counter() - t_phase, 1)
    for name, per_h in scores.items():
        for h, s in per_h.items():
            for metric, value in summarize(s).items():
                report.setdefault(metric, {}).setdefault(name, {})[h] = value
    # the headline: against the better of copy-last and the mean frame at each horizon (either alone flatters a blur
    # or a stale frame), with warnings where the dream is blurred or no better than the mean frame
    report["psnr"]["gain_over_best_baseline"], report["lpips"]["gain_over_best_baseline"] = {}, {}
    for h in map(str, horizons):
        report["psnr"]["gain_over_best_baseline"][h] = report["psnr"]["model"][h] - max(
            report["psnr"]["copy_last"][h], report["psnr"]["mean_frame"][h])
        report["lpips"]["gain_over_best_baseline"][h] = min(
            report["lpips"]["copy_last"][h], report["lpips"]["mean_frame"][h]) - report["lpips"]["model"][h]
    report["warnings"] = quality_warnings(report, horizons)
    report["ci95"] = {m: {b: {} for b in scores if b != "model" and scores[b]} for m in CI_METRICS}
    for b in report["ci95"]["psnr"]:
        for h in scores["model"]:
            for m, v in _ci(scores["model"][h], scores[b][h], groups).items():
                report["ci95"][m][b][h] = v
    if coverage:  # how much of each frame the real context saw, at the true camera (the seen baseline's coverage)
        report["seen_coverage"] = coverage
    if regions:  # every per-frame score on the seen cells and on the unseen ones (evaluation.unseen)
        for part in ("seen", "unseen"):
            for name, per_h in regions[part].items():
                for h, s in per_h.items():
                    for metric, value in summarize(s).items():
                        report.setdefault(part, {}).setdefault(metric, {}).setdefault(name, {})[h] = value
        report["unseen_share"] = regions["unseen_share"]
    else:
        skipped["seen_unseen"] = ("the trajectories have no camera intrinsics or poses: the seen / unseen split needs "
                                  "the real context lifted into the memory at the true camera")
    t_phase = time.perf_counter()
    data_depth = recordings_setup(data)["has_depth"] if data else True
    has_depth = model.autoencoder.config.use_depth and result.depth is not None and data_depth
    if not has_depth:
        skipped["depth_plausibility"] = (
            ("the checkpoint's autoencoder has no depth (use_depth false)" if not model.autoencoder.config.use_depth
             else "the recordings have no depth") + ": depth plausibility and physics agreement need depth")
    realism_bands: dict[str, Any] = {}
    if data and len(trajs) < 2:
        skipped["realism"] = ("one held-out episode: realism compares a dream with the true frames of other episodes; "
                              "record at least two held-out episodes (engine.rollout --episodes 2)")
    else:
        reference, reference_what, exclude_cross = _realism_reference(trajs, data, split, max_entries, (H, W),
                                                                     _render_size(H, W, render_scale))
        max_depth = float(model.autoencoder.config.max_depth) if has_depth else None
        for b in bands:
            ks = [all_ticks.index(h) for h in band_ticks(b, hmax)]
            flat = lambda a: np.ascontiguousarray(a[:, ks]).reshape(-1, *a.shape[2:])  # noqa: E731  [R*n, ...]
            g = np.repeat(groups, len(ks))
            dreamed = [h - 1 for h in band_ticks(b, hmax)]  # pred[:, h - 1] is tick t0 + h
            rows = lambda a: np.ascontiguousarray(a[:, dreamed]).reshape(-1, *a.shape[2:])  # noqa: E731
            sets = {"model": FrameSet(rows(result.pred), g, rows(result.depth) if has_depth else None),
                    "copy_last": FrameSet(flat(views.frames["copy_last"]), g,
                                          flat(views.depth["copy_last"]) if has_depth else None),
                    "mean_frame": FrameSet(flat(views.frames["mean_frame"]), g),
                    **{m: FrameSet(flat(views.frames[m]), g) for m in ("geometric", "seen") if m in views.frames},
                    "floor": FrameSet(flat(views.frames["truth"]), g, flat(views.depth["truth"]) if has_depth else None)}
            unseen = ~seen_cells(flat(views.alpha), cell) if views.alpha is not None else None
            realism_bands[band_name(b)] = realism_scores(sets, reference, unseen, exclude_cross, max_depth, seed)
        report["realism"] = {**_realism_block(realism_bands), "setup": realism_setup(reference_what, exclude_cross,
                                                                                    max_depth)}
        if has_depth:
            report["depth_plausibility"] = _depth_block(realism_bands)
    timings["realism_s"] = round(time.perf_counter() - t_phase, 1)
    _say(f"open loop scored; realism in {timings['realism_s']:.0f} s" + ("; now the place walks" if places and not data else ""))
    consistency: dict[str, Any] = {}
    if has_depth and all(tr.K is not None for tr in trajs):
        rules = MotionModel.from_info(model.info.get("motion")) or MotionModel()
        dream_pa, truth_pa = PhysicsAgreement(), PhysicsAgreement()
        for r, (i, t0) in enumerate(starts):
            tr = trajs[i]
            span = slice(t0, t0 + hmax + 1)
            dream_pa += physics_agreement(np.concatenate([tr.depth[t0][None], result.depth[r]]),
                                          np.concatenate([tr.c2w[t0][None], result.c2w[r]]), tr.actions[span], tr.K, rules)
            truth_pa += physics_agreement(tr.depth[span], tr.c2w[span], tr.actions[span], tr.K, rules)
        consistency["physics_agreement"] = {"open_loop": dream_pa.to_json(), "truth_open_loop": truth_pa.to_json()}
    elif has_depth:
        skipped["physics_agreement"] = "the trajectories have no camera intrinsics: the picture cannot be lifted"
    report["per_rollout"] = {"groups": groups.tolist(), "starts": [list(s) for s in starts],
                             "model": {h: s.to_json() for h, s in scores["model"].items()}}

    k = min(32, hmax)
    gt_c2w = np.stack([trajs[i].c2w[t0 + k] for i, t0 in starts])
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
    report["ae_sharpness"] = summarize(score_frames(recon[::10], all_rgb[::10], perceptual=False))["sharpness"]
    report["ticks_per_s"] = measure_ticks_per_s(model_dir, model, steps)
    report["setup"] = {"checkpoint": str(model_dir), "model_hash": model.hash, "trajectories": len(trajs),
                       "rollouts": len(starts), "context": context, "sampling_steps": steps, "context_noise": context_noise,
                       "frame_size": [H, W], **_world_setup(data, H, W, render_scale),
                       "batched_rollout_s": round(rollout_s, 2), "memory": with_memory, "seed": seed, "model_info": model.info,
                       "split": "recordings" if data else split, "geometric_memory": GEOMETRIC_MEMORY,
                       "device": str(model.device),
                       "test_set": data or f"arena held-out {split} walks (moving)", "horizons": list(horizons)}
    strip_rows = []
    pick = list(range(0, len(starts), max(1, len(starts) // 4)))[:4]
    for r in pick:
        i, t0 = starts[r]
        strip_rows.append((f"{trajs[i].name} from tick {t0}, horizons {', '.join(map(str, horizons))}",
                           result.pred[r][[h - 1 for h in horizons]], trajs[i].rgb[[t0 + h for h in horizons]]))
    if places and data:
        report["skipped"] = {"places": f"{', '.join(PLACE_KINDS)} are scripted arena walks: not run with --data"}
    elif places:
        t_phase = time.perf_counter()
        placed = place_benchmarks(model_dir, split, render_scale, max_entries, steps, context_noise, strip_rows,
                                  n_frames=len(horizons), device=device, mean_img=mean_frame(trajs))
        timings.update(placed.pop("timings", {}))
        timings["places_s"] = round(time.perf_counter() - t_phase, 1)
        for key, value in placed.pop("self_consistency", {}).items():
            consistency[key] = {**consistency.get(key, {}), **value} if isinstance(value, dict) else value
        long_realism = placed.get("long_walk", {}).pop("realism", None)
        if long_realism:  # the band past the open loop's horizons, from the 1,000-tick walks
            realism_bands[band_name(LONG_BAND)] = long_realism
            report["realism"] = {**_realism_block(realism_bands), "setup": report["realism"]["setup"]}
            if has_depth:
                report["depth_plausibility"] = _depth_block(realism_bands)
        report.update(placed)
    if consistency:
        report["self_consistency"] = _consistency_summary(consistency, report.get("wall"))
    report["setup"]["timings_s"] = timings
    if skipped:
        report["skipped"] = {**report.get("skipped", {}), **skipped}
    out.mkdir(parents=True, exist_ok=True)
    write_report(out / "report.json", report)
    draw_plot(out / "psnr.png", {name: [report["psnr"][name][str(h)] for h in horizons]
                                 for name in ("model", "copy_last", "mean_frame", "geometric") if name in report["psnr"]},
              horizons, f"PSNR on held-out {'recordings' if data else split + ' walks'} ({len(starts)} rollouts)")
    save_strip(out / "strip.png", strip_rows)
    return report


def _realism_reference(trajs: list[Trajectory], data: list[str] | None, split: str, max_entries: int | None,
                       size: tuple[int, int], render_size: tuple[int, int]) -> tuple[FrameSet, str, bool]:
    """The true frames the open loop's frames are compared with, unpaired: other wanders on the same arena levels
    (engine.arena.splits.reference_entries), or for recordings the other recorded episodes (pairs of an episode's
    dream with its own truth left out). Returns (frames, what they are, whether same-walk cross pairs are left out)."""
    if data:
        return reference_set(trajs, blocks=False), ("the true frames of the other recorded episodes, every "
                                      f"{REFERENCE_STRIDE}nd tick from {REFERENCE_FROM}"), True
    from engine.arena.splits import reference_entries

    ref = [render_trajectory(e, size, render_size) for e in reference_entries(_entries(split, "moving", max_entries))]
    return reference_set(ref, group_offset=10_000), (f"{len(ref)} other wanders on the same {split} levels "
                                                     f"(engine.arena.splits.reference_entries), every {REFERENCE_STRIDE}nd "
                                                     f"tick from {REFERENCE_FROM}"), False


def _realism_block(bands: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per band realism_scores -> {kid, fd, unseen_kid, unseen_fd: {method: {band: value}}}."""
    out: dict[str, Any] = {}
    for band, scores in bands.items():
        for key in ("kid", "fd", "unseen_kid", "unseen_fd"):
            for method, value in scores.get(key, {}).items():
                out.setdefault(key, {}).setdefault(method, {})[band] = value
    return out


def _depth_block(bands: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per band realism_scores' depth -> {w1_m, near_share: {method: {band: value}}}."""
    out: dict[str, Any] = {}
    for band, scores in bands.items():
        for key, per_method in scores.get("depth", {}).items():
            for method, value in per_method.items():
                out.setdefault(key, {}).setdefault(method, {})[band] = value
    return out


def _consistency_summary(parts: dict[str, Any], wall: dict[str, Any] | None) -> dict[str, Any]:
    """The self_consistency block: the dream revisit's headline (the turn probe's pairs whose first view the dream
    invented), physics agreement pooled over the dream's scenarios (the truth's beside it), the wall stop error at the
    walls the real first view showed."""
    out: dict[str, Any] = {}
    revisit = parts.get("dream_revisit")
    if revisit:
        out["dream_revisit_db"] = revisit["turn"]["invented"]["psnr_db"]
        out["dream_revisit"] = revisit
    physics = parts.get("physics_agreement", {})
    if physics:
        pooled = {who: PhysicsAgreement() for who in ("dream", "truth")}
        for name, counts in physics.items():
            pooled["truth" if name.startswith("truth_") else "dream"] += PhysicsAgreement(
                **{k: v for k, v in counts.items() if k != "share"})
        out["physics_agreement"] = pooled["dream"].share if pooled["dream"].ticks else None
        out["physics_agreement_truth"] = pooled["truth"].share if pooled["truth"].ticks else None
        out["physics"] = {"dream": pooled["dream"].to_json(), "truth": pooled["truth"].to_json(), "per_scenario": physics}
    if "long_play" in parts:
        out["long_play"] = parts["long_play"]
    if wall:
        shown = wall.get("memory_on", wall)
        out["wall_stop_error_m_seen_walls"] = shown.get("stop_error_m_wall_seen")
        out["walls_seen"] = int(sum(wall.get("wall_in_first_view", [])))
    return out


def _json_ready(x: Any) -> Any:
    """NaN and inf (not JSON) as null, numpy numbers as Python ones, recursively."""
    if isinstance(x, dict):
        return {k: _json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_ready(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def write_report(path: Path, report: dict[str, Any]) -> None:
    """report.json, strict JSON (no NaN), written whole or not at all (a temporary file renamed over it)."""
    atomic_write_text(path, json.dumps(_json_ready(report), indent=2, allow_nan=False))


def _dream(world, level_seed: int, actions: list | None = None, policy=None,
           ticks: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """One dream (a DreamWorld) from a level's first real view along `actions` (or `ticks` actions of `policy`, a
    callable Observation -> Action, fed the dream's own observations): rgb [T+1, H, W, 3], c2w [T+1, 4, 4], the shown
    depth [T+1, H, W] (None without depth) and the actions [T+1, 8] (row 0 zeros). Walks known in advance go in
    batches instead (`_dream_walks`)."""
    obs, acts = play(world, level_seed, actions, policy, ticks)
    depth = np.stack([o.depth for o in obs]) if all(o.depth is not None for o in obs) else None
    return np.stack([o.rgb for o in obs]), np.stack([o.cam_to_world for o in obs]), depth, acts


def _dream_walks(model_dir: Path, model: LoadedModel, arena, level_seeds: list[int], actions: list[np.ndarray], steps: int,
                 context_noise: float | None, memory: bool) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None,
                                                                       np.ndarray]]:
    """What `_dream` gives for each level's walk, all dreamed together (`dream_batch`): from each level's first real
    view (`arena`, the test prompt world), seeded by its level seed as DreamWorld.reset seeds it, along its actions
    [T, 8]."""
    H, W = model.config.frame_size
    dreams = batch_dreams(model_dir, model, len(level_seeds), steps, context_noise, memory)
    views = [prompt_view(arena, s, H, W) for s in level_seeds]
    arrays = [np.asarray(a, np.float32).reshape(-1, 8) for a in actions]
    runs = dream_batch(dreams, views, [int(s) for s in level_seeds], arrays)
    return [(rgb, c2w, depth, np.concatenate([np.zeros((1, 8), np.float32), a]).astype(np.float32))
            for (rgb, c2w, depth), a in zip(runs, arrays)]


PHYSICS_KINDS = ("out_and_back", "wall", "long_walk")  # the place walks whose moves are judged against the picture
REVISIT_PROBES = 4  # levels (the turn_360 entries') the dream-revisit probes run on
LONG_PLAY_TICKS = 1200  # one minute at the test tick rate, per long-play scenario


def place_benchmarks(model_dir: Path, split: str = "test", render_scale: int = 2, max_entries: int | None = None,
                     steps: int = 1, context_noise: float | None = None, strip_rows: list | None = None,
                     n_frames: int = 7, kinds: tuple[str, ...] = PLACE_KINDS, device: str = "auto",
                     mean_img: np.ndarray | None = None) -> dict[str, Any]:
    """Part 2 of the module docstring: `returns`, `idle`, `wall`, `long_walk` (those of `kinds`; "long_walk" with its
    realism band past the open loop's horizons), then `self_consistency` parts of the dream as play.py runs it:
    physics agreement on the PHYSICS_KINDS walks, the dream-revisit probes and the long play (the "dream_revisit" and
    "long_play" kinds)."""
    from engine.arena.splits import TEST_PRESET, TEST_TICK_RATE
    from engine.world import make_world
    from worldmodel.dream import DreamWorld

    model = load_model(model_dir, device=device)
    H, W = model.config.frame_size
    rs = _render_size(H, W, render_scale)
    prompt = {"preset": TEST_PRESET, "width": rs[1], "height": rs[0], "tick_rate": TEST_TICK_RATE}
    played = bool(model.dream_settings.get("memory"))
    shown = "memory_on" if played else "model"  # the dream as play.py runs it
    # the policy-driven and probe walks: the dream as play.py runs it, one at a time
    world = DreamWorld(str(model_dir), steps=steps, memory=played, prompt_config=prompt, context_noise=context_noise,
                       device=device)
    arena = make_world("arena", **prompt)  # the first real view of every batched walk
    rules = MotionModel.from_info(model.info.get("motion")) or MotionModel()
    has_depth = model.autoencoder.config.use_depth
    out: dict[str, Any] = {}
    consistency: dict[str, Any] = {}
    timings: dict[str, float] = {}
    long_reference = None
    try:
        for kind in [k for k in kinds if k not in ("dream_revisit", "long_play")]:
            t_kind = time.perf_counter()
            entries = _entries(split, kind, max_entries)
            trs = [render_trajectory(e, (H, W), rs) for e in entries]
            # every entry of the kind dreamed together (the one tick, batched) along its actions, memory off and on
            walks = {v: _dream_walks(model_dir, model, arena, [e.level_seed for e in entries],
                                     [tr.actions[1:] for tr in trs], steps,
                                     context_noise, memory=v == "memory_on") for v in ("model", "memory_on")}
            runs = [(e, tr, {v: walks[v][j] for v in walks}) for j, (e, tr) in enumerate(zip(entries, trs))]
            if kind in RETURN_KINDS:
                out.setdefault("returns", {})[kind] = _returns(kind, runs)
                if strip_rows is not None and kind in ("turn_360", "out_and_back"):
                    e, tr, dreams = runs[0]
                    ticks = np.linspace(0, e.return_tick, n_frames).round().astype(int)
                    strip_rows.append((f"{kind.replace('_', ' ')} {e.level_seed}, ticks {', '.join(map(str, ticks))} "
                                       f"(back at the start view at {e.return_tick})", dreams[shown][0][ticks], tr.rgb[ticks]))
            elif kind == "idle":
                out["idle"] = _idle(runs)
            elif kind == "wall":
                out["wall"] = _wall(runs)
            else:
                out["long_walk"] = _long_walk(runs, model, rs, mean_img)
                long_reference = out["long_walk"].pop("long_walk_reference", None)
            if kind in PHYSICS_KINDS and has_depth:
                dream_pa, truth_pa = PhysicsAgreement(), PhysicsAgreement()
                for _, tr, dreams in runs:
                    rgb, c2w, depth, acts = dreams[shown]
                    dream_pa += physics_agreement(depth, c2w, acts, tr.K, rules)
                    truth_pa += physics_agreement(tr.depth, tr.c2w, tr.actions, tr.K, rules)
                consistency.setdefault("physics_agreement", {})[kind] = dream_pa.to_json()
                consistency["physics_agreement"][f"truth_{kind}"] = truth_pa.to_json()
            timings[f"{kind}_s"] = round(time.perf_counter() - t_kind, 1)
            _say(f"places: {kind} ({len(entries)} walks) in {timings[f'{kind}_s']:.0f} s")
        if "dream_revisit" in kinds:
            t_kind = time.perf_counter()
            walk_all = lambda seeds, acts: _dream_walks(model_dir, model, arena, seeds, acts, steps,  # noqa: E731
                                                        context_noise, memory=played)
            consistency["dream_revisit"], walk_pa = _dream_revisit(walk_all, split, max_entries, (H, W), rs, rules,
                                                                   has_depth)
            if walk_pa is not None:
                consistency.setdefault("physics_agreement", {}).update(walk_pa)
            timings["dream_revisit_s"] = round(time.perf_counter() - t_kind, 1)
            _say(f"places: dream revisit in {timings['dream_revisit_s']:.0f} s")
        if "long_play" in kinds:
            t_kind = time.perf_counter()
            consistency["long_play"], play_pa = _long_play(world, split, max_entries, (H, W), rs, rules,
                                                           has_depth, long_reference)
            consistency.setdefault("physics_agreement", {}).update(play_pa)
            timings["long_play_s"] = round(time.perf_counter() - t_kind, 1)
            _say(f"places: long play in {timings['long_play_s']:.0f} s")
    finally:
        world.close()
        arena.close()
    out["self_consistency"] = consistency
    out["timings"] = timings
    return out


def _dream_revisit(walk_all, split: str, max_entries: int | None, size: tuple[int, int], render_size: tuple[int, int],
                   rules: MotionModel, has_depth: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The dream-revisit probes (consistency.revisit_probe_actions) from the first real view of REVISIT_PROBES
    turn_360 levels: the dream's view back at a pose against its own earlier view there, for all pairs and for those
    whose first view the real view did not show ("invented": the real first view covers < half of it at the true
    camera), beside the truth's own (its movers move); and physics agreement on the walk probe. `walk_all(level_seeds,
    actions)`: the dream as play.py runs it along those walks, all together (`_dream_walks`)."""
    from worldmodel.evaluation.consistency import dream_revisit, revisit_probe_actions

    turn, turn_pairs, walk, walk_pairs = revisit_probe_actions()
    entries = _entries(split, "turn_360", max_entries)[:REVISIT_PROBES]
    per: dict[str, list] = {"turn": [], "walk": []}
    dream_pa, truth_pa = PhysicsAgreement(), PhysicsAgreement()
    for name, actions, pairs in (("turn", turn, turn_pairs), ("walk", walk, walk_pairs)):
        dreamed = walk_all([e.level_seed for e in entries], [np.stack([a.to_array() for a in actions])] * len(entries))
        for e, (rgb, c2w, depth, acts) in zip(entries, dreamed):
            tr = render_actions(e.level_seed, actions, size, render_size, f"{name}-probe-{e.level_seed}")
            first = [t1 for t1, _ in pairs]
            cover = seen_views(tr, 0, 1, first, tr.rgb[0])[1].mean(axis=(1, 2))  # the real first view, at the true camera
            invented = [pr for pr, c in zip(pairs, cover) if c < 0.5]
            per[name].append({"level_seed": e.level_seed, "all": dream_revisit(rgb, c2w, pairs),
                              "invented": dream_revisit(rgb, c2w, invented), "truth": dream_revisit(tr.rgb, tr.c2w, pairs),
                              "first_view_coverage": round(float(cover.mean()), 3)})
            if name == "walk" and has_depth:
                dream_pa += physics_agreement(depth, c2w, acts, tr.K, rules)
                truth_pa += physics_agreement(tr.depth, tr.c2w, tr.actions, tr.K, rules)

    def pooled(rows: list, key: str) -> dict[str, Any]:
        got = [r[key] for r in rows if r[key]["psnr_db"] is not None]
        n = sum(g["pairs"] for g in got)
        db = sum(g["psnr_db"] * g["pairs"] for g in got) / n if n else None
        return {"psnr_db": db, "pairs": n, "pairs_off_pose": sum(r[key]["pairs_off_pose"] for r in rows)}

    res = {name: {"invented": pooled(rows, "invented"), "all": pooled(rows, "all"), "truth": pooled(rows, "truth"),
                  "per_level": rows} for name, rows in per.items()}
    res["probes"] = ("turn: 180° right at 6°/tick, back, right again (tick t vs 60 + t); walk: 20 ticks forward, 20 back, "
                     "20 forward (t vs 40 + t), from the real first view")
    physics = {"revisit_walk": dream_pa.to_json(), "truth_revisit_walk": truth_pa.to_json()} if has_depth else None
    return res, physics


def _long_play(world, split: str, max_entries: int | None, size: tuple[int, int], render_size: tuple[int, int],
               rules: MotionModel, has_depth: bool, reference: FrameSet | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Minutes of play on the long_walk levels: the explore policy (engine.arena.policies, fed the dream's own
    frames) on the first, the scripted pushes and returns (consistency.long_play_actions) on the last. Per scenario:
    the share of ticks inside the level's bounds (the truth's beside), physics agreement, and for the scripted one how
    far each 10 s push moved the dream's camera and the truth's; realism (KID) per minute against the long walks'
    reference frames."""
    from engine.arena.config import load_preset
    from engine.arena.level import generate_level
    from engine.arena.policies import ExplorePolicy
    from engine.arena.splits import TEST_PRESET, TEST_TICK_RATE
    from worldmodel.evaluation.consistency import inside_share, long_play_actions

    entries = _entries(split, "long_walk", max_entries)
    plans = {"explore": entries[0], "scripted": entries[-1]}
    res: dict[str, Any] = {"ticks": LONG_PLAY_TICKS}
    physics: dict[str, Any] = {}
    for name, e in plans.items():
        size_m = generate_level(load_preset(TEST_PRESET), e.level_seed).size_m
        if name == "explore":
            policy = ExplorePolicy()
            policy.reset(e.policy_seed)
            rgb, c2w, depth, acts = _dream(world, level_seed=e.level_seed, policy=policy, ticks=LONG_PLAY_TICKS)
            truth_policy = ExplorePolicy()
            truth_policy.reset(e.policy_seed)
            tr = render_actions(e.level_seed, None, size, render_size, f"explore-{e.level_seed}", policy=truth_policy,
                                ticks=LONG_PLAY_TICKS)
        else:
            actions = long_play_actions(LONG_PLAY_TICKS)
            rgb, c2w, depth, acts = _dream(world, level_seed=e.level_seed, actions=actions)
            tr = render_actions(e.level_seed, actions, size, render_size, f"scripted-{e.level_seed}")
        row: dict[str, Any] = {"level_seed": e.level_seed, "level_size_m": [float(v) for v in size_m],
                               "inside_share": inside_share(c2w, size_m), "inside_share_truth": inside_share(tr.c2w, size_m),
                               "path_m": float(np.linalg.norm(np.diff(c2w[:, [0, 2], 3], axis=0), axis=1).sum()),
                               "path_m_truth": float(np.linalg.norm(np.diff(tr.c2w[:, [0, 2], 3], axis=0), axis=1).sum())}
        if has_depth:
            physics[f"long_play_{name}"] = physics_agreement(depth, c2w, acts, tr.K, rules).to_json()
            physics[f"truth_long_play_{name}"] = physics_agreement(tr.depth, tr.c2w, tr.actions, tr.K, rules).to_json()
            row["physics_agreement"] = physics[f"long_play_{name}"]["share"]
        if name == "scripted":  # each 10 s push: how far the camera moved, dream and truth
            pushes, t = [], 1
            while t + 200 <= len(acts):
                if acts[t][0] > 0.5 and (t == 1 or acts[t - 1][0] < 0.5):
                    seg = slice(t - 1, t + 200)
                    pushes.append({"from_tick": t, "dream_m": float(np.linalg.norm(c2w[seg][-1][[0, 2], 3] - c2w[seg][0][[0, 2], 3])),
                                   "truth_m": float(np.linalg.norm(tr.c2w[seg][-1][[0, 2], 3] - tr.c2w[seg][0][[0, 2], 3]))})
                    t += 200
                else:
                    t += 1
            row["pushes"] = pushes
            row["push_error_m"] = float(np.mean([abs(p["dream_m"] - p["truth_m"]) for p in pushes])) if pushes else None
        if reference is not None:  # realism per minute of play
            per_min = int(round(60 * TEST_TICK_RATE))
            minutes = {}
            for m0 in range(0, len(rgb) - 1, per_min):
                ticks = np.arange(max(m0, 1), min(m0 + per_min, len(rgb)), LONG_BAND[2])
                blocks = ticks // 200  # 10 s of one walk per group: frames within it are not independent samples
                fs = {"model": FrameSet(rgb[ticks], blocks), "floor": FrameSet(tr.rgb[ticks], blocks)}
                got = realism_scores(fs, reference)
                minutes[str(m0 // per_min + 1)] = {"kid": got["kid"]["model"], "kid_floor": got["kid"]["floor"]}
            row["realism_per_minute"] = minutes
        res[name] = row
    return res, physics


def _returns(kind: str, runs: list) -> dict[str, Any]:
    rows, at_return, geo_return = [], {"model": [], "memory_on": []}, []
    first_pass = {"model": [], "memory_on": [], "geometric": []}
    for e, tr, dreams in runs:
        r = e.return_tick
        g = geometric(tr, [r])[0]
        row = {"level_seed": e.level_seed, "return_tick": r, "geometric": float(psnr(g, tr.rgb[r]))}
        for v, (rgb, *_) in dreams.items():
            row[v] = float(psnr(rgb[r], tr.rgb[r]))
            row[f"{v}_vs_left"] = float(psnr(rgb[r], rgb[0]))
            at_return[v].append(rgb[r])
        geo_return.append(g)
        rows.append(row)
        if kind == "turn_360":
            ticks = list(range(TURN_FIRST_PASS[0], min(TURN_FIRST_PASS[1], r) + 1))
            for v, (rgb, *_) in dreams.items():
                first_pass[v].append(score_frames(rgb[ticks], tr.rgb[ticks]))
            first_pass["geometric"].append(score_frames(geometric(tr, ticks), tr.rgb[ticks]))
    truth = np.stack([tr.rgb[e.return_tick] for e, tr, _ in runs])
    s_model, s_on, s_geo = (score_frames(np.stack(x), truth) for x in (at_return["model"], at_return["memory_on"], geo_return))
    groups = np.arange(len(runs))
    res = {"model": float(s_model.psnr.mean()), "model_memory_on": float(s_on.psnr.mean()),
           "geometric": float(s_geo.psnr.mean()),
           "model_vs_left": float(np.mean([r["model_vs_left"] for r in rows])),
           "model_memory_on_vs_left": float(np.mean([r["memory_on_vs_left"] for r in rows])),
           **{m: {"model": summarize(s_model)[m], "model_memory_on": summarize(s_on)[m],
                  "geometric": summarize(s_geo)[m]} for m in ("ssim", "lpips", "sharpness")},
           "ci95_model_minus_geometric": _ci(s_model, s_geo, groups), "per_entry": rows}
    if kind == "turn_360":
        res["first_pass"] = {"ticks": list(TURN_FIRST_PASS),
                             **{v: summarize(FrameScores.concat(s)) for v, s in first_pass.items()}}
    return res


def _idle(runs: list) -> dict[str, Any]:
    def stats(rgb: np.ndarray, c2w: np.ndarray) -> dict[str, float]:
        p0, p1 = c2w[0][:3, 3], c2w[-1][:3, 3]
        return {"frame_change_db": float(psnr(rgb[-1], rgb[0])), "flicker_db": float(psnr(rgb[1:], rgb[:-1]).mean()),
                "pose_drift_m": float(np.linalg.norm(p1 - p0)), "pose_drift_deg": float(rotation_deg(c2w[0], c2w[-1]))}

    per = {v: [stats(*d[v][:2]) for _, _, d in runs] for v in ("model", "memory_on")}
    truth = [stats(tr.rgb, tr.c2w) for _, tr, _ in runs]
    mean = lambda rows: {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}  # noqa: E731
    end_model = score_frames(np.stack([d["model"][0][-1] for _, _, d in runs]), np.stack([tr.rgb[-1] for _, tr, _ in runs]))
    return {**mean(per["model"]), "memory_on": mean(per["memory_on"]), "truth": mean(truth),
            "sharpness_at_end": summarize(end_model)["sharpness"], "ticks": len(runs[0][1].rgb) - 1,
            "entries": len(runs), "per_entry": per["model"]}


def wall_in_first_view(tr: Trajectory, contact_tick: int, ahead_m: float = 0.35, tolerance_m: float = 0.5) -> bool:
    """Whether the wall the player stops at is in the trajectory's first (real) view, unoccluded: the point `ahead_m`
    beyond the eye at contact, along the walk, projects into frame 0 where frame 0's depth agrees within
    `tolerance_m`. A wall outside that view is one the dream has to invent: where it puts it is its guess."""
    eye = tr.c2w[:, :3, 3]
    walk = eye[contact_tick] - eye[0]
    if tr.K is None or np.linalg.norm(walk) < 1e-6:
        return False
    from splat.camera import project_points, world_to_camera

    point = eye[contact_tick] + walk / np.linalg.norm(walk) * ahead_m
    uv, z = project_points(point[None].astype(np.float32), world_to_camera(tr.c2w[0]), tr.K)
    (u, v), z = uv[0], float(z[0])
    H, W = tr.depth.shape[1:]
    return bool(z > 0 and 0 <= u < W and 0 <= v < H and abs(float(tr.depth[0][int(v), int(u)]) - z) < tolerance_m)


def _wall(runs: list) -> dict[str, Any]:
    res: dict[str, Any] = {}
    seen = [wall_in_first_view(tr, e.contact_tick) for e, tr, _ in runs]
    for v in ("model", "memory_on"):
        errs = [float(np.linalg.norm(d[v][1][-1][:3, 3] - tr.c2w[-1][:3, 3])) for _, tr, d in runs]
        past = [float(np.linalg.norm(d[v][1][-1][:3, 3] - d[v][1][e.contact_tick][:3, 3])) for e, _, d in runs]
        end = [float(psnr(d[v][0][-1], tr.rgb[-1])) for _, tr, d in runs]
        stats = {"stop_error_m": float(np.mean(errs)), "moved_after_contact_m": float(np.mean(past)),
                 "psnr_at_end": float(np.mean(end)), "per_entry_stop_error_m": errs,
                 # split by whether the first (real) view showed the wall; None where no entry is of that kind
                 "stop_error_m_wall_seen": float(np.mean([x for x, s in zip(errs, seen) if s])) if any(seen) else None,
                 "stop_error_m_wall_unseen": (float(np.mean([x for x, s in zip(errs, seen) if not s]))
                                              if not all(seen) else None)}
        if v == "model":
            res.update(stats)
        else:
            res["memory_on"] = stats
    e0 = runs[0][0]
    res.update({"entries": len(runs), "push_ticks": e0.ticks - e0.contact_tick, "wall_in_first_view": seen})
    return res


def _long_walk(runs: list, model: LoadedModel, render_size: tuple[int, int],
               mean_img: np.ndarray | None) -> dict[str, Any]:
    """The 1,000-tick walks: PSNR and the rest at LONG_WALK_TICKS against the truth (history, not the rule), and the
    realism band LONG_BAND (`realism`: the memory-on dream, copy-last (the first real view), the mean frame, the
    geometric baseline and the floor against other wanders on the same levels); the reference frames are kept
    (`long_walk_reference`) for the long play's realism per minute."""
    from engine.arena.splits import reference_entries

    T = min(len(tr.rgb) for _, tr, _ in runs) - 1
    ticks = [t for t in LONG_WALK_TICKS if t <= T] or [T]
    band = band_ticks(LONG_BAND, T)
    # the geometric baseline at every tick either part needs, one pass over each walk's frames
    wanted = sorted(set(ticks) | set(int(t) for t in band))
    geo = [dict(zip(wanted, geometric(tr, wanted))) for _, tr, _ in runs]
    res: dict[str, Any] = {"ticks": T, "entries": len(runs)}
    for t in ticks:
        truth = np.stack([tr.rgb[t] for _, tr, _ in runs])
        cands = {"model": np.stack([d["model"][0][t] for _, _, d in runs]),
                 "model_memory_on": np.stack([d["memory_on"][0][t] for _, _, d in runs]),
                 "geometric": np.stack([g[t] for g in geo])}
        for name, pred in cands.items():
            for metric, value in summarize(score_frames(pred, truth)).items():
                res.setdefault(metric, {}).setdefault(name, {})[str(t)] = value
    if band:
        H, W = model.config.frame_size
        ref = reference_set([render_trajectory(e, (H, W), render_size)
                             for e in reference_entries([e for e, _, _ in runs])], stride=LONG_BAND[2], group_offset=10_000)
        g = np.repeat(np.arange(len(runs)), len(band))
        has_depth = model.autoencoder.config.use_depth
        stack = lambda f: np.concatenate([f(tr, d) for _, tr, d in runs])  # noqa: E731
        mean_img = mean_img if mean_img is not None else mean_frame([tr for _, tr, _ in runs])
        sets = {"model": FrameSet(stack(lambda tr, d: d["memory_on"][0][band]), g,
                                  stack(lambda tr, d: d["memory_on"][2][band]) if has_depth else None),
                "copy_last": FrameSet(stack(lambda tr, d: np.repeat(tr.rgb[:1], len(band), 0)), g,
                                      stack(lambda tr, d: np.repeat(tr.depth[:1], len(band), 0)) if has_depth else None),
                "mean_frame": FrameSet(np.broadcast_to(mean_img, (len(g), *mean_img.shape)).copy(), g),
                "geometric": FrameSet(np.concatenate([np.stack([gj[int(t)] for t in band]) for gj in geo]), g),
                "floor": FrameSet(stack(lambda tr, d: tr.rgb[band]), g, stack(lambda tr, d: tr.depth[band]) if has_depth else None)}
        res["realism"] = realism_scores(sets, ref, None, False,
                                        float(model.autoencoder.config.max_depth) if has_depth else None)
        res["long_walk_reference"] = ref
    return res


def revisit(model_dir: Path, render_scale: int = 2, max_entries: int | None = None, steps: int = 1,
            context_noise: float | None = None, split: str = "test",
            memory_settings: dict[str, Any] | None = None, device: str = "auto") -> dict[str, Any]:
    """The revisit benchmark: open-loop dreams along the held-out revisit trajectories (which leave and
    come back after more ticks than the context window), memory on vs off, scored against ground truth
    on the frames after the return; plus the memory's own fidelity on ground-truth inserts.
    `split="validation"`: revisits planned the same way on validation seeds, for choosing settings;
    `memory_settings`: splat.MemoryConfig fields instead of the model's own (model.yaml info.memory)."""
    from engine.arena.splits import entry_actions
    from engine.world import make_world
    from splat import SceneMemory
    from worldmodel.checkpoint import check_memory_settings

    model = load_model(model_dir, device=device)
    H, W = model.config.frame_size
    if memory_settings is None:
        memory_settings = model.memory_settings
    memory_settings = check_memory_settings(memory_settings, "memory settings")
    entries = _entries(split, "revisit", max_entries)
    rs = (H * render_scale, W * render_scale)
    trs = [render_trajectory(e, (H, W), rs) for e in entries]
    actions = [np.stack([a.to_array() for a in entry_actions(e)]) for e in entries]
    seeds = [int(e.level_seed) for e in entries]
    from worldmodel.dream import prompt_world_name
    from worldmodel.tick import Dreams

    prompt = make_world(prompt_world_name(model, str(model_dir)), width=rs[1], height=rs[0])
    try:
        views = [prompt_view(prompt, s, H, W) for s in seeds]
    finally:
        prompt.close()
    # every revisit walk dreamed together (the one tick, batched), for each memory: off, on, and the two oracles
    dreamed = {}
    for kind in ("off", "on", "oracle", "oracle_dream_pose"):
        if kind.startswith("oracle"):
            base = batch_dreams(model_dir, model, len(entries), steps, context_noise, memory=False)
            memories = [GroundTruthMemory(SceneMemory(width=W, height=H, **memory_settings), tr,
                                          render_at_truth=kind == "oracle") for tr in trs]
            dreams = Dreams(model, len(entries), base.sampler, base.cameras[0].model if base.cameras else None,
                            memories, base.memory_first, base.amp, base.cache_dtype)
        else:
            dreams = batch_dreams(model_dir, model, len(entries), steps, context_noise, memory=kind != "off",
                                  memory_settings=memory_settings)
        dreamed[kind] = dream_batch(dreams, views, seeds, actions)
    K = dreams.K[0].copy()
    rows = []
    for j, (e, tr) in enumerate(zip(entries, trs)):
        scores = {}
        for kind, runs in dreamed.items():
            rgb, c2w, _ = runs[j]
            pred = rgb[e.return_tick:]
            gt = tr.rgb[e.return_tick:len(rgb)]
            scores[kind] = (float(psnr(pred, gt).mean()), float(ssim(pred, gt).mean()))
            if kind in ("on", "off"):  # the truth from the dream's own (drifted) cameras
                ticks = np.arange(e.return_tick, len(rgb))
                gt_there = render_at_poses(e, c2w[e.return_tick:], ticks, (H, W), rs)
                scores[f"{kind}_at_dream_pose"] = (float(psnr(pred, gt_there).mean()),
                                                   float(ssim(pred, gt_there).mean()))
            if kind == "on":  # how far the dream's camera is from the truth on its return
                drift = _pose_drift(c2w[e.return_tick], tr.c2w[e.return_tick])
        rows.append({"level_seed": e.level_seed, "gap_ticks": e.return_tick, "pose_drift_at_return": drift,
                     **{f"psnr_memory_{k}": v[0] for k, v in scores.items()},
                     **{f"ssim_memory_{k}": v[1] for k, v in scores.items()}})
    return {"revisit": {**_revisit_summary(rows),
                        # Scored against the truth rendered at the dream's own cameras instead: the scene's
                        # consistency with the pose drift taken out (models whose camera is an input, not a
                        # prediction, are scored this way by construction)
                        "at_dream_pose": {k: float(np.mean([r[f"psnr_memory_{k}_at_dream_pose"] for r in rows]))
                                          for k in ("on", "off")},
                        "context_window_frames": model.config.dynamics.window, "split": split,
                        "memory_settings": memory_settings, "per_trajectory": rows},
            **memory_fidelity(trs, [K] * len(trs), memory_settings)}


def _pose_drift(dream_c2w: np.ndarray, true_c2w: np.ndarray) -> dict[str, float]:
    """How far a dream's camera [4, 4] is from the true one: metres and degrees of yaw."""
    p_dream, yaw_dream, _ = decompose(dream_c2w[None])
    p_true, yaw_true, _ = decompose(true_c2w[None])
    return {"position_m": float(np.linalg.norm(p_dream - p_true)),
            "yaw_deg": float(np.abs(wrap_deg(yaw_dream - yaw_true)).max())}


def _revisit_summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The revisit section's means over its rows (psnr_/ssim_memory_{on,off,oracle,oracle_dream_pose},
    pose_drift_at_return)."""
    mean = lambda key: float(np.mean([r[key] for r in rows]))  # noqa: E731
    on, off = mean("psnr_memory_on"), mean("psnr_memory_off")
    oracle, oracle_dream_pose = mean("psnr_memory_oracle"), mean("psnr_memory_oracle_dream_pose")
    return {"memory_on": on, "memory_off": off, "gain_db": on - off,
            "ssim_memory_on": mean("ssim_memory_on"), "ssim_memory_off": mean("ssim_memory_off"),
            # Diagnostic: the same dream given a memory of the ground truth instead of its own frames
            # (see GroundTruthMemory) — how much a memory could help this model if it were right.
            "memory_oracle": oracle, "oracle_gain_db": oracle - off, "ssim_memory_oracle": mean("ssim_memory_oracle"),
            # ... and that true memory seen from the dream's own drifted camera: the pose drift's share
            "memory_oracle_dream_pose": oracle_dream_pose, "pose_drift_cost_db": oracle - oracle_dream_pose,
            "pose_drift_at_return_m": float(np.mean([r["pose_drift_at_return"]["position_m"] for r in rows])),
            "pose_drift_at_return_deg": float(np.mean([r["pose_drift_at_return"]["yaw_deg"] for r in rows]))}


def memory_fidelity(trajs: list[Trajectory], Ks: list[np.ndarray], memory_settings: dict[str, Any]) -> dict[str, Any]:
    """The scene memory's own fidelity: every 5th true frame of each trajectory inserted (camera Ks[i]) and rendered
    back at its pose. The memory holds geometry, not the sky (depth beyond its max_depth): fidelity is scored on
    the pixels it covers, with the coverage and the whole-frame figure beside it."""
    from splat import SceneMemory

    full, covered, coverage = [], [], []
    for tr, K in zip(trajs, Ks):
        H, W = tr.rgb.shape[1:3]
        memory = SceneMemory(width=W, height=H, **memory_settings)
        for t in range(0, len(tr.rgb), 5):
            memory.insert(tr.rgb[t], tr.depth[t], tr.c2w[t], K, t)
            view = memory.render(tr.c2w[t], K, t)
            full.append(float(psnr(view.rgb, tr.rgb[t])))
            cov = view.alpha > 0.5
            coverage.append(float(cov.mean()))
            if cov.any():
                mse = ((view.rgb[cov].astype(float) - tr.rgb[t][cov].astype(float)) ** 2).mean()
                covered.append(10 * math.log10(255.0**2 / max(mse, 1e-10)))
    return {"memory_fidelity": float(np.mean(covered)) if covered else None,
            "memory_fidelity_coverage": float(np.mean(coverage)), "memory_fidelity_full_frame": float(np.mean(full))}


def recorded_returns(trajs: list[Trajectory], has_depth: bool, min_gap: int,
                     context: int) -> tuple[dict[int, list], str | None]:
    """The returns (evaluation.returns) in each recorded episode, {trajectory index: [Return]} for those that
    have any after the context, or why there are none to score (one line)."""
    no_pose = any(tr.K is None for tr in trajs)
    if not has_depth or no_pose:
        return {}, ("the recordings have no " + ("camera poses" if no_pose else "depth")
                    + ": a revisit needs both (to find the returns, and to put the views in the scene memory)")
    found = {i: r for i, tr in enumerate(trajs) if (r := find_returns(tr.c2w, min_gap, first_tick=context))}
    if not found:
        return {}, (f"no returns in the recordings: no camera comes back within {NEAR_M} m and {NEAR_DEG:g}° of a pose "
                    f"it left (by {AWAY_M} m or {AWAY_DEG:g}°) at least {min_gap} ticks later")
    return found, None


def _score_recorded_returns(tr: Trajectory, returns: list, dreams: dict[str, tuple[np.ndarray, np.ndarray]],
                            context: int) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Per-return rows and the frames at the returns ({method: [n, H, W, 3]}, "truth" among them) of one episode,
    dreams[kind] being that dream's frames and cameras from tick `context` on."""
    ticks = [r.tick for r in returns]
    frames = {kind: rgb[[t - context for t in ticks]] for kind, (rgb, _) in dreams.items()}
    frames["geometric"], frames["truth"] = geometric(tr, ticks), tr.rgb[ticks]
    rows = []
    for j, ret in enumerate(returns):
        truth = frames["truth"][j]
        rows.append({"episode": tr.name, "earlier_tick": ret.earlier, "return_tick": ret.tick,
                     "gap_ticks": ret.tick - ret.earlier,
                     "pose_drift_at_return": _pose_drift(dreams["on"][1][ret.tick - context], tr.c2w[ret.tick]),
                     "geometric": float(psnr(frames["geometric"][j], truth)),
                     **{f"psnr_memory_{k}": float(psnr(frames[k][j], truth)) for k in dreams},
                     **{f"ssim_memory_{k}": float(ssim(frames[k][j][None], truth[None])[0]) for k in dreams}})
    return rows, frames


def recorded_revisit(model_dir: Path, data: list[str], context: int = 8, steps: int = 1, seed: int = 0,
                     max_entries: int | None = None, context_noise: float | None = None,
                     memory_settings: dict[str, Any] | None = None, device: str = "auto") -> dict[str, Any]:
    """Part 3 on held-out recordings of any World (`evaluate --data`): the returns found in the recordings
    themselves (evaluation.returns, at least the context window + 1 ticks after the view they come back to), each
    scored at its return tick against the true frame there. One dream per episode and kind, started from its first
    `context` true frames (dream_from, the model's own camera and memory settings) and following the recorded
    actions: scene memory off, on, and the oracle (GroundTruthMemory, at the true and at the dream's camera), with
    the geometric baseline (the true frames before the return in the splat memory, at the true camera) and the
    memory's fidelity on the true frames. The truth at the dream's own cameras cannot be rendered from recordings:
    `at_dream_pose` is arena-only. Returns {"skipped": {"revisit": why}} when the recordings have no camera poses
    or depth, or no returns."""
    from splat import SceneMemory
    from worldmodel.checkpoint import check_memory_settings

    model = load_model(model_dir, device=device)
    H, W = model.config.frame_size
    window = model.config.dynamics.window
    context = min(context, window)
    memory_settings = check_memory_settings(model.memory_settings if memory_settings is None else memory_settings,
                                            "memory settings")
    trajs = recorded_trajectories(data, (H, W))[:max_entries]
    found, why = recorded_returns(trajs, recordings_setup(data)["has_depth"], window + 1, context)
    if why:
        return {"skipped": {"revisit": why}}
    worlds = {kind: recorded_dream_world(model_dir, kind != "off", steps, context_noise, memory_settings, device)
              for kind in ("off", "on", "oracle", "oracle_dream_pose")}
    rows, frames = [], []
    try:
        for i, returns in found.items():
            tr = trajs[i]
            for kind in ("oracle", "oracle_dream_pose"):
                worlds[kind].attach_memory(GroundTruthMemory(SceneMemory(width=W, height=H, **memory_settings), tr,
                                                             render_at_truth=kind == "oracle"))
            horizon = returns[-1].tick - context + 1
            dreams = {k: dream_from(w, tr, context - 1, context, horizon, seed + i)[:2] for k, w in worlds.items()}
            r, f = _score_recorded_returns(tr, returns, dreams, context)
            rows += r
            frames.append(f)
    finally:
        for w in worlds.values():
            w.close()
    at_return = {k: np.concatenate([f[k] for f in frames]) for k in frames[0]}
    scores = {k: score_frames(at_return[k], at_return["truth"]) for k in ("off", "on", "geometric")}
    names = {"off": "memory_off", "on": "memory_on", "geometric": "geometric"}
    return {"revisit": {**_revisit_summary(rows), "geometric": float(scores["geometric"].psnr.mean()),
                        **{m: {names[k]: summarize(s)[m] for k, s in scores.items()} for m in ("lpips", "sharpness")},
                        "ci95_memory_on_minus_geometric": _ci(scores["on"], scores["geometric"], np.arange(len(rows))),
                        "returns": len(rows), "episodes_with_returns": len(found), "episodes": len(trajs),
                        "thresholds": {"near_m": NEAR_M, "near_deg": NEAR_DEG, "away_m": AWAY_M, "away_deg": AWAY_DEG,
                                       "min_gap_ticks": window + 1},
                        "scored_at": "the return tick", "context": context, "context_window_frames": window,
                        "split": "recordings", "memory_settings": memory_settings, "per_trajectory": rows},
            **memory_fidelity(trajs, [tr.K for tr in trajs], memory_settings)}


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m worldmodel.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="model directory (model.yaml + model.safetensors)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--split", choices=("test", "validation"), default="test",
                   help="held-out walks on test seeds (score a candidate to ship, once) or the same kinds planned on "
                        "validation seeds (choose settings and models there)")
    p.add_argument("--context", type=integer(1, 256), default=8, help="ground-truth frames before the open loop")
    p.add_argument("--steps", type=integer(1, 100), default=1, help="sampling steps per frame")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                   help="where the model runs: auto (CUDA when present), cpu or cuda (bf16 autocast on CUDA)")
    p.add_argument("--context-noise", type=number(0, 1, hi_open=True), default=None,
                   help="noise level the dream's own frames are committed at (default: the model's, from its "
                        "model.yaml info.sampling; sweep it with --split validation)")
    p.add_argument("--starts", type=integer(1, 1000), default=3, help="start ticks per trajectory")
    p.add_argument("--max-entries", type=integer(1, 1_000_000), default=None, help="use only the first N walks of each kind (smoke runs)")
    p.add_argument("--no-places", action="store_true", help="skip the returns, idle, wall and long-walk dreams")
    p.add_argument("--no-revisit", action="store_true", help="skip the memory revisit benchmark")
    p.add_argument("--revisit-only", action="store_true", help="only the memory revisit benchmark (no open loop)")
    p.add_argument("--memory", action="append", default=[], metavar="KEY=VALUE",
                   help="scene-memory setting (a splat.MemoryConfig field, e.g. subsample=1) instead of the model's "
                        "for the revisit benchmark; repeatable")
    p.add_argument("--data", nargs="+", default=None,
                   help="held-out recordings of any World to test on instead of the arena walks: the open loop, and "
                        "the revisits found in the recordings (where the camera comes back to a view it left; needs "
                        "poses and depth); the scripted arena places are skipped")
    args = p.parse_args(argv)
    if (args.revisit_only or args.memory) and args.no_revisit:
        p.error("--revisit-only and --memory are for the revisit benchmark; they cannot go with --no-revisit")
    if args.data and args.split != "test":
        p.error("--split chooses arena walks; with --data the recordings given are the held-out set")
    try:
        check_write_target(args.out, "--out", folder=True)
        free = shutil.disk_usage(args.out if args.out.exists() else args.out.parent).free
        if free < REPORT_SPACE:  # the report, plots and strips, written at the end: refuse now rather than then
            raise ValueError(f"--out {args.out}: {free / 2**20:.0f} MiB free there, the report needs about "
                             f"{REPORT_SPACE >> 20} MiB; free some space or choose another --out")
        memory_settings = None
        if args.memory:
            from engine.cli import parse_set
            from worldmodel.checkpoint import check_memory_settings

            memory_settings = parse_set(args.memory, "--memory", "subsample=1")

            check_memory_settings(memory_settings, "--memory")  # before the open loop, not after it
        if args.revisit_only:
            args.out.mkdir(parents=True, exist_ok=True)
            report = {}
        else:
            t_eval = time.perf_counter()
            report = evaluate(args.checkpoint, args.out, args.context, args.steps, args.starts,
                              max_entries=args.max_entries, data=args.data, context_noise=args.context_noise,
                              split=args.split, places=not args.no_places, device=args.device)
            report["setup"]["timings_s"]["evaluate_s"] = round(time.perf_counter() - t_eval, 1)
        if not args.no_revisit:
            t_revisit = time.perf_counter()
            if args.data:
                part = recorded_revisit(args.checkpoint, args.data, args.context, args.steps,
                                        max_entries=args.max_entries, context_noise=args.context_noise,
                                        memory_settings=memory_settings, device=args.device)
            else:
                part = revisit(args.checkpoint, max_entries=args.max_entries, steps=args.steps,
                               context_noise=args.context_noise, split=args.split,
                               memory_settings=memory_settings, device=args.device)
            report.setdefault("skipped", {}).update(part.pop("skipped", {}))
            report.update(part)
            if "setup" in report:
                report["setup"]["timings_s"]["revisit_s"] = round(time.perf_counter() - t_revisit, 1)
            _say(f"revisits done in {time.perf_counter() - t_revisit:.0f} s")
            if not report["skipped"]:
                del report["skipped"]
            write_report(args.out / "report.json", report)
    except (CheckpointError, ValueError) as e:  # DeviceError and SharedFileError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: writing under {args.out} failed ({io_reason(e)}); files already there are whole", file=sys.stderr)
        return 2
    brief = {k: v for k, v in report.items() if k not in ("setup", "per_rollout", "ci95", "skipped")}
    for key in ("revisit", "idle"):
        if key in brief:
            brief[key] = {k: v for k, v in brief[key].items() if not k.startswith("per_")}
    for kind in brief.get("returns", {}):
        brief["returns"][kind] = {k: v for k, v in brief["returns"][kind].items() if k != "per_entry"}
    print(json.dumps(brief, indent=2))
    for part, why in report.get("skipped", {}).items():
        print(f"skipped {part}: {why}")
    for text in report.get("warnings", []):
        print(f"warning: {text}", file=sys.stderr)
    if args.revisit_only:
        print(f"report: {args.out / 'report.json'}")
    else:
        print(f"report: {args.out / 'report.json'}; plots: {args.out / 'psnr.png'}, {args.out / 'strip.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
