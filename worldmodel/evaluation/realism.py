"""Realism of what a dream invents, unpaired: how far the distribution of dreamed frames (or of one region of them)
is from the distribution of true frames of *other* walks on the same levels, never from the truth at the same tick.

No context knows the room behind a corner, so a dream graded against the true room learns to paint the mean of
all rooms. Graded against the distribution of true frames instead, a haze is far from every true frame and a
plausible room is near some of them. The distances, next to a floor (true frames of the evaluated walks against
the same reference, i.e. a perfect dream), and to the baselines:

- features (`features`): the shipped ST-LPIPS AlexNet trunk (worldmodel.evaluation.perceptual), its five ReLU
  layers each normalised to unit length along the channels at every position (what ST-LPIPS compares), averaged
  over the image (or over a region: the region's pixel mask area-pooled to each layer's size, as weights), and
  concatenated: 64 + 192 + 384 + 256 + 256 = 1,152 numbers per image. A region's features still see a little of
  its surroundings through the trunk's receptive field (validated in tests/test_evaluation.py and by the seen
  baseline's rows in the report: the mean frame pasted into the unseen region scores as the mean frame there);
- KID (Binkowski et al., "Demystifying MMD GANs", ICLR 2018): the unbiased estimator of the squared MMD with the
  cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, x 1000 (an image is never paired with itself). The frames of
  one walk resemble each other, so they are not independent samples: the 95% interval resamples whole groups (walks)
  of both sets, and the floor (true frames of the evaluated walks, sampled the same way) is the level to read a
  method against (`kid`);
- FD (Heusel et al., "GANs trained by a two time-scale update rule", NeurIPS 2017, the FID formula) on the same
  features: biased by the sample size, so compare it only between rows of one report (they share the sizes);
- depth: the Wasserstein-1 distance between two samples of depths (`wasserstein1`, metres) and the share nearer
  than 1 m.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

KID_SCALE = 1000.0  # KID is reported x 1000
FEATURE_LAYERS = ("relu1", "relu2", "relu3", "relu4", "relu5")  # of the ST-LPIPS AlexNet trunk
FEATURE_DIM = 64 + 192 + 384 + 256 + 256


def features(frames: np.ndarray, masks: dict[str, np.ndarray | None] | None = None,
             batch: int = 128) -> dict[str, np.ndarray]:
    """uint8 [N, H, W, 3] frames -> {region: float64 [N, FEATURE_DIM]} (module docstring) for each region of `masks`
    ({name: bool [N, H, W], or None for the whole frame}; default {"all": None}), all from one pass of the trunk.
    An image whose region is empty gets a NaN row."""
    from worldmodel.evaluation.perceptual import _check, _to_tensor, load_network

    frames = _check("frames", frames)
    masks = {"all": None} if masks is None else masks
    for name, m in masks.items():
        if m is not None and m.shape != frames.shape[:3]:
            raise ValueError(f"features: mask {name!r} must be [N, H, W] = {list(frames.shape[:3])}, got {list(m.shape)}")
    net = load_network()
    out = {name: np.empty((len(frames), FEATURE_DIM)) for name in masks}
    with torch.no_grad():
        for start in range(0, len(frames), batch):
            stop = start + batch
            layers = net.unit_features(_to_tensor(frames[start:stop]))
            for name, mask in masks.items():
                parts = []
                for f in layers:
                    if mask is None:
                        parts.append(f.double().mean(dim=(2, 3)))
                        continue
                    m = torch.from_numpy(np.ascontiguousarray(mask[start:stop], np.float64))[:, None]
                    w = F.adaptive_avg_pool2d(m, f.shape[-2:])
                    parts.append((f.double() * w).sum(dim=(2, 3)) / w.sum(dim=(2, 3)))  # 0/0 -> NaN: empty region
                out[name][start:stop] = torch.cat(parts, 1).numpy()
    return out


def _group_sums(k: np.ndarray, ga: np.ndarray, gb: np.ndarray, ua: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """S[i, j] = sum of k over the images of group ua[i] (rows) and group ub[j] (columns)."""
    ia = (ga[:, None] == ua[None]).astype(np.float64)  # [Na, Ga]
    ib = (gb[:, None] == ub[None]).astype(np.float64)
    return ia.T @ k @ ib


def kid(x: np.ndarray, y: np.ndarray, gx: np.ndarray | None = None, gy: np.ndarray | None = None, n_boot: int = 500,
        seed: int = 0, exclude_cross: bool = False) -> dict[str, float | list[float] | int]:
    """KID x 1000 between feature sets x [N, d] and y [M, d] (module docstring), with a 95% interval from resampling
    whole groups (gx [N], gy [M]: e.g. the walk of each image; None: every image its own group) of both sets.
    `exclude_cross`: pairs of x and y from the same group are left out too (y is then the other walks' truth of
    the same recordings). Rows with NaN (an empty region) are dropped. Returns {value, ci95, n, m}."""
    gx = np.arange(len(x)) if gx is None else np.asarray(gx)
    gy = np.arange(len(x), len(x) + len(y)) if gy is None else np.asarray(gy)
    keep_x, keep_y = ~np.isnan(x).any(1), ~np.isnan(y).any(1)
    x, gx, y, gy = x[keep_x], gx[keep_x], y[keep_y], gy[keep_y]
    if len(x) < 2 or len(y) < 2:
        return {"value": float("nan"), "ci95": [float("nan"), float("nan")], "n": int(len(x)), "m": int(len(y))}
    d = x.shape[1]
    kern = lambda a, b: (a @ b.T / d + 1.0) ** 3  # noqa: E731
    ux, uy = np.unique(gx), np.unique(gy)
    kxx, kyy = kern(x, x), kern(y, y)
    sxx, syy, sxy = (_group_sums(kxx, gx, gx, ux, ux), _group_sums(kyy, gy, gy, uy, uy),
                     _group_sums(kern(x, y), gx, gy, ux, uy))
    nx = np.array([np.sum(gx == g) for g in ux], np.float64)
    ny = np.array([np.sum(gy == g) for g in uy], np.float64)
    tx = np.array([np.diag(kxx)[gx == g].sum() for g in ux])  # k(x_i, x_i) summed per group
    ty = np.array([np.diag(kyy)[gy == g].sum() for g in uy])
    same = (ux[:, None] == uy[None]).astype(np.float64) if exclude_cross else np.zeros((len(ux), len(uy)))

    def estimate(cx: np.ndarray, cy: np.ndarray) -> float:
        # cx, cy: how many times each group is drawn. Within a set every pair of two different images counts, an
        # image with itself (or with its copy in a group drawn twice) does not: the unbiased estimator.
        def within(s, c, n, t):
            pairs = (c @ n) ** 2 - (c**2) @ n
            return (c @ s @ c - (c**2) @ t) / pairs if pairs > 0 else np.nan
        cross_w = np.outer(cx * nx, cy * ny) * (1 - same)
        cross = (np.outer(cx, cy) * (1 - same) * sxy).sum() / cross_w.sum() if cross_w.sum() > 0 else np.nan
        return float(within(sxx, cx, nx, tx) + within(syy, cy, ny, ty) - 2 * cross)

    value = estimate(np.ones(len(ux)), np.ones(len(uy)))
    rng = np.random.default_rng(seed)
    boots = np.array([estimate(np.bincount(rng.integers(0, len(ux), len(ux)), minlength=len(ux)).astype(float),
                               np.bincount(rng.integers(0, len(uy), len(uy)), minlength=len(uy)).astype(float))
                      for _ in range(n_boot)])
    boots = boots[np.isfinite(boots)]
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots.size else (np.nan, np.nan)
    return {"value": value * KID_SCALE, "ci95": [float(lo) * KID_SCALE, float(hi) * KID_SCALE],
            "n": int(len(x)), "m": int(len(y))}


def frechet(x: np.ndarray, y: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to feature sets x [N, d] and y [M, d] (rows with NaN dropped):
    |mu_x - mu_y|^2 + tr(Sx + Sy - 2 (Sx^1/2 Sy Sx^1/2)^1/2), the square roots by symmetric eigendecomposition."""
    x, y = x[~np.isnan(x).any(1)], y[~np.isnan(y).any(1)]
    if len(x) < 2 or len(y) < 2:
        return float("nan")
    mx, my = x.mean(0), y.mean(0)
    sx, sy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    w, v = np.linalg.eigh(sx)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ sy @ root), 0, None)).sum()
    return float(((mx - my) ** 2).sum() + np.trace(sx) + np.trace(sy) - 2 * cross)


def wasserstein1(a: np.ndarray, b: np.ndarray, quantiles: int = 2001) -> float:
    """The Wasserstein-1 distance between two 1-D samples (the mean gap between their quantile functions, on a grid
    of `quantiles` levels); NaN when either is empty."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.size == 0 or b.size == 0:
        return float("nan")
    q = np.linspace(0, 1, quantiles)
    return float(np.abs(np.quantile(a, q) - np.quantile(b, q)).mean())
