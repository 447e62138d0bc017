"""A fixed-capacity set of 3D Gaussians in gsplat's conventions, as a struct of numpy arrays.

gsplat's `rasterization()` takes means [N, 3], quats [N, 4] (w, x, y, z; it normalises them), scales [N, 3]
(linear standard deviations in metres, not logs), opacities [N] in [0, 1] and colors [N, 3] in [0, 1]. We hold
exactly those, plus the scene memory's bookkeeping (ticks and the dynamic flag), in arrays allocated once at
`capacity`: the memory budget is a hard bound on memory use, and appending never reallocates.

Only the prefix [0, len(g)) is live; `compact(keep)` drops rows in place and keeps the survivors' order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The arrays that describe the Gaussians (per row), with their trailing shape and dtype.
FIELDS: dict[str, tuple[tuple[int, ...], type]] = {
    "means": ((3,), np.float32),
    "quats": ((4,), np.float32),  # w, x, y, z
    "scales": ((3,), np.float32),  # linear sigma per local axis (m)
    "opacities": ((), np.float32),  # [0, 1]
    "colors": ((3,), np.float32),  # RGB [0, 1]
    "created_tick": ((), np.int64),
    "confirmed_tick": ((), np.int64),  # last tick an observation agreed with this Gaussian
    "dynamic": ((), np.bool_),  # came from a pixel of something that moves on its own: short-lived
    "trust": ((), np.float32),  # (0, 1]: how much the frame it came from is believed (1: a real observation)
}


def largest_scale(scales: np.ndarray) -> np.ndarray:
    """Each row's largest sigma: scales [N, 3] -> [N]. The same numbers as scales.max(1), ~15x faster (numpy reduces
    a 3-wide inner axis slowly: 0.84 ms against 0.05 for 30k rows, in every render's frustum test)."""
    return np.maximum(np.maximum(scales[:, 0], scales[:, 1]), scales[:, 2])


@dataclass
class Gaussians:
    """Struct of arrays, each [capacity, ...]; rows [0, count) are live.

    means [C, 3] f32, quats [C, 4] f32 (wxyz), scales [C, 3] f32 (linear), opacities [C] f32, colors [C, 3] f32,
    created_tick [C] i64, confirmed_tick [C] i64, dynamic [C] bool, trust [C] f32.
    """

    means: np.ndarray
    quats: np.ndarray
    scales: np.ndarray
    opacities: np.ndarray
    colors: np.ndarray
    created_tick: np.ndarray
    confirmed_tick: np.ndarray
    dynamic: np.ndarray
    trust: np.ndarray
    count: int = 0

    @classmethod
    def empty(cls, capacity: int) -> "Gaussians":
        """Allocate room for `capacity` Gaussians (none live)."""
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1 (got {capacity})")
        arrays = {name: np.zeros((capacity, *shape), dtype) for name, (shape, dtype) in FIELDS.items()}
        arrays["quats"][:, 0] = 1.0  # identity rotation, so unused rows are still valid Gaussians
        arrays["trust"][:] = 1.0
        return cls(**arrays, count=0)

    @property
    def capacity(self) -> int:
        return int(self.means.shape[0])

    def __len__(self) -> int:
        return self.count

    def live(self, name: str) -> np.ndarray:
        """The live rows of one field (a view, not a copy): e.g. `g.live("means")` is [len(g), 3]."""
        return getattr(self, name)[: self.count]

    def append(self, means: np.ndarray, quats: np.ndarray, scales: np.ndarray, opacities: np.ndarray,
               colors: np.ndarray, tick: int, dynamic: np.ndarray | bool = False, trust: float = 1.0) -> int:
        """Add M Gaussians (means [M, 3], quats [M, 4], scales [M, 3], opacities [M], colors [M, 3]).

        created_tick = confirmed_tick = tick; all get the same trust. Raises ValueError if they do not fit: the
        caller prunes first. Returns the new count.
        """
        m = int(means.shape[0])
        if self.count + m > self.capacity:
            raise ValueError(f"cannot add {m} Gaussians to {self.count} with capacity {self.capacity}; prune first")
        s = slice(self.count, self.count + m)
        self.means[s] = means
        self.quats[s] = quats
        self.scales[s] = scales
        self.opacities[s] = opacities
        self.colors[s] = colors
        self.created_tick[s] = tick
        self.confirmed_tick[s] = tick
        self.dynamic[s] = dynamic
        self.trust[s] = trust
        self.count += m
        return self.count

    def compact(self, keep: np.ndarray) -> int:
        """Keep the live rows where `keep` [len(self)] bool is True, in order. Returns how many were removed."""
        if keep.shape != (self.count,):
            raise ValueError(f"keep mask has shape {keep.shape}, expected ({self.count},)")
        idx = np.flatnonzero(keep)
        removed = self.count - idx.size
        if removed == 0:
            return 0
        for name in FIELDS:
            arr = getattr(self, name)
            # np.take copies first, so overlapping rows are safe; it is ~4x faster than arr[idx] on these shapes
            arr[: idx.size] = np.take(arr, idx, axis=0)
        self.count = int(idx.size)
        return removed

    def clear(self) -> None:
        """Drop every Gaussian (the arrays stay allocated)."""
        self.count = 0

    def state_dict(self) -> dict[str, np.ndarray]:
        """The live rows as plain numpy arrays (copies), one entry per field."""
        return {name: self.live(name).copy() for name in FIELDS}

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray], capacity: int | None = None) -> "Gaussians":
        """Inverse of `state_dict`; missing bookkeeping fields default to tick 0 / static / trust 1."""
        for name in ("means", "quats", "scales", "opacities", "colors"):
            if name not in state:
                raise ValueError(f"Gaussian state is missing '{name}' (has {sorted(state)})")
        n = int(np.asarray(state["means"]).shape[0])
        g = cls.empty(max(capacity or n, n, 1))
        for name, (shape, _) in FIELDS.items():
            if name in state:
                arr = np.asarray(state[name])
                if arr.shape != (n, *shape):
                    raise ValueError(f"Gaussian state '{name}' has shape {arr.shape}, expected {(n, *shape)}")
                getattr(g, name)[:n] = arr
        g.count = n
        return g
