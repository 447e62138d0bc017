"""Evaluate a model on held-out arena trajectories as a player sees it, beside baselines measured in the same run.

    python -m worldmodel.evaluate --checkpoint assets/model --out runs/eval                    # the test set
    python -m worldmodel.evaluate --checkpoint runs/m --out runs/val --split validation        # choose here

Choose settings and models on `--split validation` (trajectories planned the same way on validation seeds);
score the test set once for a candidate that is to ship. Compare two reports with paired bootstrap intervals:
`python -m worldmodel.evaluation.report compare A/report.json B/report.json`.

The parts (worldmodel/evaluation/): `trajectories` renders the held-out walks, `dreaming` dreams them through the
one tick, `openloop` scores part 1, `places` runs part 2 and `revisits` part 3, `metrics` measures frames (PSNR,
SSIM, ST-LPIPS, sharpness, brightness and contrast drift, paired bootstrap), `baselines` holds copy-last, the
mean frame and the geometric baseline (the true frames lifted into the splat memory, rendered at the true
camera), `unseen` and `realism` judge what no context saw, `report` writes the plots, the strip and the README
table. Parts 2 and 3 run in worker processes beside part 1 (`--workers`, evaluation.parts).

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
from worldmodel.evaluation.baselines import GEOMETRIC_MEMORY, mean_frame
from worldmodel.evaluation.consistency import PhysicsAgreement, consistency_summary, physics_agreement
from worldmodel.evaluation.dreaming import (decode, dream_open_loop, encode, held_out, measure_ticks_per_s,
                                            render_size, say)
from worldmodel.evaluation.metrics import CI_METRICS, ci95, psnr, score_frames, summarize
from worldmodel.evaluation.openloop import baseline_views, quality_warnings, score_open_loop
from worldmodel.evaluation.parts import PLACE_GROUPS, Parts, default_workers, merge
from worldmodel.evaluation.places import PLACE_KINDS
from worldmodel.evaluation.report import draw_plot, save_strip
from worldmodel.evaluation.revisits import revisit
from worldmodel.evaluation.shown import resized, shown_block
from worldmodel.evaluation.trajectories import Trajectory, recorded_trajectories, recordings_setup, render_trajectory
from worldmodel.evaluation.unseen import (BANDS, LONG_BAND, REFERENCE_FROM, REFERENCE_STRIDE, FrameSet, band_name,
                                          band_ticks, depth_block, realism_block, realism_scores, realism_setup,
                                          reference_set, seen_cells)
from worldmodel.motion import MotionModel
from worldmodel.pose import decompose, wrap_deg

HORIZONS = (1, 4, 8, 16, 32, 64, 128)
REPORT_SPACE = 16 << 20  # bytes free that an evaluation asks for (report.json, plots, strips: 0.7 MB on the arena)


def _world_setup(data: list[str] | None, H: int, W: int, render_scale: int) -> dict[str, Any]:
    """The report's world and render_size (frames as rendered or recorded, before the resize to the model's H x W):
    the arena's for its walks, the recordings' own (from their meta.yaml) for --data: [H, W], or a list of them
    when the recordings differ."""
    if not data:
        return {"world": "arena", "render_size": list(render_size(H, W, render_scale))}
    rec = recordings_setup(data)
    sizes = rec["resolutions"]
    return {"world": rec["worlds"][0] if len(rec["worlds"]) == 1 else rec["worlds"],
            "render_size": sizes[0] if len(sizes) == 1 else sizes}


def evaluate(model_dir: Path, out: Path, context: int = 8, steps: int = 1, starts_per_traj: int = 3,
             render_scale: int = 2, max_entries: int | None = None, seed: int = 0,
             data: list[str] | None = None, context_noise: float | None = None, split: str = "test",
             places: bool = True, device: str = "auto", revisits: bool = False,
             memory_settings: dict[str, Any] | None = None, workers: int | None = None) -> dict[str, Any]:
    """Part 1 of the module docstring, part 2 unless `places=False` or `data` is given, and part 3 with `revisits`
    (`memory_settings`: splat.MemoryConfig fields for it instead of the model's); `data` replaces the arena walks
    with held-out recordings. `context_noise`: the level the dream's own frames are committed at (None: the model's
    own, from its model.yaml). `device`: where the model runs (worldmodel.device). `workers`: processes for parts 2
    and 3 beside the open loop (evaluation.parts; None: 3 on a CPU of 2 or more cores, else 1)."""
    model = load_model(model_dir, device=device)
    workers = default_workers(str(model.device)) if workers is None else workers
    torch.set_num_threads(2)
    if context_noise is None:
        context_noise = model.settings.context_noise
    H, W = model.config.frame_size
    context = min(context, model.config.dynamics.window)
    full = None  # the walks at the shown size, for a model with an upsampler (evaluation.shown)
    if data:
        trajs = recorded_trajectories(data, (H, W))[:max_entries]
    elif model.upsampler is not None:
        full = [render_trajectory(e, model.config.shown_size, render_size(H, W, render_scale))
                for e in held_out(split, "moving", max_entries)]
        trajs = [resized(tr, (H, W)) for tr in full]
    else:
        trajs = [render_trajectory(e, (H, W), render_size(H, W, render_scale))
                 for e in held_out(split, "moving", max_entries)]
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
    parts = Parts(workers)
    try:
        _submit_parts(parts, model_dir, data, places, revisits, split=split, render_scale=render_scale,
                      max_entries=max_entries, steps=steps, context_noise=context_noise, device=device,
                      n_frames=len(horizons), mean_img=mean_frame(trajs), context=context,
                      memory_settings=memory_settings)
        if parts.running:  # beside the workers, one thread: the cores are theirs too
            torch.set_num_threads(1)
        report, loop = _open_loop(model, model_dir, trajs, starts, groups, horizons, context, steps, seed, context_noise,
                            data, split, max_entries, render_scale, full)
        _collect_parts(parts, report, loop, data, places)
    except BaseException:
        parts.close(abort=True)
        raise
    parts.close()
    report["setup"]["workers"] = workers
    out.mkdir(parents=True, exist_ok=True)
    write_report(out / "report.json", report)
    draw_plot(out / "psnr.png", {name: [report["psnr"][name][str(h)] for h in horizons]
                                 for name in ("model", "copy_last", "mean_frame", "geometric") if name in report["psnr"]},
              horizons, f"PSNR on held-out {'recordings' if data else split + ' walks'} ({len(starts)} rollouts)")
    save_strip(out / "strip.png", loop.strip_rows)
    return report


def _submit_parts(parts: Parts, model_dir: Path, data: list[str] | None, places: bool, revisits: bool, *,
                  split: str, render_scale: int, max_entries: int | None, steps: int, context_noise: float,
                  device: str, n_frames: int, mean_img: np.ndarray, context: int,
                  memory_settings: dict[str, Any] | None) -> None:
    """Parts 2 and 3 (evaluation.parts) for the workers, or for after the open loop."""
    common = dict(model_dir=model_dir, max_entries=max_entries, steps=steps, context_noise=context_noise,
                  device=device)
    if places and not data:
        for kinds in PLACE_GROUPS:
            parts.submit("places", split=split, render_scale=render_scale, n_frames=n_frames, kinds=kinds,
                         mean_img=mean_img, **common)
    if revisits and data:
        parts.submit("recorded_revisit", data=data, context=context, memory_settings=memory_settings, **common)
    elif revisits:
        parts.submit("revisit", split=split, render_scale=render_scale, memory_settings=memory_settings, **common)


@dataclass
class OpenLoopParts:
    """What the open loop leaves for the other parts to finish: the strip's rows, the realism per band (the long
    walks add theirs) and the self-consistency parts (the places add theirs)."""

    strip_rows: list
    realism_bands: dict[str, Any]
    consistency: dict[str, Any]


def _collect_parts(parts: Parts, report: dict[str, Any], loop: OpenLoopParts, data: list[str] | None,
                   places: bool) -> None:
    """The parts' results into the open loop's report: the places (their realism band past the open loop's
    horizons, their self-consistency parts, their strip rows), the revisits; each part's time in setup.timings_s."""
    timings = report["setup"]["timings_s"]
    placed: dict[str, Any] = {}
    for name, result, wall_s in parts.results():
        say(f"{name} done in {wall_s:.0f} s")
        if name == "places":
            timings.update(result.pop("timings", {}))
            timings["places_s"] = round(timings.get("places_s", 0.0) + wall_s, 1)
            loop.strip_rows += result.pop("strip_rows", [])
            merge(placed, result)
        else:
            timings["revisit_s"] = wall_s
            report.setdefault("skipped", {}).update(result.pop("skipped", {}))
            report.update(result)
    if places and data:
        report.setdefault("skipped", {})["places"] = (f"{', '.join(PLACE_KINDS)} are scripted arena walks: not run "
                                                      "with --data")
    merge(loop.consistency, placed.pop("self_consistency", {}))
    long_realism = placed.get("long_walk", {}).pop("realism", None)
    if long_realism:  # the band past the open loop's horizons, from the 1,000-tick walks
        loop.realism_bands[band_name(LONG_BAND)] = long_realism
        report["realism"] = {**realism_block(loop.realism_bands), "setup": report["realism"]["setup"]}
        if "depth_plausibility" in report:
            report["depth_plausibility"] = depth_block(loop.realism_bands)
    report.update(placed)
    if loop.consistency:
        report["self_consistency"] = consistency_summary(loop.consistency, report.get("wall"))
    if not report.get("skipped", True):
        del report["skipped"]


def _open_loop(model: LoadedModel, model_dir: Path, trajs: list[Trajectory], starts: list[tuple[int, int]],
               groups: np.ndarray, horizons: tuple[int, ...], context: int, steps: int, seed: int,
               context_noise: float, data: list[str] | None, split: str, max_entries: int | None,
               render_scale: int, full: list[Trajectory] | None = None) -> tuple[dict[str, Any], OpenLoopParts]:
    """Part 1: the open loop dreamed and scored, its realism bands and physics agreement: its report, and what
    _collect_parts finishes. `full`: the walks at the shown size (a model with an upsampler): the shown frames
    scored there too (report "shown", evaluation.shown)."""
    H, W = model.config.frame_size
    hmax = max(horizons)
    t_start = time.perf_counter()
    with_memory = model.settings.memory and all(tr.K is not None for tr in trajs)
    # the dream as play.py runs it (with its scene memory when the model dreams with one), all rollouts together
    result = dream_open_loop(model_dir, model, trajs, starts, context, hmax, steps, seed, context_noise,
                             memory=with_memory)
    rollout_s = time.perf_counter() - t_start

    timings = {"open_loop_dream_s": round(rollout_s, 1)}
    say(f"open loop: {len(starts)} rollouts of {hmax} ticks dreamed in {rollout_s:.0f} s; scoring")
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
            for m, v in ci95(scores["model"][h], scores[b][h], groups).items():
                report["ci95"][m][b][h] = v
    if full is not None:  # the shown frames at their size, against the truth there (evaluation.shown)
        t_shown = time.perf_counter()
        report["shown"] = shown_block(model, full, starts, horizons, result.pred, result.depth, groups)
        timings["shown_s"] = round(time.perf_counter() - t_shown, 1)
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
                                                                     render_size(H, W, render_scale))
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
        report["realism"] = {**realism_block(realism_bands), "setup": realism_setup(reference_what, exclude_cross,
                                                                                    max_depth)}
        if has_depth:
            report["depth_plausibility"] = depth_block(realism_bands)
    timings["realism_s"] = round(time.perf_counter() - t_phase, 1)
    say(f"open loop scored; realism in {timings['realism_s']:.0f} s")
    consistency: dict[str, Any] = {}
    if has_depth and all(tr.K is not None for tr in trajs):
        rules = model.settings.motion or MotionModel()
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
    report["setup"]["timings_s"] = timings
    if skipped:
        report["skipped"] = {**report.get("skipped", {}), **skipped}
    return report, OpenLoopParts(strip_rows, realism_bands, consistency)


def _realism_reference(trajs: list[Trajectory], data: list[str] | None, split: str, max_entries: int | None,
                       size: tuple[int, int], render_size: tuple[int, int]) -> tuple[FrameSet, str, bool]:
    """The true frames the open loop's frames are compared with, unpaired: other wanders on the same arena levels
    (engine.arena.splits.reference_entries), or for recordings the other recorded episodes (pairs of an episode's
    dream with its own truth left out). Returns (frames, what they are, whether same-walk cross pairs are left out)."""
    if data:
        return reference_set(trajs, blocks=False), ("the true frames of the other recorded episodes, every "
                                      f"{REFERENCE_STRIDE}nd tick from {REFERENCE_FROM}"), True
    from engine.arena.splits import reference_entries

    ref = [render_trajectory(e, size, render_size) for e in reference_entries(held_out(split, "moving", max_entries))]
    return reference_set(ref, group_offset=10_000), (f"{len(ref)} other wanders on the same {split} levels "
                                                     f"(engine.arena.splits.reference_entries), every {REFERENCE_STRIDE}nd "
                                                     f"tick from {REFERENCE_FROM}"), False


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
    p.add_argument("--workers", type=integer(1, 16), default=None,
                   help="processes for the place walks and revisits beside the open loop (default: 3 on a CPU of 2 or "
                        "more cores, one per part; else 1, run after the open loop)")
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
            from worldmodel.settings import check_memory_settings

            memory_settings = parse_set(args.memory, "--memory", "subsample=1")

            check_memory_settings(memory_settings, "--memory")  # before the open loop, not after it
        t_eval = time.perf_counter()
        if args.revisit_only:
            args.out.mkdir(parents=True, exist_ok=True)
            report = revisit(args.checkpoint, max_entries=args.max_entries, steps=args.steps,
                             context_noise=args.context_noise, split=args.split, memory_settings=memory_settings,
                             device=args.device)
            say(f"revisits done in {time.perf_counter() - t_eval:.0f} s")
        else:
            report = evaluate(args.checkpoint, args.out, args.context, args.steps, args.starts,
                              max_entries=args.max_entries, data=args.data, context_noise=args.context_noise,
                              split=args.split, places=not args.no_places, device=args.device,
                              revisits=not args.no_revisit, memory_settings=memory_settings, workers=args.workers)
            report["setup"]["timings_s"]["evaluate_s"] = round(time.perf_counter() - t_eval, 1)
            say(f"evaluation done in {time.perf_counter() - t_eval:.0f} s")
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

