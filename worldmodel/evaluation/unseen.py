"""Seen and unseen apart, and the unseen judged by realism, not by a truth no context can know.

- Seen cells: the latent cells (the autoencoder's downsample, 4x4 pixels for the shipped model) of a frame whose
  mean coverage by the open loop's real context frames, lifted into the splat memory and rendered at the tick's true
  camera (baselines.seen_views), reaches SEEN_CELL. There the truth is knowable and every per-frame score is
  truth-matching. The rest is unseen: what any dream must invent. (A cell that the dream's own memory covers with
  dreamed Gaussians is still unseen: what it holds there is the dream's invention, not a view of the truth.)
- Realism per horizon band (`BANDS`, and the 1,000-tick walk's LONG_BAND): realism.kid and realism.frechet of each
  method's frames against a reference set (true frames of other walks on the same levels: `reference_set`), whole
  frame and unseen cells alone (the reference frames given the evaluated frames' unseen masks in turn), beside the
  floor: the evaluated walks' own true frames at the same ticks against the same reference (a perfect dream).
- Depth plausibility per band: the depth of the unseen cells against the reference's depth at the same cells
  (realism.wasserstein1, metres, both clipped at the autoencoder's max depth) and the share nearer than NEAR_M.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from worldmodel.evaluation.realism import KID_SCALE, features, frechet, kid, wasserstein1

BANDS = ((1, 8, 1), (9, 32, 2), (33, 128, 4))  # (first tick, last tick, every n-th tick scored)
LONG_BAND = (129, 1000, 8)
REFERENCE_FROM, REFERENCE_STRIDE = 8, 2  # reference frames: every 2nd tick of each reference walk from tick 8
SEEN_CELL = 0.5  # a latent cell is seen when the real context covers this much of it on average
NEAR_M = 1.0


def band_name(band: tuple[int, int, int]) -> str:
    return f"{band[0]}-{band[1]}"


def band_ticks(band: tuple[int, int, int], last: int) -> list[int]:
    """The ticks of a band scored, up to `last` (empty when the band starts after it)."""
    return list(range(band[0], min(band[1], last) + 1, band[2]))


def seen_cells(alpha: np.ndarray, cell: int) -> np.ndarray:
    """Coverage maps float [N, H, W] -> bool [N, H, W]: True on the pixels of each latent cell (cell x cell pixels)
    whose mean coverage reaches SEEN_CELL."""
    N, H, W = alpha.shape
    if H % cell or W % cell:
        raise ValueError(f"seen_cells: frames of {H}x{W} do not split into {cell}x{cell} cells")
    pooled = alpha.reshape(N, H // cell, cell, W // cell, cell).mean(axis=(2, 4)) >= SEEN_CELL
    return pooled.repeat(cell, axis=1).repeat(cell, axis=2)


@dataclass
class FrameSet:
    """Frames to judge: uint8 [N, H, W, 3], the group (walk) of each [N], and their depth [N, H, W] metres or None."""

    frames: np.ndarray
    groups: np.ndarray
    depth: np.ndarray | None = None


REFERENCE_BLOCK = 200  # ticks (10 s) of one reference walk that form one group


def reference_set(trajs: list, start: int = REFERENCE_FROM, stride: int = REFERENCE_STRIDE,
                  group_offset: int = 0, blocks: bool = True) -> FrameSet:
    """True frames of trajectories (evaluation.trajectories.Trajectory) as a reference: every `stride`-th tick from
    `start`. Groups: each REFERENCE_BLOCK ticks of a trajectory (`blocks`; so that a reference of one or two long
    walks still has independent groups), or each trajectory (numbered from `group_offset`)."""
    ticks = [np.arange(min(start, len(tr.rgb) - 1), len(tr.rgb), stride) for tr in trajs]
    groups = [group_offset + (i * 1000 + t // REFERENCE_BLOCK if blocks else np.full(len(t), i))
              for i, t in enumerate(ticks)]
    return FrameSet(np.concatenate([tr.rgb[t] for tr, t in zip(trajs, ticks)]), np.concatenate(groups),
                    np.concatenate([tr.depth[t] for tr, t in zip(trajs, ticks)]))


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {"value": round(d["value"], 4) if np.isfinite(d["value"]) else None,
            "ci95": [round(v, 4) if np.isfinite(v) else None for v in d["ci95"]], "n": d["n"], "m": d["m"]}


def realism_scores(sets: dict[str, FrameSet], reference: FrameSet, unseen: np.ndarray | None = None,
                   exclude_cross: bool = False, max_depth: float | None = None, seed: int = 0) -> dict[str, Any]:
    """KID (x 1000, with its 95% interval) and FD of every set against the reference, whole frame ("kid", "fd") and,
    given `unseen` bool [N, H, W] (one mask per image of every set: they are the same rollout ticks), on the unseen
    cells alone ("unseen_kid", "unseen_fd"; the reference's images take those masks in turn); the depth of the unseen
    cells (the whole frame without masks) of the sets that have depth against the reference's ("depth")."""
    masks: dict[str, np.ndarray | None] = {"all": None}
    ref_masks: dict[str, np.ndarray | None] = {"all": None}
    if unseen is not None:
        masks["unseen"] = unseen
        ref_masks["unseen"] = unseen[np.arange(len(reference.frames)) % len(unseen)]
    ref = features(reference.frames, ref_masks)
    out: dict[str, Any] = {}
    for name, fs in sets.items():
        f = features(fs.frames, masks)
        for region in masks:
            prefix = "" if region == "all" else "unseen_"
            out.setdefault(prefix + "kid", {})[name] = _rounded(kid(f[region], ref[region], fs.groups, reference.groups,
                                                                   seed=seed, exclude_cross=exclude_cross))
            fd = frechet(f[region], ref[region])
            out.setdefault(prefix + "fd", {})[name] = round(fd, 4) if np.isfinite(fd) else None
    if max_depth is not None and reference.depth is not None:
        ref_region = ref_masks.get("unseen")
        ref_depth = np.clip(reference.depth[ref_region] if ref_region is not None else reference.depth, 0, max_depth)
        depth: dict[str, Any] = {"w1_m": {}, "near_share": {"reference": float(np.mean(ref_depth < NEAR_M))}}
        for name, fs in sets.items():
            if fs.depth is None:
                continue
            d = np.clip(fs.depth[unseen] if unseen is not None else fs.depth, 0, max_depth)
            w1 = wasserstein1(d, ref_depth)
            depth["w1_m"][name] = round(w1, 4) if np.isfinite(w1) else None
            depth["near_share"][name] = round(float(np.mean(d < NEAR_M)), 4) if d.size else None
        out["depth"] = depth
    return out


def realism_setup(reference: str, exclude_cross: bool, max_depth: float | None) -> dict[str, Any]:
    """What the realism and depth blocks measured, for the report."""
    from worldmodel.evaluation.realism import FEATURE_DIM, FEATURE_LAYERS

    return {"units": f"KID x {KID_SCALE:g} (unbiased, cubic polynomial kernel), FD (Frechet distance)",
            "features": f"ST-LPIPS AlexNet trunk {', '.join(FEATURE_LAYERS)}: unit-normalised along channels, "
                        f"spatially averaged (over the region for unseen_*), concatenated ({FEATURE_DIM})",
            "reference": reference, "pairs_left_out": "an image with itself"
                                                      + ("; a dream with the truth of its own episode" if exclude_cross else ""),
            "interval": "95%, resampling whole walks of both sets", "seen_cell": SEEN_CELL,
            "depth": (f"Wasserstein-1 (m) of the unseen cells' depth against the reference's at the same cells, both "
                      f"clipped at {max_depth:g} m; near_share: depth < {NEAR_M:g} m") if max_depth else None}


def realism_block(bands: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per band realism_scores -> {kid, fd, unseen_kid, unseen_fd: {method: {band: value}}}."""
    out: dict[str, Any] = {}
    for band, scores in bands.items():
        for key in ("kid", "fd", "unseen_kid", "unseen_fd"):
            for method, value in scores.get(key, {}).items():
                out.setdefault(key, {}).setdefault(method, {})[band] = value
    return out


def depth_block(bands: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per band realism_scores' depth -> {w1_m, near_share: {method: {band: value}}}."""
    out: dict[str, Any] = {}
    for band, scores in bands.items():
        for key, per_method in scores.get("depth", {}).items():
            for method, value in per_method.items():
                out.setdefault(key, {}).setdefault(method, {})[band] = value
    return out
