"""The model's own rollouts as training data (train.memory_mode "rollout"): student forcing on memory-first dreams.

Teacher forcing shows the dynamics the recordings' frames as context; the dream shows it its own frames, which in a
memory-first dream are the scene memory's render where the memory covers and the model's paint elsewhere, with a
memory image rendered at the dream's own camera from a memory of its own frames. Trained only on the first, the
model never learns to live with the second (the exposure bias of Self Forcing, arXiv 2506.08009; Memory Forcing and
Matrix-Game 3.0 re-inject generated frames the same way).

Here the init_from model dreams along every training episode with the recordings' actions, as `play.py` dreams
(`DreamWorld`: its camera rules, collisions, memory first, its scene memory), in segments: each segment starts from
`context` real frames (as the evaluation's open loop does) and dreams `rollout_ticks` ticks. For each dreamed frame
the trainer keeps the latent the dream committed as context and the memory image it was conditioned on; the
frame's target stays the recording's frame. A clip is taken inside one segment, its frames' inputs are the dream's
(noised as the dream commits them) and its targets the truth's, so the network learns to pull its own context back
toward the world (student forcing, as APT2, arXiv 2506.09350, with the recorded frame as the regression target).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from worldmodel.data import FrameStore


@dataclass
class Rollouts:
    """Per training frame: the dream's context latent and memory image (segment_ids says which dream it is from)."""

    context: torch.Tensor  # [N, C, h, w] the latent the dream committed (the true latent for real frames)
    memory: torch.Tensor  # [N, C+1, h, w] the memory image it was conditioned on (0: none)


def rollout_context(window: int) -> int:
    """The real frames each segment starts from: the dynamics' window, at most 8 (the evaluation's open loop)."""
    return min(8, window)


def rollout_segments(store: FrameStore, ticks: int, context: int) -> list[tuple[int, int, int]]:
    """The dreamed segments of every episode, as (first real row, first dreamed row, end row): the dream starts from
    rows [first real, first dreamed) and dreams [first dreamed, end). Consecutive segments of an episode overlap by
    their `context` real frames (the earlier segment's last dreamed frames keep its values)."""
    out = []
    for start, n in zip(store.starts, store.lengths):
        start, n = int(start), int(n)
        t0 = min(context, n)  # the first dreamed tick
        while t0 < n:
            out.append((start + t0 - min(context, t0), start + t0, start + min(t0 + ticks, n)))
            t0 += ticks
    return out


def segment_ids(store: FrameStore, ticks: int, context: int) -> np.ndarray:
    """[N] segment id per row: the dreamed rows of a segment share its id; an episode's first real frames share the
    id of its first segment (they are that dream's context)."""
    seg = np.full(store.frames, -1, np.int64)  # -1: an episode too short to dream in (its frames stay real)
    episode_starts = set(int(s) for s in store.starts)
    for i, (real, first, end) in enumerate(rollout_segments(store, ticks, context)):
        if real in episode_starts:
            seg[real:first] = i  # the episode's opening real frames: its first dream's context
        seg[first:end] = i
    return seg


def clip_starts_within(seg: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """The clip starts (of `starts`) whose `length` rows all lie in one segment."""
    ok = seg[starts] == seg[starts + length - 1]
    if not ok.any():
        raise ValueError(f"no {length}-frame clip fits inside one rollout segment: raise train.rollout_ticks")
    return starts[ok]


@torch.no_grad()
def dream_rollouts(make_dreams, store: FrameStore, latents: torch.Tensor, ticks: int, context: int, seed: int,
                   progress: bool = False, batch: int = 16) -> Rollouts:
    """Dream every segment (rollout_segments) along the recordings' actions, `batch` segments at a time through the
    one tick (`make_dreams(B)`: B dreams of the starting model with its memory on, worldmodel.tick.Dreams); segment i
    from its real frames with seed seed + i, as a lone DreamWorld started there dreams it. `latents` [N, C, h, w] are
    the true frames' (the real context frames keep them)."""
    from tqdm import tqdm

    from worldmodel.tick import StartView

    N = store.frames
    C, h, w = latents.shape[1:]
    ctx = latents.clone().float()
    mem = torch.zeros((N, C + 1, h, w))
    segments = list(enumerate(rollout_segments(store, ticks, context)))
    bar = tqdm(total=sum(end - first for _, (_, first, end) in segments), desc="own rollouts", disable=not progress,
               mininterval=5)
    # a batch starts its rows together from the same number of real frames (an episode's first segment may have fewer)
    by_start: dict[int, list] = {}
    for i, seg in segments:
        by_start.setdefault(seg[1] - seg[0], []).append((i, seg))
    for group in by_start.values():
        for lo in range(0, len(group), batch):
            part = group[lo:lo + batch]
            dreams = make_dreams(len(part))
            views = [StartView(store.rgb[real:first], store.depth[real:first].astype(np.float32),
                               store.c2w[real:first].astype(np.float64), store.K[first - 1].astype(np.float64),
                               store.actions[real:first]) for _, (real, first, _) in part]
            dreams.start(views, [seed + i for i, _ in part])
            for t in range(max(end - first for _, (_, first, end) in part)):
                acts = np.stack([store.actions[first + t] if first + t < end else np.zeros(8, np.float32)
                                 for _, (_, first, end) in part]).astype(np.float32)
                out = dreams.step(acts, pixels=False)
                for b, (_, (_, first, end)) in enumerate(part):
                    if first + t < end:
                        ctx[first + t] = out.committed[b].cpu()
                        if out.memory_image is not None:
                            mem[first + t] = out.memory_image[b].cpu()
                bar.update(sum(1 for _, (_, first, end) in part if first + t < end))
    bar.close()
    return Rollouts(context=ctx, memory=mem)
