"""The open loop's baselines and scores: every rollout's frames at each horizon beside the truth, copy-last, the mean
frame, the geometric baseline and the seen baseline (`baseline_views`), scored per frame on the whole frame and on
its seen and unseen cells (`score_open_loop`); the warnings a player would notice first (`quality_warnings`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from worldmodel.evaluation.baselines import geometric, mean_frame, seen_views
from worldmodel.evaluation.metrics import FrameScores, score_frames, score_regions
from worldmodel.evaluation.trajectories import Trajectory


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


