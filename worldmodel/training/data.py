"""The trainer's data side: every frame of the recordings (cached in state/, keyed on their contents), frames on
the training device, and the latents of every frame with their memory images (cached in state/latents.npz, keyed
on the autoencoder's weights, the recordings and the memory settings)."""

from __future__ import annotations

import json
import time
import os

import numpy as np
import torch

from worldmodel.checkpoint import module_hash
from worldmodel.data import FrameStore, find_recordings, frames_to_tensor, recordings_key
from worldmodel.training.common import _hook


class TrainingData:
    """The trainer's data (a part of worldmodel.train.Trainer)."""

    def _load_data(self) -> FrameStore:
        """All frames of the data set; cached in state/ so a resumed run starts in seconds."""
        size = tuple(self.mcfg.frame_size)
        sources = [str(p) for p in find_recordings(list(self.cfg.data))]
        self.store_key = recordings_key(sources)  # the recordings' contents: both caches are keyed on it
        if self.cfg.max_frames:
            store = FrameStore.load(list(self.cfg.data), size, self.cfg.max_frames, progress=self.progress)
            self.store_key = f"{recordings_key(store.sources)}:{self.cfg.max_frames}"
            return store
        cache = self.state_dir / f"frames_{size[0]}x{size[1]}.npz"
        store = FrameStore.load_cache(cache, sources, self.store_key)
        if store is None:
            store = FrameStore.load(list(self.cfg.data), size, None, progress=self.progress)
            if self.d.main:
                self.state_dir.mkdir(parents=True, exist_ok=True)
                store.save(cache, self.store_key)
        return store

    def _frames(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Frames `rows` of the data, on the training device (rgb [B, 3, H, W] in [-1, 1], depth [B, 1, H, W] m)."""
        rgb = frames_to_tensor(self.store.rgb[rows]).to(self.device, non_blocking=True)
        depth = None
        if self.use_depth:
            depth = torch.from_numpy(self.store.depth[rows].astype(np.float32))[:, None].to(self.device, non_blocking=True)
        return rgb, depth

    # -- latents and memory images ---------------------------------------------------------------------

    @torch.no_grad()
    def encode_all(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Latents [N, C, h, w] of every frame, memory conditioning [N, C+1, h, w] (None without poses/depth), and
        with train.memory_mode "rollout" the dream's own context latents [N, C, h, w] (training/rollouts.py; else
        None)."""
        cache = self.state_dir / "latents.npz"
        # Keyed on what the latents are made from: the autoencoder's weights, the recordings' contents, the
        # memory settings. Any change (another autoencoder, an edited recording) rebuilds them.
        key = json.dumps({"autoencoder": module_hash(self.ae), "data": self.store_key, "frames": self.store.frames,
                          "memory_mode": self.cfg.memory_mode, "memory": self._memory_key(),
                          "use_memory": self.mcfg.dynamics.use_memory}, sort_keys=True)
        if cache.exists():
            try:
                with np.load(cache, allow_pickle=False) as z:
                    if "key" in z.files and str(z["key"]) == key:
                        mem = torch.from_numpy(z["memory"]) if "memory" in z.files else None
                        ctx = torch.from_numpy(z["context"]) if "context" in z.files else None
                        return torch.from_numpy(z["latents"]), mem, ctx
            except (OSError, ValueError, KeyError, EOFError) as e:
                self._say(f"note: the latents cache {cache} is unreadable ({e}); encoding again")
        from tqdm import tqdm

        N = self.store.frames
        t_prepare = time.perf_counter()
        lat = torch.zeros((N, *self.mcfg.latent_shape))
        for rows in tqdm(np.array_split(np.arange(N), max(1, N // 256)), desc="encoding frames", disable=not self.progress):
            rgb, depth = self._frames(rows)
            lat[rows] = self.ae.encode(rgb, depth).float().cpu()
        memory = context = None
        if self.store.c2w is not None and self.store.depth is not None and self.mcfg.dynamics.use_memory:
            if self.cfg.memory_mode == "rollout":
                rollouts = self.own_rollouts(lat)
                memory, context = rollouts.memory, rollouts.context
            else:
                memory = self._memory_latents(lat)
        # the latents and memory images of every frame, in this memory mode: [frames, seconds]
        self.times[f"prepare_{self.cfg.memory_mode if memory is not None else 'latents'}"] = [
            N, round(time.perf_counter() - t_prepare, 3)]
        if self.d.main:
            arrays = {"latents": lat.numpy(), "frames": np.array(N), "memory_mode": np.array(self.cfg.memory_mode),
                      "memory_settings": np.array(self._memory_key()), "key": np.array(key)}
            if memory is not None:
                arrays["memory"] = memory.numpy()
            if context is not None:
                arrays["context"] = context.numpy()
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.state_dir / "latents.tmp.npz"
            np.savez(tmp, **arrays)
            os.replace(tmp, cache)
        _hook("latents.encoded")
        return lat, memory, context

    def _memory_key(self) -> str:
        """The memory settings as the latents cache records them (a change rebuilds the memory images)."""
        if self.cfg.memory_mode == "reproject":
            return "{}"
        key = dict(self.memory_settings)
        if self.cfg.memory_mode in ("splat_predicted", "rollout"):
            key["predicted_by"] = self.init_hash  # another starting model predicts other frames
        if self.cfg.memory_mode == "rollout":  # the dreams also depend on how init_from dreams, and on the seed
            from worldmodel.training.common import ROLLOUT_INFO_KEYS

            key.update(rollout_ticks=self.cfg.rollout_ticks, seed=self.cfg.seed,
                       dream={k: self.init_info.get(k) for k in ROLLOUT_INFO_KEYS})
        return json.dumps(key, sort_keys=True)
