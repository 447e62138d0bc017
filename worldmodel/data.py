"""Training data from engine recordings of any World: frames, depth, poses, actions, clips, memory images.

`FrameStore.load(dirs)` reads every recording under the given directories into contiguous arrays
(frames of any size brought to the model's frame size by `area_resize`: centre crop to its aspect
ratio, then area resize), split into episodes at reset rows. Depth and pose are optional: a World that gives only RGB still trains (without the depth
channel and the ego-motion head).

`reproject` renders earlier ground-truth frames into a target camera (forward splatting with a
z-buffer): the stand-in for the splat memory's render while training the memory input, as in GEN3C's
3D cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.action import ACTION_DIM
from engine.recording import META_FILE, Recording, RecordingError
from worldmodel.pose import EGO_DIM, ego_motion


class DataError(ValueError):
    """Training data that is missing, empty, or inconsistent."""


def find_recordings(paths: list[str | Path]) -> list[Path]:
    """Recording directories at or below each path (a directory with meta.yaml), sorted."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise DataError(f"data path {p} does not exist")
        if (p / META_FILE).exists():
            found.append(p)
        else:
            found.extend(sorted(m.parent for m in p.rglob(META_FILE)))
    if not found:
        raise DataError(f"no recordings (directories with {META_FILE}) under {[str(p) for p in paths]}")
    return found


def recordings_key(paths: list[str | Path]) -> str:
    """A fingerprint of the recordings' contents (16 hex digits): their meta.yaml, ticks.jsonl and prefix bytes,
    and per frame chunk the CRC-32 and size of every array in it (stored in the npz's zip directory, so a chunk
    is fingerprinted without decompressing it). An edited, added or removed row or frame changes it."""
    import hashlib
    import zipfile

    h = hashlib.sha256()
    for rec in map(Path, paths):
        h.update(f"recording {rec}\n".encode())
        for name in (META_FILE, "ticks.jsonl", "prefix_actions.npy"):
            f = rec / name
            if f.exists():
                h.update(f"{name} {f.stat().st_size}\n".encode())
                with open(f, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
        for chunk in sorted((rec / "frames").glob("*.npz")):
            h.update(f"chunk {chunk.name}\n".encode())
            try:
                with zipfile.ZipFile(chunk) as z:
                    for info in z.infolist():
                        h.update(f"{info.filename} {info.CRC} {info.file_size}\n".encode())
            except (zipfile.BadZipFile, OSError):  # unreadable: its bytes stand for it (loading will say what is wrong)
                h.update(chunk.read_bytes())
    return h.hexdigest()[:16]


def crop_box(from_size: tuple[int, int], to_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(y0, x0, height, width) of the centred window of a from_size (H, W) image with to_size's aspect ratio:
    the largest such window, so a wider image loses columns at both sides and a taller one rows at top and bottom."""
    H, W = from_size
    h, w = to_size
    if W * h > H * w:  # wider than the model's frame
        cw = max(1, round(H * w / h))
        return 0, (W - cw) // 2, H, cw
    ch = max(1, round(W * h / w))
    return (H - ch) // 2, 0, ch, W


def area_resize(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[N, H, W, ...] of any size -> [N, h, w, ...], the one rule for every frame the model sees (recordings,
    prompt views, evaluation): crop the centred window with the model's aspect ratio (`crop_box`), then resize it
    by area (each output pixel the mean of the input pixels it covers; bilinear where the window is smaller than
    the model's frame). Depth maps go through the same rule; `fit_K` gives the matching intrinsics."""
    n, H, W = frames.shape[:3]
    h, w = size
    if (H, W) == (h, w):
        return frames
    y0, x0, ch, cw = crop_box((H, W), (h, w))
    frames = frames[:, y0:y0 + ch, x0:x0 + cw]
    if ch % h == 0 and cw % w == 0:  # integer blocks: the exact mean, in numpy
        fy, fx = ch // h, cw // w
        x = frames.astype(np.float32).reshape(n, h, fy, w, fx, *frames.shape[3:]).mean(axis=(2, 4))
    else:
        t = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).reshape(n, ch, cw, -1).permute(0, 3, 1, 2)
        if ch >= h and cw >= w:
            t = torch.nn.functional.adaptive_avg_pool2d(t, (h, w))
        else:
            t = torch.nn.functional.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)
        x = t.permute(0, 2, 3, 1).reshape(n, h, w, *frames.shape[3:]).numpy()
    return np.round(x).astype(frames.dtype) if frames.dtype == np.uint8 else x.astype(frames.dtype)


def fit_K(K: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """The intrinsics [..., 3, 3] of a from_size (H, W) camera after `area_resize` to to_size (crop, then scale)."""
    y0, x0, ch, cw = crop_box(from_size, to_size)
    K = np.array(K, np.float64, copy=True)
    K[..., 0, 2] -= x0
    K[..., 1, 2] -= y0
    K[..., 0, :] *= to_size[1] / cw
    K[..., 1, :] *= to_size[0] / ch
    return K


@dataclass
class FrameStore:
    """Every frame of a data set in memory. Row i's action is the one that led into frame i.

    rgb:     [N, H, W, 3] uint8
    depth:   [N, H, W] float16 metres, or None when any recording lacks depth
    c2w:     [N, 4, 4] float32 camera-to-world, or None when any recording lacks poses
    K:       [N, 3, 3] float32 intrinsics at the stored size, or None
    actions: [N, ACTION_DIM] float32 (zeros on episode starts)
    starts:  [E] first row of each episode; lengths: [E]
    """

    rgb: np.ndarray
    depth: np.ndarray | None
    c2w: np.ndarray | None
    K: np.ndarray | None
    actions: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    sources: list[str]

    @property
    def frames(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def episodes(self) -> int:
        return int(self.starts.shape[0])

    @classmethod
    def load(cls, paths: list[str | Path], size: tuple[int, int], max_frames: int | None = None,
             progress: bool = False) -> "FrameStore":
        recs = find_recordings(paths)
        rgb, depth, c2w, K, actions, starts, lengths = [], [], [], [], [], [], []
        has_depth = has_pose = True
        total = 0
        from tqdm import tqdm

        for path in tqdm(recs, desc="loading recordings", disable=not progress, unit="rec"):
            try:
                rec = Recording(path)
            except RecordingError as e:
                raise DataError(f"cannot read training recording: {e}") from e
            n = len(rec)
            if n == 0:
                continue
            try:
                chunks = [rec._chunk(c) for c in range(-(-n // rec.meta.chunk_ticks))]
            except RecordingError as e:  # a damaged chunk: named, with what to do
                raise DataError(f"cannot read training recording {path}: {e}; re-record it or leave it out of --data") from None
            r = np.concatenate([c["rgb"] for c in chunks])[:n]
            H, W = r.shape[1:3]
            rgb.append(area_resize(r, size))
            if "depth" in chunks[0] and has_depth:
                d = np.concatenate([c["depth"] for c in chunks])[:n]
                _refuse_non_finite(np.where(np.isposinf(d), 0.0, d).reshape(n, -1), path, rec, "depth")  # +inf: sky
                depth.append(area_resize(d[..., None], size)[..., 0].astype(np.float16))
            else:
                has_depth = False
            poses = [row["cam_to_world"] for row in rec.rows[:n]]
            ks = [row["K"] for row in rec.rows[:n]]
            if has_pose and all(p is not None for p in poses) and all(k is not None for k in ks):
                _refuse_non_finite(np.asarray(poses, np.float64).reshape(n, -1), path, rec, "cam_to_world")
                _refuse_non_finite(np.asarray(ks, np.float64).reshape(n, -1), path, rec, "K")
                c2w.append(np.asarray(poses, np.float32))
                K.append(fit_K(np.asarray(ks, np.float64), (H, W), size).astype(np.float32))
            else:
                has_pose = False
            actions.append(rec.actions_array())
            resets = np.flatnonzero(rec.resets_array())
            if len(resets) == 0 or resets[0] != 0:
                resets = np.concatenate([[0], resets])
            bounds = list(resets) + [n]
            for a, b in zip(bounds[:-1], bounds[1:]):
                starts.append(total + a)
                lengths.append(b - a)
            total += n
            if max_frames is not None and total >= max_frames:
                break
        if total == 0:
            raise DataError(f"the recordings under {paths} hold no frames")
        return cls(
            rgb=np.concatenate(rgb),
            depth=np.concatenate(depth) if has_depth and depth else None,
            c2w=np.concatenate(c2w) if has_pose and c2w else None,
            K=np.concatenate(K) if has_pose and K else None,
            actions=np.concatenate(actions).astype(np.float32),
            starts=np.asarray(starts, np.int64),
            lengths=np.asarray(lengths, np.int64),
            sources=[str(p) for p in recs],
        )

    def save(self, path: Path, key: str = "") -> None:
        """An uncompressed cache (loads in seconds instead of minutes); atomic. `key`: `recordings_key` of the
        sources, which `load_cache` checks."""
        arrays = {"rgb": self.rgb, "actions": self.actions, "starts": self.starts, "lengths": self.lengths,
                  "sources": np.array(self.sources), "key": np.array(key)}
        for key in ("depth", "c2w", "K"):
            if getattr(self, key) is not None:
                arrays[key] = getattr(self, key)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)

    @classmethod
    def load_cache(cls, path: Path, sources: list[str], key: str = "") -> "FrameStore | None":
        """The cache at `path` if it was made from exactly `sources` with contents `key` (recordings_key), else
        None (also for a cache that is unreadable: it is rebuilt)."""
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if [str(s) for s in z["sources"]] != sources:
                    return None
                if (str(z["key"]) if "key" in z.files else "") != key:
                    return None
                get = lambda k: z[k] if k in z.files else None  # noqa: E731
                return cls(rgb=z["rgb"], depth=get("depth"), c2w=get("c2w"), K=get("K"), actions=z["actions"],
                           starts=z["starts"], lengths=z["lengths"], sources=sources)
        except (OSError, ValueError, KeyError, EOFError):
            return None

    def ego_targets(self) -> np.ndarray | None:
        """[N, 5] ego-motion from frame i-1 to frame i (zeros on episode starts), or None without poses."""
        if self.c2w is None:
            return None
        out = np.zeros((self.frames, EGO_DIM), np.float32)
        out[1:] = ego_motion(self.c2w[:-1].astype(np.float64), self.c2w[1:].astype(np.float64))
        out[self.starts] = 0.0
        return out

    def clip_starts(self, length: int) -> np.ndarray:
        """Every row at which a clip of `length` frames fits inside one episode."""
        ok = [np.arange(s, s + n - length + 1) for s, n in zip(self.starts, self.lengths) if n >= length]
        if not ok:
            raise DataError(f"no episode is {length} frames long (longest: {int(self.lengths.max())}); "
                            "record longer episodes or shorten train.clip_frames")
        return np.concatenate(ok)

    def episode_of(self) -> np.ndarray:
        """[N] episode index of each row."""
        return np.repeat(np.arange(self.episodes), self.lengths)


def frames_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).float().div_(127.5).sub_(1.0)
    return t.movedim(-1, -3)


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """float [..., 3, H, W] in [-1, 1] -> uint8 [..., H, W, 3]."""
    return ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().byte().movedim(-3, -1).cpu().numpy()


@dataclass
class Reprojection:
    """A view of earlier frames rendered into a target camera.

    rgb:   [H, W, 3] uint8 (black where uncovered)
    depth: [H, W] float32 metres (0 where uncovered)
    alpha: [H, W] float32 coverage in {0, 1}
    """

    rgb: np.ndarray
    depth: np.ndarray
    alpha: np.ndarray


def reproject(rgb: np.ndarray, depth: np.ndarray, c2w: np.ndarray, K: np.ndarray,
              target_c2w: np.ndarray, target_K: np.ndarray, size: tuple[int, int],
              max_depth: float = 40.0) -> Reprojection:
    """Forward-splat source frames into a target camera with a z-buffer (nearest pixel, one point per pixel).

    rgb [S, H, W, 3] uint8, depth [S, H, W] metres, c2w [S, 4, 4], K [S, 3, 3]: the source frames.
    Sky / far pixels (depth >= max_depth) are not splatted: they carry no geometry.
    """
    S, H, W = depth.shape
    h, w = size
    v, u = np.meshgrid(np.arange(H) + 0.5, np.arange(W) + 0.5, indexing="ij")
    pts_all, col_all = [], []
    for s in range(S):
        d = depth[s].astype(np.float32)
        keep = (d > 0.05) & (d < max_depth)
        if not keep.any():
            continue
        z = d[keep]
        x = (u[keep] - K[s, 0, 2]) / K[s, 0, 0] * z
        y = (v[keep] - K[s, 1, 2]) / K[s, 1, 1] * z
        cam = np.stack([x, y, z, np.ones_like(z)], -1)  # [P, 4] OpenCV camera coords
        pts_all.append(cam @ c2w[s].astype(np.float64).T)
        col_all.append(rgb[s][keep])
    out_rgb = np.zeros((h, w, 3), np.uint8)
    out_depth = np.zeros((h, w), np.float32)
    alpha = np.zeros((h, w), np.float32)
    if not pts_all:
        return Reprojection(out_rgb, out_depth, alpha)
    world = np.concatenate(pts_all)
    colors = np.concatenate(col_all)
    cam = world @ np.linalg.inv(target_c2w.astype(np.float64)).T
    z = cam[:, 2]
    front = z > 0.05
    cam, z, colors = cam[front], z[front], colors[front]
    px = np.floor(target_K[0, 0] * cam[:, 0] / z + target_K[0, 2]).astype(np.int64)
    py = np.floor(target_K[1, 1] * cam[:, 1] / z + target_K[1, 2]).astype(np.int64)
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    px, py, z, colors = px[inside], py[inside], z[inside], colors[inside]
    if len(z) == 0:
        return Reprojection(out_rgb, out_depth, alpha)
    # z-buffer: sort far to near so that the nearest write to a pixel lands last.
    order = np.argsort(-z)
    idx = py[order] * w + px[order]
    flat_rgb = out_rgb.reshape(-1, 3)
    flat_rgb[idx] = colors[order]
    out_depth.reshape(-1)[idx] = z[order]
    alpha.reshape(-1)[idx] = 1.0
    return Reprojection(out_rgb, out_depth, alpha)


def memory_sources(store: FrameStore, row: int, rng: np.random.Generator, count: int = 3,
                   min_gap: int = 1, max_gap: int = 300) -> np.ndarray:
    """Rows of earlier frames of the same episode to build `row`'s memory image from (may be empty).

    Gaps are drawn log-uniformly so that both recent frames (always in a real memory) and old ones
    (what a revisit needs) are common.
    """
    episode = np.searchsorted(store.starts, row, side="right") - 1
    start = int(store.starts[episode])
    available = row - start
    if available < min_gap:
        return np.zeros(0, np.int64)
    hi = min(max_gap, available)
    gaps = np.exp(rng.uniform(np.log(min_gap), np.log(hi + 1), size=count)).astype(np.int64)
    gaps = np.clip(gaps, min_gap, hi)
    return np.unique(row - gaps)


def check_actions(actions: np.ndarray) -> None:
    """Reject NaN/inf actions in training data with the row that holds them."""
    bad = np.flatnonzero(~np.isfinite(actions).all(axis=1))
    if len(bad):
        raise DataError(f"{len(bad)} training action(s) contain NaN/inf, first at row {bad[0]}")
    if actions.shape[1] != ACTION_DIM:
        raise DataError(f"actions have {actions.shape[1]} values, expected {ACTION_DIM}")


def _refuse_non_finite(values: np.ndarray, path: Path, rec: Recording, what: str) -> None:
    """Refuse a training recording whose `what` [n, ...] holds NaN or inf, naming the recording and the first tick:
    trained on, one such value turns every weight to NaN. (A depth of +inf, the sky, is clamped and allowed: the
    caller passes it as 0.)"""
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(bad):
        tick = rec.rows[int(bad[0])].get("tick", int(bad[0]))
        raise DataError(f"training recording {path}: {what} is NaN or infinite at tick {tick} ({len(bad)} tick(s)); "
                        "re-record it or leave it out of --data")
