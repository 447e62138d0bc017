"""The project's one PSNR (replay verification and the model evaluation both use it)."""

from __future__ import annotations

import numpy as np

PSNR_CAP_DB = 100.0  # identical images: PSNR is infinite; this is written instead


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """PSNR (dB) per image between uint8 [..., H, W, 3] stacks of one shape; identical images give PSNR_CAP_DB.
    A single pair of [H, W, 3] images gives a 0-d array (`float()` reads it)."""
    if a.shape != b.shape or a.ndim < 3 or a.shape[-1] != 3 or a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"psnr: expected two uint8 [..., H, W, 3] stacks of one shape, got "
                         f"{a.dtype}{list(a.shape)} and {b.dtype}{list(b.shape)}")
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=(-3, -2, -1))
    with np.errstate(divide="ignore"):
        return np.minimum(10 * np.log10(255.0**2 / mse), PSNR_CAP_DB)
