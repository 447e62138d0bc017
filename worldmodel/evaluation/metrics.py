"""What is measured on frames: the project's one PSNR, SSIM, the perceptual distance, sharpness, brightness and
contrast, and paired bootstrap intervals.

Every metric here is computed per image first (`score_frames`), so that a set of frames can be summarised
(`summarize`) over any subset of its images: all of them for the report, a resample of whole trajectories for
the bootstrap. Sharpness and contrast are ratios of sums over the set (not means of per-image ratios, which a
few nearly flat truth frames would dominate):

- sharpness     = sum |grad dream| / sum |grad truth|  (finite differences of every RGB channel, both axes):
                  1 is as sharp as the truth, below 1 blur, above 1 noise or invented detail;
- sharpness_hf  = the same with the luma spectrum's energy above half the Nyquist frequency (|f| > 0.25
                  cycles/pixel): the fine texture alone, which edges between large flat areas do not hide;
- brightness_drift = mean luma of the dream - mean luma of the truth (0-255 units);
- contrast_ratio   = sum of per-image luma std of the dream / the same of the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from engine.image import PSNR_CAP_DB, psnr  # noqa: F401  (the project's one PSNR, re-exported)

_LUMA = np.array([0.299, 0.587, 0.114])


def _check_pair(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape or a.ndim < 3 or a.shape[-1] != 3 or a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"{what}: expected two uint8 [..., H, W, 3] stacks of one shape, got "
                         f"{a.dtype}{list(a.shape)} and {b.dtype}{list(b.shape)}")


def ssim_map(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """The SSIM map of `ssim` (float64 [N, 3, H - 10, W - 10], one value per window inside the image and channel). The
    11x11 Gaussian window is separable: the five local moments are blurred together, rows then columns."""
    _check_pair(a, b, "ssim")
    if min(a.shape[-3:-1]) < 11:
        raise ValueError(f"ssim: images must be at least 11x11 (its window), got {a.shape[-3]}x{a.shape[-2]}")
    x = torch.from_numpy(a.reshape(-1, *a.shape[-3:])).double().permute(0, 3, 1, 2) / 255.0
    y = torch.from_numpy(b.reshape(-1, *b.shape[-3:])).double().permute(0, 3, 1, 2) / 255.0
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5.0) ** 2) / (2 * 1.5**2))
    g = g / g.sum()
    moments = torch.cat([x, y, x * x, y * y, x * y], 1)  # [N, 15, H, W]
    c = moments.shape[1]
    blurred = F.conv2d(F.conv2d(moments, g.view(1, 1, 1, 11).expand(c, 1, 1, 11).contiguous(), groups=c),
                       g.view(1, 1, 11, 1).expand(c, 1, 11, 1).contiguous(), groups=c)
    mx, my, xx, yy, xy = blurred.split(3, dim=1)
    sxx, syy, sxy = xx - mx**2, yy - my**2, xy - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, s: torch.Tensor | None = None) -> np.ndarray:
    """SSIM per image (Wang et al. 2004: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, population
    covariances, on each RGB channel; the map averaged where the window lies inside the image, as
    scikit-image's structural_similarity with gaussian_weights=True does) for uint8 [N, H, W, 3] of >= 11x11.
    `s`: the pair's `ssim_map`, when it is already computed (one map serves every region of a pair)."""
    if s is None:
        s = ssim_map(a, b)
    if mask is None:
        return s.mean(dim=(1, 2, 3)).numpy().reshape(a.shape[:-3])
    # a region: the map's windows whose centre lies in the mask (NaN for an image with none)
    m = torch.from_numpy(np.asarray(mask, np.float64).reshape(-1, *a.shape[-3:-1]))[:, None, 5:-5, 5:-5]
    with np.errstate(invalid="ignore"):
        return ((s.mean(dim=1, keepdim=True) * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3))).numpy().reshape(a.shape[:-3])


def gradient_sum(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """sum |d/dx| + |d/dy| over every RGB channel, per image of a uint8 [N, H, W, 3] stack; with a mask [N, H, W],
    only the differences between two pixels of the region."""
    f = x.astype(np.float64)
    dx, dy = np.abs(np.diff(f, axis=-2)).sum(-1), np.abs(np.diff(f, axis=-3)).sum(-1)
    if mask is not None:
        m = np.asarray(mask, bool)
        dx, dy = dx * (m[..., :, 1:] & m[..., :, :-1]), dy * (m[..., 1:, :] & m[..., :-1, :])
    return dx.sum(axis=(-2, -1)) + dy.sum(axis=(-2, -1))


def luma(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) @ _LUMA


def highfreq_energy(x: np.ndarray, cutoff: float = 0.25) -> np.ndarray:
    """Spectral energy of the luma above `cutoff` cycles/pixel (radially; Nyquist is 0.5), per image."""
    y = luma(x)
    y = y - y.mean(axis=(-2, -1), keepdims=True)
    power = np.abs(np.fft.fft2(y)) ** 2
    fy = np.fft.fftfreq(y.shape[-2])[:, None]
    fx = np.fft.fftfreq(y.shape[-1])[None, :]
    return (power * (np.hypot(fy, fx) > cutoff)).sum(axis=(-2, -1)) / y[0].size


@dataclass
class FrameScores:
    """Per-image measurements of dreamed frames against the truth (every array [N])."""

    psnr: np.ndarray
    ssim: np.ndarray
    lpips: np.ndarray
    grad: np.ndarray  # gradient_sum of the dream
    grad_truth: np.ndarray
    hf: np.ndarray  # highfreq_energy of the dream
    hf_truth: np.ndarray
    luma_mean: np.ndarray
    luma_mean_truth: np.ndarray
    luma_std: np.ndarray
    luma_std_truth: np.ndarray

    def __len__(self) -> int:
        return len(self.psnr)

    def take(self, idx: np.ndarray) -> FrameScores:
        return FrameScores(*(getattr(self, f.name)[idx] for f in fields(self)))

    @staticmethod
    def concat(parts: list[FrameScores]) -> FrameScores:
        return FrameScores(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(FrameScores)))

    def to_json(self) -> dict[str, list[float]]:
        return {f.name: [float(v) for v in getattr(self, f.name)] for f in fields(self)}

    @staticmethod
    def from_json(d: dict[str, list[float]]) -> FrameScores:
        return FrameScores(*(np.asarray(d[f.name], np.float64) for f in fields(FrameScores)))


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """PSNR (dB, capped like `psnr`) per image over the pixels of a region mask [N, H, W]; NaN for an empty region."""
    m = np.asarray(mask, np.float64)
    err = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mse = (err * m).sum(axis=(-2, -1)) / m.sum(axis=(-2, -1))
        return np.where(np.isnan(mse), np.nan, np.minimum(10 * np.log10(255.0**2 / mse), PSNR_CAP_DB))


def _masked_luma(y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of luma [N, H, W] over a region (NaN where it is empty)."""
    m = np.asarray(mask, np.float64)
    with np.errstate(invalid="ignore"):
        mean = (y * m).sum(axis=(-2, -1)) / m.sum(axis=(-2, -1))
        var = (((y - mean[..., None, None]) ** 2) * m).sum(axis=(-2, -1)) / m.sum(axis=(-2, -1))
    return mean, np.sqrt(var)


def score_frames(pred: np.ndarray, truth: np.ndarray, perceptual: bool = True,
                 mask: np.ndarray | None = None, lpips: np.ndarray | None = None,
                 s_map: torch.Tensor | None = None) -> FrameScores:
    """Every per-image measurement of uint8 [N, H, W, 3] dreamed frames against the truth.
    `perceptual=False` skips the ST-LPIPS network (its column is then NaN); `lpips` [N] gives that column ready.
    `mask` bool [N, H, W]: every measurement over that region of each image only (PSNR on its pixels, SSIM on the
    windows centred in it, ST-LPIPS on its share of each layer's map, sharpness on the differences inside it; the
    fine-texture spectrum has no region and is NaN); an image whose region is empty scores NaN (`summarize` skips).
    `s_map`: the pair's ssim_map when it is already computed."""
    _check_pair(pred, truth, "score_frames")
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != pred.shape[:-1]:
            raise ValueError(f"score_frames: mask must be [N, H, W] = {list(pred.shape[:-1])}, got {list(mask.shape)}")
    if lpips is not None:
        lp = np.asarray(lpips, np.float64).reshape(len(pred))
    elif perceptual:
        from worldmodel.evaluation.perceptual import perceptual_distance

        lp = np.asarray(perceptual_distance(pred, truth, masks={"r": mask})["r"], np.float64).reshape(len(pred))
    else:
        lp = np.full(len(pred), np.nan)
    lp_, lt = luma(pred), luma(truth)
    if mask is None:
        return FrameScores(psnr=psnr(pred, truth), ssim=ssim(pred, truth, s=s_map), lpips=lp,
                           grad=gradient_sum(pred), grad_truth=gradient_sum(truth),
                           hf=highfreq_energy(pred), hf_truth=highfreq_energy(truth),
                           luma_mean=lp_.mean(axis=(-2, -1)), luma_mean_truth=lt.mean(axis=(-2, -1)),
                           luma_std=lp_.std(axis=(-2, -1)), luma_std_truth=lt.std(axis=(-2, -1)))
    empty = ~mask.any(axis=(-2, -1))
    (pm, ps), (tm, ts) = _masked_luma(lp_, mask), _masked_luma(lt, mask)
    nan = np.full(len(pred), np.nan)
    grad, grad_t = gradient_sum(pred, mask), gradient_sum(truth, mask)
    return FrameScores(psnr=masked_psnr(pred, truth, mask), ssim=ssim(pred, truth, mask, s_map), lpips=lp,
                       grad=np.where(empty, np.nan, grad), grad_truth=np.where(empty, np.nan, grad_t),
                       hf=nan, hf_truth=nan.copy(), luma_mean=pm, luma_mean_truth=tm, luma_std=ps, luma_std_truth=ts)


def score_regions(pred: np.ndarray, truth: np.ndarray, seen: np.ndarray) -> dict[str, FrameScores]:
    """`score_frames` of the whole frame ("all"), of the region `seen` [N, H, W] bool ("seen") and of the rest
    ("unseen"), with one pass of the perceptual network for all three."""
    from worldmodel.evaluation.perceptual import perceptual_distance

    _check_pair(pred, truth, "score_regions")
    seen = np.asarray(seen, bool)
    regions = {"all": None, "seen": seen, "unseen": ~seen}
    lp = perceptual_distance(pred, truth, masks=regions)
    s_map = ssim_map(pred, truth)
    return {name: score_frames(pred, truth, mask=m, lpips=lp[name], s_map=s_map) for name, m in regions.items()}


def _mean(x: np.ndarray) -> float:
    """The mean over the finite entries (images whose region was empty are NaN); NaN when there are none."""
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def _ratio(num: np.ndarray, den: np.ndarray) -> float:
    keep = ~(np.isnan(num) | np.isnan(den))
    d = float(den[keep].sum())
    return float(num[keep].sum()) / d if d > 0 else float("nan")


# The summary statistics of a set of frames, each a function of FrameScores.
SUMMARIES: dict[str, Callable[[FrameScores], float]] = {
    "psnr": lambda s: _mean(s.psnr),
    "ssim": lambda s: _mean(s.ssim),
    "lpips": lambda s: _mean(s.lpips),
    "sharpness": lambda s: _ratio(s.grad, s.grad_truth),
    "sharpness_hf": lambda s: _ratio(s.hf, s.hf_truth),
    "brightness_drift": lambda s: _mean(s.luma_mean - s.luma_mean_truth),
    "contrast_ratio": lambda s: _ratio(s.luma_std, s.luma_std_truth),
}


def summarize(scores: FrameScores) -> dict[str, float]:
    return {k: f(scores) for k, f in SUMMARIES.items()}


def paired_bootstrap(a: FrameScores, b: FrameScores, groups: np.ndarray, metric: str, n: int = 2000,
                     seed: int = 0) -> tuple[float, float, float]:
    """(difference, low, high): `metric` of a minus that of b, with a 95% interval from resampling whole
    groups (trajectories) with replacement; a and b score the same frames in the same order (paired)."""
    if len(a) != len(b) or len(groups) != len(a):
        raise ValueError(f"paired_bootstrap: {len(a)} and {len(b)} scores with {len(groups)} group ids")
    stat = SUMMARIES[metric]
    uniq = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in uniq]
    rng = np.random.default_rng(seed)
    diffs = np.empty(n)
    for i in range(n):
        idx = np.concatenate([members[j] for j in rng.integers(0, len(uniq), len(uniq))])
        diffs[i] = stat(a.take(idx)) - stat(b.take(idx))
    lo, hi = np.nanpercentile(diffs, [2.5, 97.5])
    return stat(a) - stat(b), float(lo), float(hi)


CI_METRICS = ("psnr", "ssim", "lpips", "sharpness")  # the metrics reports give paired intervals for


def ci95(a: FrameScores, b: FrameScores, groups: np.ndarray) -> dict[str, list[float]]:
    """a - b with its paired bootstrap 95% interval over `groups` (paired_bootstrap), per CI_METRICS metric."""
    return {m: [round(v, 4) for v in paired_bootstrap(a, b, groups, m)] for m in CI_METRICS}
