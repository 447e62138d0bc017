"""What a model is compared with, in the same run:

- copy-last: the last real frame, held (a weak baseline in a static 3D world: kept for continuity);
- mean frame: the per-pixel mean of the evaluated trajectories' frames, one constant image for every tick.
  A blur that knows nothing of the actions: in a dark, low-contrast game a model that does not beat it from
  8 ticks on has learned no dynamics;
- geometric: the true frames before the tick, lifted into the project's own `splat.SceneMemory` with their true
  depth at one Gaussian per pixel and rendered at the true camera of the tick, holes filled with the last true
  frame. It is a ceiling, not a competitor: it is given the truth up to the tick before and the true camera,
  which the open-loop dream is not. It shows what a memory gives when its geometry is right; the model's gap
  to it is what the memory-first dream can win.
- seen: only what the open-loop dream is given, its real context frames, lifted the same way and rendered at the true
  camera of each later tick, blended over the mean frame by the render's coverage (alpha). With a right camera and a
  painter that knows nothing past the average view, this is about what showing the memory first scores (the dream
  gates by coverage a little differently: worldmodel.tick.MEMORY_GATE); its coverage (how much of each frame the
  context saw) is how much of the frame any dream must invent.

`GroundTruthMemory` is the revisit benchmark's oracle: the dream's own memory fed the truth instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from worldmodel.evaluation.trajectories import Trajectory

# One Gaussian per pixel, small splats, room for a few hundred frames' worth of new surfaces, and the sky
# (rendered by the arena at a finite depth, 150 m) lifted like any surface: no direction is a hole.
GEOMETRIC_MEMORY: dict[str, Any] = {"subsample": 1, "scale_factor": 0.3, "budget": 50_000, "max_depth": 200.0,
                                    "far_plane": 1000.0}


def mean_frame(trajectories: list[Trajectory]) -> np.ndarray:
    """The per-pixel mean of every frame of the trajectories, uint8 [H, W, 3]."""
    total = sum(tr.rgb.astype(np.float64).sum(axis=0) for tr in trajectories)
    count = sum(len(tr.rgb) for tr in trajectories)
    return np.clip(np.rint(total / count), 0, 255).astype(np.uint8)


def _over(view: Any, under: np.ndarray) -> np.ndarray:
    """A memory render over an image by its coverage: uint8 [H, W, 3] (`view` a splat MemoryRender)."""
    a = view.alpha.astype(np.float64)[..., None]
    return np.clip(np.rint(a * view.rgb + (1 - a) * under), 0, 255).astype(np.uint8)


def geometric(tr: Trajectory, ticks: list[int] | np.ndarray, settings: dict[str, Any] | None = None) -> np.ndarray:
    """The geometric baseline's frames at `ticks` (each >= 1) of a trajectory: uint8 [len(ticks), H, W, 3] in
    the order given. The memory holds the true frames 0 .. t-1 when it renders tick t at the true camera;
    where it covers less than all of a pixel, the last true frame (t - 1) shows through."""
    from splat import SceneMemory

    if tr.K is None:
        raise ValueError(f"{tr.name}: the geometric baseline needs the camera intrinsics K, and this trajectory has none")
    ticks = [int(t) for t in ticks]
    if ticks and (min(ticks) < 1 or max(ticks) >= len(tr.rgb)):
        raise ValueError(f"{tr.name}: geometric baseline ticks must lie in [1, {len(tr.rgb) - 1}], got {min(ticks)}..{max(ticks)}")
    H, W = tr.rgb.shape[1:3]
    memory = SceneMemory(width=W, height=H, **(settings or GEOMETRIC_MEMORY))
    out: dict[int, np.ndarray] = {}
    inserted = 0
    for t in sorted(set(ticks)):
        while inserted < t:
            memory.insert(tr.rgb[inserted], tr.depth[inserted], tr.c2w[inserted], tr.K, inserted)
            inserted += 1
        out[t] = _over(memory.render(tr.c2w[t], tr.K, t), tr.rgb[t - 1])
    return np.stack([out[t] for t in ticks]) if ticks else np.zeros((0, H, W, 3), np.uint8)


def seen(tr: Trajectory, t0: int, context: int, ticks: list[int] | np.ndarray, fill: np.ndarray,
         settings: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The seen baseline's frames at `ticks` (each > t0) of a trajectory whose true frames t0 - context + 1 .. t0 are
    the context: uint8 [len(ticks), H, W, 3], each the memory of those frames at the tick's true camera over `fill`
    [H, W, 3] uint8 (the mean frame) by its coverage, and that coverage's mean per tick [len(ticks)] in [0, 1]."""
    frames, alpha = seen_views(tr, t0, context, ticks, fill, settings)
    return frames, alpha.mean(axis=(1, 2))


def seen_views(tr: Trajectory, t0: int, context: int, ticks: list[int] | np.ndarray, fill: np.ndarray,
               settings: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`seen`, with each tick's coverage map float32 [len(ticks), H, W] instead of its mean: where the real context
    saw what the true camera sees then (the seen cells of the report's seen / unseen split)."""
    from splat import SceneMemory

    if tr.K is None:
        raise ValueError(f"{tr.name}: the seen baseline needs the camera intrinsics K, and this trajectory has none")
    ticks = [int(t) for t in ticks]
    if context < 1 or t0 - context + 1 < 0 or t0 >= len(tr.rgb):
        raise ValueError(f"{tr.name}: the seen baseline needs context frames {t0 - context + 1}..{t0} (at least one) "
                         f"of the trajectory's 0..{len(tr.rgb) - 1}")
    if ticks and (min(ticks) <= t0 or max(ticks) >= len(tr.rgb)):
        raise ValueError(f"{tr.name}: seen baseline ticks must lie in {t0 + 1}..{len(tr.rgb) - 1}, "
                         f"got {min(ticks)}..{max(ticks)}")
    H, W = tr.rgb.shape[1:3]
    memory = SceneMemory(width=W, height=H, **(settings or GEOMETRIC_MEMORY))
    for t in range(t0 - context + 1, t0 + 1):
        memory.insert(tr.rgb[t], tr.depth[t], tr.c2w[t], tr.K, t)
    frames = np.zeros((len(ticks), H, W, 3), np.uint8)
    alpha = np.zeros((len(ticks), H, W), np.float32)
    for k, t in enumerate(ticks):
        view = memory.render(tr.c2w[t], tr.K, t)
        frames[k] = _over(view, fill)
        alpha[k] = view.alpha
    return frames, alpha


class GroundTruthMemory:
    """A scene memory fed the ground truth instead of the dream: every insert puts the trajectory's true frame
    and depth at its true pose, every render is at the true pose of that tick. Wrapped around the dream's own
    SceneMemory (same settings), it is the revisit benchmark's oracle: the dream still makes every frame, but
    the memory it is conditioned on is right, so `memory_oracle - memory_off` says how much this model could
    gain from memory, and `memory_oracle - memory_on` how much its own memory loses of that.
    `render_at_truth=False` renders that true memory at the dream's own camera instead (`memory_oracle_dream_pose`):
    `memory_oracle - memory_oracle_dream_pose` is what the dream's pose drift costs, and
    `memory_oracle_dream_pose - memory_on` what its frames (blur, wrong colours and depth) cost."""

    def __init__(self, memory: Any, trajectory: Trajectory, render_at_truth: bool = True) -> None:
        self.memory, self.tr, self.render_at_truth = memory, trajectory, render_at_truth

    def reset(self) -> None:
        self.memory.reset()

    def __len__(self) -> int:
        return len(self.memory)

    def obstacles(self, focal: float) -> tuple[np.ndarray, np.ndarray]:
        """The true memory's obstacles: the dream's camera stops at the true walls (every one from a real view)."""
        return self.memory.obstacles(focal)

    def save_ply(self, path) -> int:
        return self.memory.save_ply(path)

    def render(self, cam_to_world: np.ndarray, K: np.ndarray, tick: int):
        # render_at_truth=False: the dream's own (drifted) camera, so the oracle's loss is the pose drift alone
        # (past the trajectory's end, where a batch steps on a walk that has ended: its last pose)
        at = self.tr.c2w[min(tick, len(self.tr.c2w) - 1)]
        return self.memory.render(at if self.render_at_truth else cam_to_world, K, tick)

    def insert(self, rgb: np.ndarray, depth: np.ndarray, cam_to_world: np.ndarray, K: np.ndarray, tick: int,
               dynamic_mask: np.ndarray | None = None, source_age: int = 0) -> None:
        if tick >= len(self.tr.rgb):  # past the trajectory's end (a batch stepping on): nothing true to insert
            return
        self.memory.insert(self.tr.rgb[tick], self.tr.depth[tick], self.tr.c2w[tick], K, tick)  # real: age 0
