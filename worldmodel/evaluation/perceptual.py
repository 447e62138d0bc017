"""A perceptual distance between frames: shift-tolerant LPIPS (ST-LPIPS), AlexNet variant.

ST-LPIPS is from A. Ghildyal and F. Liu, "Shift-tolerant Perceptual Similarity Metric", ECCV 2022. It is
LPIPS (Zhang et al., CVPR 2018) on an AlexNet trunk rebuilt to tolerate small shifts: the first convolution
has stride 1, and every stride-2 step is a fixed [1, 2, 1] binomial blur (reflection padding 2) that
subsamples, placed after the max-pools (now stride 1) and after the first convolution, before its ReLU.
Each of the five ReLU outputs is normalised to unit length along its channels, the squared difference of
the two images' features is weighted per channel by a learned 1x1 layer, averaged over space, and the five
layer scores are summed: 0 for identical images, larger for more different ones.

The weights (trunk and linear layers, trained by the authors) ship inside the PyPI wheel
`stlpips-pytorch==0.0.2` (BSD 2-Clause licence, per the LICENSE file in its dist-info), as
`stlpips_pytorch/weights/vST0.0/alex_shift_tolerant.pth`. Nothing is downloaded at run time. The package
itself is never imported (it imports torchvision, torchsummary and IPython): we locate it with
`importlib.util.find_spec`, which does not execute it, and read only its weights file, with
`torch.load(..., weights_only=True)`; every tensor in it must be used, with the shape we expect. The
network here is our own and matches the original `LPIPS(net='alex', variant='shift_tolerant')` (version
0.1: inputs scaled to [-1, 1], then the shift/scale layer) to about 1e-6.

Frames are measured at their own size, never resized: a 64x64 frame gives a distance of 64x64 frames. The
trunk needs at least `MIN_SIZE` pixels in height and width.

    d = perceptual_distance(dreamed, truth)  # uint8 [N, H, W, 3] each -> float64 [N]
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

PACKAGE = "stlpips_pytorch"
WEIGHTS = Path("weights") / "vST0.0" / "alex_shift_tolerant.pth"
INSTALL_HINT = "pip install stlpips-pytorch==0.0.2 (bash install.sh does it)"

# Smallest height and width the trunk accepts (as the original): at 20 pixels the third blur's reflection
# padding (2) meets a 2-pixel map (20 -> 14 -> 8 -> 6 -> 4 -> 2), which cannot be padded; 21 passes.
MIN_SIZE = 21

# (out channels, in channels, kernel, padding) of AlexNet's five convolutions.
_CONVS = ((64, 3, 11, 2), (192, 64, 5, 2), (384, 192, 3, 1), (256, 384, 3, 1), (256, 256, 3, 1))
# The blurs' channel counts: after conv1 (before its ReLU), after max-pool 1, after max-pool 2.
_BLURS = (64, 64, 192)


def weights_path() -> Path:
    """Where the installed `stlpips_pytorch` keeps the AlexNet ST-LPIPS weights; ValueError if missing."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"the package {PACKAGE} (ST-LPIPS weights) is not installed: {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / WEIGHTS
        if path.is_file():
            return path
    raise ValueError(f"{PACKAGE} is installed but has no {WEIGHTS.as_posix()}: {INSTALL_HINT}")


class _BlurDown(nn.Module):
    """Anti-aliased stride-2 subsampling: reflection padding 2, then a depthwise 3x3 binomial blur."""

    def __init__(self, channels: int):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = taps[:, None] * taps[None, :]
        self.register_buffer("kernel", (kernel / kernel.sum()).expand(channels, 1, 3, 3).clone())

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.kernel, stride=2, groups=x.shape[1])


class STLPIPSAlex(nn.Module):
    """ST-LPIPS with the shift-tolerant AlexNet trunk. `forward(x, y)` takes [B, 3, H, W] floats in [-1, 1]
    and returns [B] distances. Build it with `load_network()`, which fills in the published weights."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.zeros(1, 3, 1, 1))
        self.register_buffer("scale", torch.ones(1, 3, 1, 1))
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, padding=p) for o, i, k, p in _CONVS)
        self.blurs = nn.ModuleList(_BlurDown(c) for c in _BLURS)
        # One 1x1 weight per trunk layer (no bias), stored as [1, C, 1, 1] like the file's.
        self.lins = nn.ParameterList(nn.Parameter(torch.zeros(1, o, 1, 1)) for o, _, _, _ in _CONVS)

    def features(self, x: Tensor) -> list[Tensor]:
        """The five ReLU outputs of the trunk for [B, 3, H, W] inputs already shifted and scaled."""
        c1, c2, c3, c4, c5 = self.convs
        b1, b2, b3 = self.blurs
        f1 = F.relu(b1(c1(x)))
        f2 = F.relu(c2(b2(F.max_pool2d(f1, 3, stride=1))))
        f3 = F.relu(c3(b3(F.max_pool2d(f2, 3, stride=1))))
        f4 = F.relu(c4(f3))
        f5 = F.relu(c5(f4))
        return [f1, f2, f3, f4, f5]

    def unit_features(self, x: Tensor) -> list[Tensor]:
        """The five trunk layers of [B, 3, H, W] inputs in [-1, 1], each normalised to unit length along its
        channels at every position (what the distance compares): [B, C_l, H_l, W_l] per layer."""
        return [f / (f.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
                for f in self.features((x - self.shift) / self.scale)]

    def maps(self, x: Tensor, y: Tensor) -> list[Tensor]:
        """Per layer, the channel-weighted squared difference of the unit features at every position,
        [B, H_l, W_l]: its spatial mean summed over the five layers is the distance (`forward`)."""
        return [F.conv2d((a - b).square(), w)[:, 0]
                for a, b, w in zip(self.unit_features(x), self.unit_features(y), self.lins)]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        total = x.new_zeros(x.shape[0])
        for m in self.maps(x, y):
            total = total + m.mean(dim=(1, 2))
        return total


def _file_keys() -> dict[str, str]:
    """The weights file's key for each of our state-dict keys."""
    names = {
        "shift": "scaling_layer.shift",
        "scale": "scaling_layer.scale",
        "blurs.0.kernel": "net.slice1.1.filt",
        "blurs.1.kernel": "net.slice2.4.filt",
        "blurs.2.kernel": "net.slice3.8.filt",
    }
    # Position of each convolution in the original's sliced AlexNet (slice, index in the feature list).
    for i, where in enumerate(("slice1.0", "slice2.5", "slice3.9", "slice4.11", "slice5.13")):
        names[f"convs.{i}.weight"] = f"net.{where}.weight"
        names[f"convs.{i}.bias"] = f"net.{where}.bias"
        names[f"lins.{i}"] = f"lin{i}.model.1.weight"
    return names


@functools.lru_cache(maxsize=1)
def load_network() -> STLPIPSAlex:
    """The network with the published weights, in eval mode without gradients; built once and cached."""
    path = weights_path()
    stored = torch.load(path, map_location="cpu", weights_only=True)
    names = _file_keys()
    unused = sorted(set(stored) - set(names.values()))
    absent = sorted(set(names.values()) - set(stored))
    if unused or absent:
        raise ValueError(f"{path} does not hold the expected ST-LPIPS AlexNet tensors (unexpected {unused}, missing {absent})")
    net = STLPIPSAlex()
    ours = net.state_dict()
    for key, file_key in names.items():
        if tuple(stored[file_key].shape) != tuple(ours[key].shape):
            raise ValueError(f"{path}: {file_key} has shape {tuple(stored[file_key].shape)}, expected {tuple(ours[key].shape)}")
    net.load_state_dict({key: stored[file_key].float() for key, file_key in names.items()}, strict=True)
    net.requires_grad_(False)
    return net.eval()


def _check(name: str, x: object) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise ValueError(f"perceptual_distance: {name} must be a numpy array, got {type(x).__name__}")
    if x.dtype != np.uint8:
        raise ValueError(f"perceptual_distance: {name} must be uint8 RGB (0..255), got dtype {x.dtype}")
    if x.ndim not in (3, 4) or x.shape[-1] != 3:
        raise ValueError(f"perceptual_distance: {name} must be [N, H, W, 3] or [H, W, 3], got shape {x.shape}")
    if min(x.shape[-3:-1]) < MIN_SIZE:
        raise ValueError(f"perceptual_distance: {name} frames are {x.shape[-3]}x{x.shape[-2]}; ST-LPIPS needs at least {MIN_SIZE}x{MIN_SIZE}")
    return x


def _to_tensor(frames: np.ndarray) -> Tensor:
    """uint8 [B, H, W, 3] -> float32 [B, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.array(frames, copy=True)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def masked_mean(maps: list[Tensor], mask: Tensor | None) -> Tensor:
    """The distance from per-layer maps (`STLPIPSAlex.maps`) over a region: each layer's map averaged where the
    region lies (the pixel mask [B, H, W] in {0, 1} area-pooled to the layer's size, as weights), summed over the
    layers. mask None: the whole frame (= `forward`). An image whose region is empty gets NaN."""
    total = maps[0].new_zeros(maps[0].shape[0], dtype=torch.float64)
    for m in maps:
        if mask is None:
            total = total + m.double().mean(dim=(1, 2))
            continue
        w = F.adaptive_avg_pool2d(mask[:, None].double(), m.shape[-2:])[:, 0]
        total = total + (m.double() * w).sum(dim=(1, 2)) / w.sum(dim=(1, 2))  # 0/0 -> NaN: an empty region
    return total


def perceptual_distance(a: np.ndarray, b: np.ndarray, batch: int = 256,
                        masks: dict[str, np.ndarray | None] | None = None) -> np.ndarray | dict[str, np.ndarray]:
    """ST-LPIPS (AlexNet) distance between paired uint8 RGB frames, at their own size.

    `a` and `b`: uint8 [N, H, W, 3] stacks of the same shape -> float64 [N], one distance per pair (0 for
    identical frames, higher for more different ones). A single pair of [H, W, 3] frames gives a 0-d array
    (shape []; `float(d)` reads it). Pairs are run `batch` at a time on the CPU. ValueError for a non-uint8
    array, a wrong or mismatched shape, frames smaller than MIN_SIZE, or missing weights.

    `masks` {name: bool [N, H, W] or None}: the distance over each region instead (`masked_mean`; None is the
    whole frame), all read off one pass of the network: returns {name: float64 [N]}.
    """
    a, b = _check("a", a), _check("b", b)
    if a.shape != b.shape:
        raise ValueError(f"perceptual_distance: a and b must have the same shape, got {a.shape} and {b.shape}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"perceptual_distance: batch must be a positive int, got {batch!r}")
    single = a.ndim == 3
    if single:
        a, b = a[None], b[None]
    regions = {None: None} if masks is None else masks
    for name, m in regions.items():
        if m is not None and (m.shape != a.shape[:3]):
            raise ValueError(f"perceptual_distance: mask {name!r} must be [N, H, W] = {list(a.shape[:3])}, "
                             f"got {list(m.shape)}")
    net = load_network()
    out = {name: np.empty(a.shape[0], dtype=np.float64) for name in regions}
    with torch.no_grad():
        for start in range(0, a.shape[0], int(batch)):
            stop = start + int(batch)
            maps = net.maps(_to_tensor(a[start:stop]), _to_tensor(b[start:stop]))
            for name, m in regions.items():  # one trunk pass, every region read off the same maps
                sub = None if m is None else torch.from_numpy(np.ascontiguousarray(m[start:stop], np.float64))
                out[name][start:stop] = masked_mean(maps, sub).numpy()
    if masks is not None:
        return out
    return out[None].reshape(()) if single else out[None]
