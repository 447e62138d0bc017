"""What is dreamed and against which truth: held-out arena trajectories rendered at the model's resolution,
the truth seen from other cameras, and held-out recordings of any World.

The trajectories themselves (actions, seeds, kinds) are planned in `engine.arena.splits`; this module renders
them the way the training data was rendered (at `render_size`, area-resized to the model's frame size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from worldmodel.data import area_resize, fit_K


@dataclass
class Trajectory:
    """A ground-truth trajectory at the model's resolution."""

    rgb: np.ndarray  # [T+1, H, W, 3] uint8
    depth: np.ndarray  # [T+1, H, W] float32
    c2w: np.ndarray  # [T+1, 4, 4]
    actions: np.ndarray  # [T+1, 8] (row i leads into frame i; row 0 zeros)
    name: str
    K: np.ndarray | None = None  # [3, 3] intrinsics at the model's resolution (None: unknown)


def render_trajectory(entry, size: tuple[int, int], render_size: tuple[int, int]) -> Trajectory:
    """Render a held-out entry with the arena at `render_size`, area-resized to the model's `size` (as the data)."""
    from engine.arena.splits import entry_actions

    return render_actions(entry.level_seed, entry_actions(entry), size, render_size, f"{entry.kind}-{entry.level_seed}")


def play(world, level_seed: int, actions: list | None = None, policy=None, ticks: int = 0) -> tuple[list, np.ndarray]:
    """Any World (the arena, a dream) from `level_seed`'s first view, stepped with `actions` (or, when None, `ticks`
    actions of `policy`, a callable Observation -> Action fed the world's own observations): the observations
    [T+1] and the actions as vectors [T+1, 8] (row i led into observation i; row 0 zeros)."""
    obs = [world.reset(level_seed)]
    if actions is None:
        actions = []
        for _ in range(ticks):
            actions.append(policy(obs[-1]))
            obs.append(world.step(actions[-1]))
    else:
        obs += [world.step(a) for a in actions]
    acts = np.zeros((len(obs), 8), np.float32)
    if actions:
        acts[1:] = np.stack([a.to_array() for a in actions])
    return obs, acts


def render_actions(level_seed: int, actions: list | None, size: tuple[int, int], render_size: tuple[int, int],
                   name: str, policy=None, ticks: int = 0) -> Trajectory:
    """The arena's test level `level_seed` played (`play`) with `actions` or `ticks` actions of `policy`, rendered at
    `render_size` and area-resized to the model's `size`."""
    from engine.arena import ArenaWorld
    from engine.arena.splits import TEST_PRESET, TEST_TICK_RATE

    world = ArenaWorld(preset=TEST_PRESET, width=render_size[1], height=render_size[0], tick_rate=TEST_TICK_RATE)
    try:
        obs, acts = play(world, level_seed, actions, policy, ticks)
    finally:
        world.close()
    rgb = area_resize(np.stack([o.rgb for o in obs]), size)
    depth = area_resize(np.stack([o.depth for o in obs])[..., None], size)[..., 0]
    return Trajectory(rgb, depth.astype(np.float32), np.stack([o.cam_to_world for o in obs]), acts, name,
                      fit_K(obs[0].K, render_size, size))


def render_at_poses(entry, c2w: np.ndarray, ticks: np.ndarray, size: tuple[int, int],
                    render_size: tuple[int, int]) -> np.ndarray:
    """The arena level of a held-out entry seen from given cameras c2w [N, 4, 4] at given ticks [N] (movers where
    they are then): the ground truth of what a dream should show from where *it* believes the camera is."""
    from engine.arena import ArenaWorld
    from engine.arena.splits import TEST_PRESET, TEST_TICK_RATE

    world = ArenaWorld(preset=TEST_PRESET, width=render_size[1], height=render_size[0], tick_rate=TEST_TICK_RATE)
    try:
        world.reset(entry.level_seed)
        rgb = np.stack([world.renderer.render(m, int(t) / TEST_TICK_RATE).rgb for m, t in zip(c2w, ticks)])
    finally:
        world.close()
    return area_resize(rgb, size)


def recorded_trajectories(paths: list[str], size: tuple[int, int]) -> list[Trajectory]:
    """Held-out recordings of any World as test trajectories (one per episode)."""
    from worldmodel.data import FrameStore

    store = FrameStore.load(paths, size)
    trajs = []
    for e, (s, n) in enumerate(zip(store.starts, store.lengths)):
        sl = slice(int(s), int(s + n))
        depth = store.depth[sl].astype(np.float32) if store.depth is not None else np.zeros((n, *size), np.float32)
        c2w = store.c2w[sl].astype(np.float64) if store.c2w is not None else np.tile(np.eye(4), (n, 1, 1))
        K = store.K[int(s)].astype(np.float64) if store.K is not None else None
        trajs.append(Trajectory(store.rgb[sl], depth, c2w, store.actions[sl], f"recording-episode-{e}", K))
    return trajs


def recordings_setup(paths: list[str]) -> dict[str, Any]:
    """What held-out recordings are, from their meta.yaml: the worlds they were recorded in, their frame sizes
    [H, W] as recorded (before the area resize to the model's size), and whether every one has depth."""
    from engine.recording import META_FILE, RecordingMeta
    from worldmodel.data import find_recordings

    metas = [RecordingMeta.load(p / META_FILE) for p in find_recordings(paths)]
    return {"worlds": sorted({m.world for m in metas}),
            "resolutions": [list(r) for r in sorted({tuple(m.resolution) for m in metas if m.resolution})],
            "has_depth": all(m.has_depth for m in metas)}
