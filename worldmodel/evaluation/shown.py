"""The shown frame at its size: the open loop's dreamed frames through the model's upsampler (worldmodel/upsampler.py),
against the truth rendered at that size, next to the same frames upsampled bilinearly (what a window does with the
model-size frame) and to the true model-size frame upsampled bilinearly (what the best model-size dream could show).

The upsampler is a function of the frame and depth a tick shows and feeds nothing back, so the open loop's frames
upsampled here are the frames play.py shows for that dream."""

from __future__ import annotations

from typing import Any

import numpy as np

from worldmodel.data import area_resize, fit_K
from worldmodel.evaluation.metrics import ci95, score_frames, summarize
from worldmodel.evaluation.trajectories import Trajectory
from worldmodel.upsampler import upsample_frames

METHODS = ("upsampler", "bilinear", "truth_bilinear")  # what the shown block scores, the first against the others


def resized(tr: Trajectory, size: tuple[int, int]) -> Trajectory:
    """A trajectory area-resized to `size` (the one rule of worldmodel.data.area_resize), intrinsics to match."""
    src = tr.rgb.shape[1:3]
    return Trajectory(area_resize(tr.rgb, size), area_resize(tr.depth[..., None], size)[..., 0], tr.c2w, tr.actions,
                      tr.name, None if tr.K is None else fit_K(tr.K, src, size))


def shown_block(model, full: list[Trajectory], starts: list[tuple[int, int]], horizons: tuple[int, ...],
                pred: np.ndarray, depth: np.ndarray | None, groups: np.ndarray) -> dict[str, Any]:
    """Scores at the shown size: {"size": [sH, sW], metric: {method: {horizon: value}}, "ci95": {metric: {method:
    {horizon: [upsampler - method, lo, hi]}}}. `full`: the trajectories at the shown size; pred/depth: the open loop's
    frames [R, >= max(horizons), H, W(, 3)] for rollouts `starts` (trajectory, start tick)."""
    size = full[0].rgb.shape[1:3]
    H, W = pred.shape[2:4]
    out: dict[str, Any] = {"size": list(size)}
    cis: dict[str, Any] = {}
    for h in horizons:
        truth = np.stack([full[i].rgb[t0 + h] for i, t0 in starts])
        frames = pred[:, h - 1]
        # area_resize to a larger size is the bilinear upsampling (half-pixel centres, as a GL texture's linear filter)
        cand = {"upsampler": upsample_frames(model, frames, None if depth is None else depth[:, h - 1]),
                "bilinear": area_resize(frames, size),
                "truth_bilinear": area_resize(area_resize(truth, (H, W)), size)}
        scores = {m: score_frames(f, truth) for m, f in cand.items()}
        for m, s in scores.items():
            for metric, v in summarize(s).items():
                if metric in ("psnr", "lpips", "sharpness"):
                    out.setdefault(metric, {}).setdefault(m, {})[str(h)] = v
        for m in METHODS[1:]:
            for metric, v in ci95(scores["upsampler"], scores[m], groups).items():
                if metric in ("psnr", "lpips", "sharpness"):
                    cis.setdefault(metric, {}).setdefault(m, {})[str(h)] = v
    out["ci95"] = cis
    return out
