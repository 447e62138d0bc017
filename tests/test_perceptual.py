"""The ST-LPIPS distance (worldmodel.evaluation.perceptual): zero for identical frames, growing with blur,
tolerant of a 1-pixel shift, equal to the original implementation on fixed images, strict about its inputs.
Needs the weights of `stlpips-pytorch==0.0.2`, a dependency (install.sh installs it)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from worldmodel.evaluation import perceptual
from worldmodel.evaluation.perceptual import perceptual_distance

# Golden values, computed with the ORIGINAL implementation: stlpips_pytorch 0.0.2's
# LPIPS(net='alex', variant='shift_tolerant') (version 0.1, inputs given in [0, 1] with normalize=True),
# on the images made by `textured(64)`, `rings(64)` and `gaussian_blur(textured(64), 1.5)` below.
GOLDEN_TEXTURED_RINGS = 0.6772838830947876
GOLDEN_TEXTURED_BLUR15 = 0.3551306128501892


@pytest.fixture(autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def textured(size: int = 64) -> np.ndarray:
    """A deterministic textured frame: a 4-pixel colour checkerboard, a sine ramp and hash noise."""
    y, x = np.mgrid[0:size, 0:size].astype(np.int64)
    check = ((x // 4 + y // 4) % 2) * 120
    noise = (x * 73 + y * 151 + x * y * 7) * 2654435761 % 61  # integer hash, 0..60
    img = np.stack(
        [
            60 + check + noise,
            40 + 0.5 * check + 80 * (1 + np.sin(x / 5.0)) / 2 + noise // 2,
            200 - check + (noise * 3) % 50 - 25,
        ],
        axis=-1,
    )
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def rings(size: int = 64) -> np.ndarray:
    """A second deterministic frame, unlike `textured`: coloured concentric rings."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    r = np.hypot(x - size / 3, y - size / 2)
    img = np.stack([128 + 120 * np.sin(r / 2.0), 128 + 100 * np.cos(r / 3.0), 255 * (x / (size - 1))], axis=-1)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an [H, W, 3] uint8 frame (reflect borders), rounded back to uint8."""
    radius = max(1, int(np.ceil(3 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    out = img.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect")
        out = sum(w * np.take(padded, np.arange(i, i + img.shape[axis]), axis=axis) for i, w in enumerate(k))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def test_identical_frames_are_zero():
    a = np.stack([textured(64), rings(64), np.zeros((64, 64, 3), np.uint8)])
    d = perceptual_distance(a, a.copy())
    assert d.shape == (3,) and d.dtype == np.float64
    assert np.all(np.abs(d) < 1e-7)


def test_golden_values_of_the_original():
    a = np.stack([textured(64), textured(64)])
    b = np.stack([rings(64), gaussian_blur(textured(64), 1.5)])
    d = perceptual_distance(a, b)
    assert d == pytest.approx([GOLDEN_TEXTURED_RINGS, GOLDEN_TEXTURED_BLUR15], abs=1e-4)


def test_single_pair_gives_a_scalar_and_symmetric_batches_agree():
    a, b = textured(64), rings(64)
    d = perceptual_distance(a, b)
    assert d.shape == () and d.dtype == np.float64
    assert float(d) == pytest.approx(GOLDEN_TEXTURED_RINGS, abs=1e-4)
    # Batching changes nothing: 5 pairs in batches of 2 equal one pass.
    stack_a = np.stack([a, b, a, gaussian_blur(a, 1.0), b])
    stack_b = np.stack([b, a, gaussian_blur(a, 2.0), a, b])
    np.testing.assert_allclose(perceptual_distance(stack_a, stack_b, batch=2), perceptual_distance(stack_a, stack_b), atol=1e-6)


def test_distance_grows_with_blur():
    img = textured(64)
    sigmas = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0]
    blurred = np.stack([gaussian_blur(img, s) for s in sigmas])
    d = perceptual_distance(np.repeat(img[None], len(sigmas), axis=0), blurred)
    assert d[0] > 0
    assert np.all(np.diff(d) > 0), d


def test_one_pixel_shift_scores_below_a_blur_that_loses_the_texture():
    img = textured(64)
    shifted = np.roll(img, 1, axis=1)
    blurred = gaussian_blur(img, 2.0)  # the 4-pixel checkerboard is washed out
    d_shift, d_blur = perceptual_distance(np.stack([img, img]), np.stack([shifted, blurred]))
    assert 0 < d_shift < d_blur / 2, (d_shift, d_blur)


def test_other_sizes_are_measured_as_they_are():
    a, b = textured(128)[:96, :80], rings(128)[:96, :80]
    assert perceptual_distance(a, b) > 0
    small = textured(64)[:24, :24]
    assert perceptual_distance(small, small) == 0


@pytest.mark.parametrize(
    "a, b, words",
    [
        (np.zeros((2, 64, 64, 3), np.float32), np.zeros((2, 64, 64, 3), np.float32), "uint8"),
        (np.zeros((2, 64, 64, 3), np.uint8), np.zeros((2, 64, 64, 3), np.float64), "uint8"),
        (np.zeros((2, 64, 64), np.uint8), np.zeros((2, 64, 64), np.uint8), "[N, H, W, 3]"),
        (np.zeros((2, 3, 64, 64), np.uint8), np.zeros((2, 3, 64, 64), np.uint8), "[N, H, W, 3]"),
        (np.zeros((64, 3), np.uint8), np.zeros((64, 3), np.uint8), "[N, H, W, 3]"),
        (np.zeros((2, 64, 64, 3), np.uint8), np.zeros((3, 64, 64, 3), np.uint8), "same shape"),
        (np.zeros((64, 64, 3), np.uint8), np.zeros((1, 64, 64, 3), np.uint8), "same shape"),
        (np.zeros((1, 16, 16, 3), np.uint8), np.zeros((1, 16, 16, 3), np.uint8), "at least 21x21"),
        ([[0]], np.zeros((64, 64, 3), np.uint8), "numpy array"),
    ],
)
def test_bad_inputs_raise_value_error(a, b, words):
    with pytest.raises(ValueError, match=f"perceptual_distance: .*{re.escape(words)}"):
        perceptual_distance(a, b)


def test_bad_batch_raises_value_error():
    a = textured(64)
    with pytest.raises(ValueError, match="batch must be a positive int"):
        perceptual_distance(a, a, batch=0)


def test_missing_weights_name_the_fix(monkeypatch):
    monkeypatch.setattr(perceptual, "PACKAGE", "stlpips_pytorch_not_installed_here")
    with pytest.raises(ValueError, match=r"not installed: pip install stlpips-pytorch==0\.0\.2 \(bash install\.sh does it\)"):
        perceptual.weights_path()
