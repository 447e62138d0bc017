"""Revisits (the module docstring of worldmodel.evaluate, part 3): dreams along walks that leave a place and come back
after more ticks than the context window, with the scene memory off, on and an oracle, scored after the return; on
recordings, the returns found in them (evaluation.returns); and the scene memory's own fidelity on true frames."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from worldmodel.checkpoint import load_model
from worldmodel.evaluation.baselines import GroundTruthMemory, geometric
from worldmodel.evaluation.dreaming import batch_dreams, dream_batch, dream_from, held_out, recorded_dream_world
from worldmodel.evaluation.metrics import ci95, psnr, score_frames, ssim, summarize
from worldmodel.evaluation.returns import AWAY_DEG, AWAY_M, NEAR_DEG, NEAR_M, find_returns
from worldmodel.evaluation.trajectories import (Trajectory, recorded_trajectories, recordings_setup, render_at_poses,
                                                render_trajectory)
from worldmodel.pose import decompose, wrap_deg
from worldmodel.tick import prompt_view


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
    from worldmodel.settings import check_memory_settings

    model = load_model(model_dir, device=device)
    H, W = model.config.frame_size
    if memory_settings is None:
        memory_settings = dict(model.settings.memory_settings)
    memory_settings = check_memory_settings(memory_settings, "memory settings")
    entries = held_out(split, "revisit", max_entries)
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
                            memories, base.memory_first, base.amp, base.cache_dtype,
                            memory_first_trust=base.memory_first_trust)
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
    from worldmodel.settings import check_memory_settings

    model = load_model(model_dir, device=device)
    H, W = model.config.frame_size
    window = model.config.dynamics.window
    context = min(context, window)
    memory_settings = check_memory_settings(dict(model.settings.memory_settings) if memory_settings is None else memory_settings,
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
                        "ci95_memory_on_minus_geometric": ci95(scores["on"], scores["geometric"], np.arange(len(rows))),
                        "returns": len(rows), "episodes_with_returns": len(found), "episodes": len(trajs),
                        "thresholds": {"near_m": NEAR_M, "near_deg": NEAR_DEG, "away_m": AWAY_M, "away_deg": AWAY_DEG,
                                       "min_gap_ticks": window + 1},
                        "scored_at": "the return tick", "context": context, "context_window_frames": window,
                        "split": "recordings", "memory_settings": memory_settings, "per_trajectory": rows},
            **memory_fidelity(trajs, [tr.K for tr in trajs], memory_settings)}


