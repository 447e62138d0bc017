"""Crash-safe session recordings and their reader.

A recording is a directory:

    meta.yaml           world name + config, seed, tick rate, resolution, status, and the versions of what
                        can change the pixels (Python, numpy, torch and its CPU ISA/threads, moderngl, the GL
                        renderer and Mesa version of each GL context that drew frames)
    ticks.jsonl         one JSON line per recorded step, written and flushed as it happens
    frames/000000.npz   lossless chunks of `chunk_ticks` steps (half a second): rgb [T,H,W,3] uint8, and when
                        the world gives them depth [T,H,W] float32 and dynamic_mask [T,H,W] bool (zlib-compressed)
    video.mp4           h264 for people (fragmented MP4, so it stays playable after a crash)

Why npz chunks for the lossless store: they are exact for float depth as well as RGB, load with
`allow_pickle=False` (no code runs on read), give random access by chunk, and are committed with an
atomic rename, so a crash never leaves a half-written file under a final name. Frames are copied when
written, and a chunk is handed to the writer thread only once the one before it is on disk (the caller
waits otherwise), so at most one chunk is in flight and one being filled: a SIGKILL loses less than one
second of steps even when compression, the disk or the video encoder lags. The mp4 is only for watching:
h264 in yuv420p is lossy.

Row `i` of a recording holds the observation at that step and the action that led to it (None for the
observation returned by a reset; `reset: true` marks the start of each episode, with its seed), and, when
the player gave world commands (M, Tab, ...) since the step before, `commands: [...]`, applied before the step.
"""

from __future__ import annotations

import json
import math
import os
import platform
import queue
import threading
import time
import typing
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np
import yaml

from engine.action import ACTION_NAMES, Action
from engine.cli import type_problem
from engine.files import SharedFileError, atomic_write_text, brief, check_regular, io_reason, load_yaml
from engine.world import Observation

FORMAT_VERSION = 1
META_FILE = "meta.yaml"
TICKS_FILE = "ticks.jsonl"
FRAMES_DIR = "frames"
VIDEO_FILE = "video.mp4"
PREFIX_FILE = "prefix_actions.npy"


class RecordingError(RuntimeError):
    """A recording directory that is missing, truncated beyond use, or malformed."""


def check_record_target(path: str | Path, what: str = "--record") -> Path:
    """Refuse, before any work, a recording target that cannot be recorded into: an existing file, a non-empty
    directory, or a place that cannot be created or written (RecordingError, one line naming `what` and the path).
    Creates the (empty) directory, so that what is checked is what the recording will use."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RecordingError(f"{what} {path}: that is an existing file; give a new directory to record into")
    clear_unstarted(path)
    if path.is_dir() and any(path.iterdir()):
        raise RecordingError(f"{what} {path}: the directory is not empty (choose a new directory)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise RecordingError(f"{what} {path}: cannot record there ({e.strerror or e})") from None
    return path


_START_FILES = (META_FILE, META_FILE + ".tmp", TICKS_FILE, PREFIX_FILE, PREFIX_FILE + ".tmp", ".write-test")


def clear_unstarted(path: Path) -> bool:
    """Remove what a recording start killed before its first tick leaves (an empty frames/ and ticks.jsonl, a meta.yaml
    with no steps, a prefix), so the folder can be recorded into again; True when it did. A folder holding anything
    else, or a single logged tick or frame, is left alone."""
    if not path.is_dir():
        return False
    entries = list(path.iterdir())
    if not entries or any(e.name not in _START_FILES + (FRAMES_DIR,) or (e.name != FRAMES_DIR and not e.is_file())
                          for e in entries):
        return False
    frames = path / FRAMES_DIR
    if frames.exists() and (not frames.is_dir() or any(frames.iterdir())):
        return False
    ticks = path / TICKS_FILE
    if ticks.exists() and (not ticks.is_file() or ticks.stat().st_size):
        return False
    meta = path / META_FILE
    if meta.exists():
        try:
            data = load_yaml(meta, limit=1 << 20)
        except (SharedFileError, OSError):
            return False
        if not (isinstance(data, dict) and data.get("status") == "recording" and not data.get("steps")):
            return False
    for e in entries:
        if e.name == FRAMES_DIR:
            e.rmdir()
        else:
            e.unlink()
    return True


def _io_failure(path: Path, error: BaseException) -> str:
    """One line for a failed recording write (disk full, ...): what failed and what was kept."""
    return (f"recording {path} stopped: writing it failed ({io_reason(error)}); what was saved before is readable, "
            f"marked status: failed")


# GL renderers that drew frames in this process ("arena", "memory" -> "GL_RENDERER; GL_VERSION"), noted by
# the code that creates their contexts (`note_gl`): the Mesa version changes the pixels a render gives.
_GL: dict[str, str] = {}


def note_gl(kind: str, ctx: Any) -> None:
    """Note the renderer and driver version of a moderngl context that draws `kind` frames; every recording made
    in this process from now on lists them under `software` (gl.KIND)."""
    try:
        _GL[kind] = f"{ctx.info['GL_RENDERER']}; {ctx.info['GL_VERSION']}"
    except Exception:  # a context without the strings: nothing to note
        pass


def software_versions() -> dict[str, str]:
    """Versions of the pieces that can change what a recording contains: Python, numpy, pygame, moderngl, torch
    (and, once torch is in use, its CPU instruction set and thread count: CPU matmuls differ across them), safetensors,
    and the GL renderer + driver (Mesa) version of each GL context that drew frames."""
    import importlib.metadata as md
    import sys

    versions = {"python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform()}
    for mod in ("pygame", "moderngl", "torch", "safetensors"):
        try:
            versions[mod] = md.version(mod)
        except Exception:
            pass
    torch = sys.modules.get("torch")  # not imported here for an engine-only session
    if torch is not None:
        try:
            versions["torch_cpu"] = str(torch.backends.cpu.get_cpu_capability())
            versions["torch_threads"] = str(torch.get_num_threads())
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                versions["cuda_device"] = torch.cuda.get_device_name()
        except Exception:
            pass
    for kind, text in sorted(_GL.items()):
        versions[f"gl.{kind}"] = text
    return versions


def write_npz(f: BinaryIO, arrays: dict[str, np.ndarray], level: int = 1) -> None:
    """An .npz (readable by `np.load(allow_pickle=False)`) with fast deflate: level 1 is several times
    faster than numpy's default level 6 and within ~10% of its size on rendered frames."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, arr in arrays.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)


def _copy_frames(obs: Observation) -> Observation:
    """The observation with its own copies of the arrays the writer stores later (rgb, depth, dynamic_mask)."""
    return Observation(rgb=np.array(obs.rgb, copy=True),
                       depth=None if obs.depth is None else np.array(obs.depth, copy=True),
                       cam_to_world=obs.cam_to_world, K=obs.K, tick=obs.tick, info=obs.info,
                       dynamic_mask=None if obs.dynamic_mask is None else np.array(obs.dynamic_mask, copy=True))


@dataclass
class RecordingMeta:
    """What `meta.yaml` holds."""

    world: str
    world_config: dict[str, Any]
    seed: int
    tick_rate: float
    resolution: list[int] = field(default_factory=list)  # [H, W], filled from the first frame
    chunk_ticks: int = 0  # ticks per frame chunk; 0: the writer picks half a second (see RecordingWriter)
    has_depth: bool = False
    has_dynamic_mask: bool = False
    action_names: list[str] = field(default_factory=lambda: list(ACTION_NAMES))
    deterministic: bool = False
    model_hash: str | None = None
    created: str = ""
    software: dict[str, str] = field(default_factory=software_versions)
    status: str = "recording"  # "recording" until close() rewrites it: "complete", "interrupted" or "failed" (I/O)
    steps: int = 0
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "RecordingMeta":
        try:
            data = load_yaml(path, limit=1 << 20, within=path.parent)
        except FileNotFoundError as e:
            raise RecordingError(f"{path.parent} is not a recording: it has no {META_FILE}") from e
        except SharedFileError as e:
            raise RecordingError(f"{e}; the recording's frames may still be readable") from None
        if not isinstance(data, dict):
            raise RecordingError(f"{path} should hold a mapping, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise RecordingError(f"{path}: unknown key(s) {brief(sorted(unknown, key=str))}; known keys: {sorted(known)}")
        missing = {"world", "world_config", "seed", "tick_rate"} - set(data)
        if missing:
            raise RecordingError(f"{path}: missing key(s) {sorted(missing)}")
        hints = typing.get_type_hints(cls)
        for key, value in data.items():
            problem = type_problem(value, hints[key])
            if problem:
                raise RecordingError(f"{path}: {key} {problem}")
        meta = cls(**data)
        # the types are checked above; the ranges here
        if not meta.tick_rate > 0:
            raise RecordingError(f"{path}: tick_rate must be a finite number > 0, got {meta.tick_rate!r}")
        if meta.chunk_ticks < 1:
            raise RecordingError(f"{path}: chunk_ticks must be an integer >= 1, got {meta.chunk_ticks}")
        version = meta.format_version
        if not 1 <= version <= FORMAT_VERSION:
            raise RecordingError(f"{path}: format_version {brief(version)} is not one this dreamwalk reads (1 to "
                                 f"{FORMAT_VERSION}); a newer dreamwalk made it, update to read it")
        return meta

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.__dict__, sort_keys=False)


@dataclass
class StepRecord:
    """One recorded step: the observation and the action that produced it."""

    index: int  # row in the recording (0..len-1)
    episode: int
    reset: bool  # True for the first observation of an episode
    seed: int | None  # the reset seed, on reset rows
    time: float  # seconds since the recording started (wall clock, informational)
    action: Action | None
    obs: Observation
    commands: list[str] = field(default_factory=list)  # world commands given before this step (ticks.jsonl "commands")


class RecordingWriter:
    """Writes a session; `write` is cheap (compression and video run on background threads).

    Durability: frames are copied when written (the caller may reuse its arrays), and the lossless chunks
    are half a second long (`chunk_ticks` = tick_rate / 2 unless the meta sets it). A full chunk is handed to
    the writer thread only once the chunk before it is on disk; until then `write` waits (back-pressure,
    `on_backpressure` is called first). So at any moment at most one chunk is being written and one being
    filled: a SIGKILL loses less than one second of ticks, however slow the disk or the video encoder. The
    mp4 has its own thread and bounded queue; when it falls behind, `write` waits for it too.

    Usage:
        with RecordingWriter(path, meta) as rec:
            rec.write(obs, action=None, reset=True, seed=seed)
            rec.write(world.step(a), a)
    """

    def __init__(self, path: str | Path, meta: RecordingMeta, video: bool = True, video_min_size: int = 256,
                 prefix: tuple[int, np.ndarray] | None = None,
                 prefix_commands: dict[int, list[str]] | None = None) -> None:
        """`prefix`: (reset seed, actions since that reset) when recording starts mid-episode, so that
        `replay --verify` can rebuild the world's state at the first row; `prefix_commands` {k: world commands
        given before the prefix's step k} (the memory toggled off, a view changed) so that it rebuilds it exactly."""
        self.path = Path(path)
        rate = meta.tick_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (math.isfinite(rate) and rate > 0):
            raise RecordingError(f"a recording's tick_rate must be a finite number > 0 ticks/s, got {rate!r}")
        if self.path.exists() and not self.path.is_dir():
            raise RecordingError(f"refusing to record into {self.path}: it is an existing file (choose a new directory)")
        clear_unstarted(self.path)
        if self.path.exists() and any(self.path.iterdir()):
            raise RecordingError(f"refusing to record into {self.path}: it is not empty (choose a new directory)")
        try:
            (self.path / FRAMES_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RecordingError(f"cannot record into {self.path}: {e.strerror or e}") from None
        self.meta = meta
        self.meta.created = self.meta.created or time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self._video_enabled = video
        self._video_min_size = video_min_size
        if not self.meta.chunk_ticks:
            self.meta.chunk_ticks = max(1, int(float(self.meta.tick_rate) // 2))  # half a second per chunk
        self._ticks = open(self.path / TICKS_FILE, "a", buffering=1)  # line-buffered: each row reaches the OS
        self._buf: list[tuple[Observation, Action | None]] = []
        self._index = 0
        self._episode = -1
        self._chunk = 0
        self._t0 = time.perf_counter()
        self._write_ms: list[float] = []
        # Back-pressure: chunk k is queued only once chunk k-1 is on disk (see the class docstring), so unsaved
        # frames never pile up in memory, where a crash would lose them.
        self.on_backpressure = None  # called (with the chunk index) before `write` waits for the disk: tests
        self._jobs: queue.Queue = queue.Queue(maxsize=1)
        self._saved = 0  # chunks on disk
        self._saved_cond = threading.Condition()
        self._video_jobs: queue.Queue = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._worker = threading.Thread(target=self._work, name="recording-writer", daemon=True)
        self._worker.start()
        self._video_worker = threading.Thread(target=self._video_work, name="recording-video", daemon=True)
        if video:
            self._video_worker.start()
        self._video = None
        self._closed = False
        self._has_prefix = prefix is not None
        if prefix is not None:
            self.meta.extra["prefix_seed"] = int(prefix[0])
            self.meta.extra["prefix_steps"] = len(prefix[1])
            if prefix_commands:
                self.meta.extra["prefix_commands"] = [[int(k), [str(c) for c in v]]
                                                      for k, v in sorted(prefix_commands.items()) if v]
            # float64, not the float32 training encoding: replay must feed back the exact look deltas.
            arr = np.asarray(prefix[1], np.float64).reshape(-1, len(ACTION_NAMES))  # engine.action.ActionLog.array
            with open(self.path / (PREFIX_FILE + ".tmp"), "wb") as f:
                np.save(f, arr, allow_pickle=False)
            os.replace(self.path / (PREFIX_FILE + ".tmp"), self.path / PREFIX_FILE)
        atomic_write_text(self.path / META_FILE, self.meta.to_yaml())

    # -- foreground ------------------------------------------------------------------------------

    def write(self, obs: Observation, action: Action | None = None, reset: bool = False, seed: int | None = None,
              commands: list[str] | None = None) -> None:
        """Append one step. `reset=True` starts an episode (then `action` is None and `seed` is given).
        `commands`: the world commands (e.g. "memory", "view") given since the previous step, before this one."""
        if self._closed:
            raise RecordingError("write() after close()")
        if self._error is not None:
            raise RecordingError(_io_failure(self.path, self._error)) from self._error
        if reset or (self._episode < 0 and self._has_prefix):
            self._episode += 1
        elif self._episode < 0:
            raise RecordingError("the first row of a recording must be a reset observation (reset=True), "
                                 "or the writer needs the episode's prefix of actions")
        if not self.meta.resolution:
            self.meta.resolution = [int(obs.rgb.shape[0]), int(obs.rgb.shape[1])]
            self.meta.has_depth = obs.depth is not None
            self.meta.has_dynamic_mask = obs.dynamic_mask is not None
            self._io(atomic_write_text, self.path / META_FILE, self.meta.to_yaml())
        elif list(obs.rgb.shape[:2]) != self.meta.resolution:
            raise RecordingError(f"frame size {obs.rgb.shape[:2]} differs from the recording's {self.meta.resolution}")
        row = {
            "i": self._index,
            "tick": int(obs.tick),
            "episode": self._episode,
            "reset": bool(reset),
            "seed": seed if reset else None,
            "time": round(time.perf_counter() - self._t0, 6),
            "action": action.to_json() if action is not None else None,
            "cam_to_world": obs.cam_to_world.tolist() if obs.cam_to_world is not None else None,
            "K": obs.K.tolist() if obs.K is not None else None,
            "info": obs.info,
        }
        if commands:
            row["commands"] = [str(c) for c in commands]
        # A copy: the caller (a policy drawing into obs.rgb, a world reusing its buffers) may change the arrays.
        self._buf.append((_copy_frames(obs), action))
        self._index += 1
        if len(self._buf) >= self.meta.chunk_ticks:
            self._flush_chunk()
        # The JSONL row goes out after its frame is queued, so a row never points at a chunk that
        # was never going to be written.
        self._io(self._ticks.write, json.dumps(row, separators=(",", ":")) + "\n")

    def _io(self, fn: Any, *args: Any) -> None:
        """A foreground write (a ticks.jsonl row, meta.yaml); an OSError (disk full) fails the recording the way a
        failed chunk does: one line, what was written before stays readable, close() marks it failed."""
        try:
            fn(*args)
        except OSError as e:
            self._error = self._error or e
            raise RecordingError(_io_failure(self.path, e)) from e

    def _flush_chunk(self) -> None:
        if not self._buf:
            return
        start = time.perf_counter()
        with self._saved_cond:  # at most one chunk in flight: wait until the one before this is on disk
            if self._saved < self._chunk and self._error is None and self.on_backpressure is not None:
                self.on_backpressure(self._chunk)
            while self._saved < self._chunk and self._error is None:
                self._saved_cond.wait()
        frames = self._buf
        self._buf = []
        self._jobs.put((self._chunk, frames))
        if self._video_worker.is_alive():
            self._video_jobs.put(frames)
        self._chunk += 1
        self._write_ms.append((time.perf_counter() - start) * 1e3)

    def close(self, status: str = "complete") -> None:
        """Flush the last chunk, finish the video and mark the recording `status` ("complete"; a rollout
        episode cut short by an exception is "interrupted", so that it is redone)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._flush_chunk()
        finally:
            self._jobs.put(None)
            self._worker.join()
            if self._video_worker.is_alive():
                self._video_jobs.put(None)
                self._video_worker.join()
            self._ticks.close()
            self.meta.status = status if self._error is None else "failed"
            if self._error is not None:
                self.meta.extra["error"] = str(self._error)
            self.meta.steps = self._index
            try:
                atomic_write_text(self.path / META_FILE, self.meta.to_yaml())
            except OSError as e:  # the last meta.yaml on disk stays (status "recording": an unfinished recording)
                self._error = self._error or e
        if self._error is not None:
            raise RecordingError(_io_failure(self.path, self._error)) from self._error

    @property
    def steps(self) -> int:
        return self._index

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        # Left by an exception (an error, Ctrl-C inside a rollout episode): what was written stays readable,
        # marked "interrupted" rather than complete.
        self.close("complete" if exc_type is None else "interrupted")

    # -- background ------------------------------------------------------------------------------

    def _work(self) -> None:
        """The lossless chunks, in order; each one counts as saved once renamed into place."""
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    break
                chunk, frames = job
                self._write_chunk(chunk, frames)
                with self._saved_cond:
                    self._saved = chunk + 1
                    self._saved_cond.notify_all()
        except BaseException as e:  # surfaced on the next write()/close()
            with self._saved_cond:
                self._error = e
                self._saved_cond.notify_all()
            # Keep draining so the foreground never blocks on a full queue.
            while self._jobs.get() is not None:
                pass

    def _video_work(self) -> None:
        """The mp4, for people; a failure here is reported like a chunk's."""
        try:
            while True:
                frames = self._video_jobs.get()
                if frames is None:
                    break
                self._append_video(frames)
        except BaseException as e:
            with self._saved_cond:
                self._error = self._error or e
                self._saved_cond.notify_all()
            while self._video_jobs.get() is not None:
                pass
        finally:
            if self._video is not None:
                try:
                    self._video.close()
                except Exception:
                    pass

    def _write_chunk(self, chunk: int, frames: list[tuple[Observation, Action | None]]) -> None:
        arrays: dict[str, np.ndarray] = {"rgb": np.stack([o.rgb for o, _ in frames])}
        if self.meta.has_depth:
            arrays["depth"] = np.stack([o.depth for o, _ in frames]).astype(np.float32)
        if self.meta.has_dynamic_mask:
            arrays["dynamic_mask"] = np.stack([o.dynamic_mask for o, _ in frames]).astype(bool)
        final = self.path / FRAMES_DIR / f"{chunk:06d}.npz"
        tmp = final.with_name(final.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                write_npz(f, arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a half-written chunk (disk full) is not left behind
            raise

    def _append_video(self, frames: list[tuple[Observation, Action | None]]) -> None:
        h, w = frames[0][0].rgb.shape[:2]
        # Small model-resolution frames are upscaled (nearest) so the video is watchable.
        scale = max(1, -(-self._video_min_size // max(h, w)))
        if self._video is None:
            import imageio_ffmpeg

            self._video = imageio_ffmpeg.write_frames(
                str(self.path / VIDEO_FILE),
                (w * scale, h * scale),
                fps=self.meta.tick_rate,
                codec="libx264",
                pix_fmt_out="yuv420p",
                quality=None,
                macro_block_size=1,
                ffmpeg_log_level="error",
                # Fragmented MP4: every fragment is self-contained, so a killed session still plays.
                output_params=["-crf", "18", "-movflags", "+frag_keyframe+empty_moov+default_base_moof"],
            )
            self._video.send(None)
        for obs, _ in frames:
            img = obs.rgb if scale == 1 else obs.rgb.repeat(scale, 0).repeat(scale, 1)
            self._video.send(np.ascontiguousarray(img))


def _matrix_problem(value: Any, n: int) -> str | None:
    if value is None:
        return None
    try:
        a = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        return f"must be a {n}x{n} list of numbers or null"
    if a.shape != (n, n):
        return f"must be {n}x{n}, got shape {list(a.shape)}"
    if not np.all(np.isfinite(a)):
        return "holds NaN or infinity"
    return None


def _row_problem(row: Any) -> str | None:
    """What is wrong with one ticks.jsonl row as the writer writes it, or None."""
    if not isinstance(row, dict):
        return f"a row must be a JSON object, got {type(row).__name__}"
    for key in ("tick", "episode"):
        v = row.get(key)
        if isinstance(v, bool) or not isinstance(v, int):
            return f"'{key}' must be an integer, got {v!r:.40}"
    if not isinstance(row.get("reset"), bool):
        return f"'reset' must be true or false, got {row.get('reset')!r:.40}"
    t = row.get("time")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
        return f"'time' must be a finite number, got {t!r:.40}"
    seed = row.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        return f"'seed' must be an integer or null, got {seed!r:.40}"
    if "action" not in row or "cam_to_world" not in row or "K" not in row:
        return "a row needs 'action', 'cam_to_world' and 'K' (null where there is none)"
    if row["action"] is not None:
        try:
            Action.from_json(row["action"])
        except (ValueError, TypeError) as e:
            return f"'action': {e}"
    for key, n in (("cam_to_world", 4), ("K", 3)):
        problem = _matrix_problem(row[key], n)
        if problem:
            return f"'{key}' {problem}"
    cmds = row.get("commands", [])
    if not isinstance(cmds, list) or not all(isinstance(c, str) for c in cmds):
        return "'commands' must be a list of command names"
    if row.get("info") is not None and not isinstance(row["info"], dict):
        return "'info' must be an object"
    return None


# What a frame chunk may hold: name -> (dtype, trailing shape given the recording's (H, W))
_CHUNK_ARRAYS = {"rgb": (np.uint8, lambda h, w: (h, w, 3)), "depth": (np.float32, lambda h, w: (h, w)),
                 "dynamic_mask": (np.bool_, lambda h, w: (h, w))}


def _check_chunk_headers(path: Path, rows: int, resolution: list[int] | None) -> int:
    """Read each array's .npy header in a chunk and check its name, dtype and shape (`rows` frames at `resolution`)
    before any data is read: a small damaged file cannot ask for gigabytes. Returns the chunk's frame count."""
    frames = 0
    with zipfile.ZipFile(path) as z:
        names = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
        if "rgb" not in names:
            raise ValueError("it has no 'rgb' array")
        for name in names:
            if name not in _CHUNK_ARRAYS:
                raise ValueError(f"unknown array {name!r}")
            with z.open(name + ".npy") as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(f)
            want_dtype, trailing = _CHUNK_ARRAYS[name]
            if dtype != np.dtype(want_dtype):
                raise ValueError(f"{name!r} is {dtype}, not {np.dtype(want_dtype)}")
            h, w = (resolution or shape[1:3])[:2] if len(shape) >= 3 else (0, 0)
            if len(shape) < 1 or tuple(shape[1:]) != trailing(int(h), int(w)):
                raise ValueError(f"{name!r} has shape {list(shape)}, not [frames, {', '.join(map(str, trailing(h, w)))}]")
            if shape[0] < rows:
                raise ValueError(f"{name!r} holds {shape[0]} frames for {rows} logged steps")
            frames = max(frames, int(shape[0]))
    return frames


class Recording:
    """Read access to a recording directory, complete or cut short by a crash.

    `len(rec)` counts the steps whose frames were saved; `rec[i]` and iteration give `StepRecord`s.
    A recording cut short is readable up to its last saved chunk (`rec.truncated` tells).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise RecordingError(f"no recording at {self.path}: not a directory")
        self.meta = RecordingMeta.load(self.path / META_FILE)
        self.rows = self._read_rows()
        self._chunk_cache: tuple[int, dict[str, np.ndarray]] | None = None
        chunks = self._saved_chunks()
        self._check_chunking(chunks)
        # Only rows whose chunk is on disk are readable.
        n_frames = 0
        for c in range(len(chunks) + 1):
            if c not in chunks:
                break
            n_frames = min(len(self.rows), (c + 1) * self.meta.chunk_ticks)
        self._len = n_frames
        self.truncated = self.meta.status != "complete" or self._len < len(self.rows)
        if self._len == 0 and self.rows:
            raise RecordingError(
                f"{self.path}: {len(self.rows)} steps were logged but no frame chunk was saved "
                "(the session ended before its first second was written)"
            )

    def _check_chunking(self, chunks: set[int]) -> None:
        """meta.yaml's chunk_ticks against the chunks on disk (names, and the first chunk's frame count from its header):
        a chunk_ticks that disagrees would pair frames with the wrong rows, and --verify would compare too few."""
        per = self.meta.chunk_ticks
        expected = -(-len(self.rows) // per)
        beyond = sorted(c for c in chunks if c >= expected)
        problem = None
        if beyond:
            problem = f"there are frame chunks up to {max(chunks):06d}.npz, but {len(self.rows)} rows make {expected}"
        elif 0 in chunks and (self.path / FRAMES_DIR / "000000.npz").is_file():  # else reading it says what it is
            want = min(per, len(self.rows))
            try:
                n = _check_chunk_headers(self.path / FRAMES_DIR / "000000.npz", want, self.meta.resolution)
            except Exception as e:  # noqa: BLE001 (any header problem is the same one-line damage)
                n, problem = 0, f"frames/000000.npz does not hold its {want} frames ({e})"
            # a full chunk holds exactly chunk_ticks frames; a recording's only chunk may hold one more frame than
            # rows (a crash cut the last line of ticks.jsonl)
            if not problem and n != want and not (len(self.rows) < per and n == len(self.rows) + 1):
                problem = f"frames/000000.npz holds {n} frames, where chunk_ticks and {len(self.rows)} rows make {want}"
        if problem:
            raise RecordingError(f"{self.path}: meta.yaml's chunk_ticks ({per}) disagrees with its frames: {problem}; "
                                 "the recording is damaged (re-record it)")

    def _read_rows(self) -> list[dict[str, Any]]:
        path = self.path / TICKS_FILE
        if not path.exists():
            raise RecordingError(f"{self.path} has no {TICKS_FILE}: not a recording, or it was deleted")
        try:
            check_regular(path, within=self.path)
        except SharedFileError as e:
            raise RecordingError(f"{e}: the recording is damaged") from None
        rows = []
        with open(path, "rb") as f:
            for n, raw in enumerate(f):
                if not raw.endswith(b"\n"):
                    break  # the last line was cut by a crash: drop it, keep the rest
                try:
                    row = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    raise RecordingError(f"{path}:{n + 1} is not valid UTF-8 JSON ({e}); the recording is damaged "
                                         "there") from None
                problem = _row_problem(row)
                if problem:
                    raise RecordingError(f"{path}:{n + 1}: {problem}; the recording is damaged there (re-record it)")
                rows.append(row)
        return rows

    def _saved_chunks(self) -> set[int]:
        out = set()
        for p in (self.path / FRAMES_DIR).glob("*.npz"):
            try:
                out.add(int(p.stem))
            except ValueError:
                pass
        return out

    def __len__(self) -> int:
        return self._len

    def _chunk(self, c: int) -> dict[str, np.ndarray]:
        if self._chunk_cache is None or self._chunk_cache[0] != c:
            path = self.path / FRAMES_DIR / f"{c:06d}.npz"
            rows = min(self.meta.chunk_ticks, len(self.rows) - c * self.meta.chunk_ticks)
            try:
                if not path.is_file():
                    raise ValueError("not a regular file")
                check_regular(path, within=self.path)  # no link out of the recording
                _check_chunk_headers(path, rows, self.meta.resolution)  # shapes and types, before reading a byte more
                with np.load(path, allow_pickle=False) as z:
                    data = {k: z[k] for k in z.files}
            except Exception as e:
                raise RecordingError(f"frame chunk {path} is unreadable ({e}); the recording is damaged there") from None
            self._chunk_cache = (c, data)
        return self._chunk_cache[1]

    def __getitem__(self, i: int) -> StepRecord:
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(f"step {i} out of range for a recording of {self._len} steps")
        row = self.rows[i]
        c, j = divmod(i, self.meta.chunk_ticks)
        data = self._chunk(c)
        obs = Observation(
            rgb=data["rgb"][j],
            depth=data["depth"][j] if "depth" in data else None,
            cam_to_world=np.array(row["cam_to_world"], np.float64) if row["cam_to_world"] is not None else None,
            K=np.array(row["K"], np.float64) if row["K"] is not None else None,
            tick=int(row["tick"]),
            info=row.get("info") or {},
            dynamic_mask=data["dynamic_mask"][j] if "dynamic_mask" in data else None,
        )
        action = Action.from_json(row["action"]) if row["action"] is not None else None
        return StepRecord(
            index=i,
            episode=int(row["episode"]),
            reset=bool(row["reset"]),
            seed=row.get("seed"),
            time=float(row["time"]),
            action=action,
            obs=obs,
            commands=list(row.get("commands") or []),
        )

    def __iter__(self) -> Iterator[StepRecord]:
        for i in range(self._len):
            yield self[i]

    @property
    def prefix(self) -> tuple[int, list[Action]] | None:
        """(reset seed, actions from that reset to the first row) for recordings started mid-episode."""
        if "prefix_seed" not in self.meta.extra:
            return None
        try:
            arr = np.load(self.path / PREFIX_FILE, allow_pickle=False)
        except Exception as e:
            raise RecordingError(f"{self.path / PREFIX_FILE} is missing or unreadable ({e})") from e
        return int(self.meta.extra["prefix_seed"]), [Action.from_array(a) for a in arr]

    @property
    def prefix_commands(self) -> dict[int, list[str]]:
        """{k: world commands given before the prefix's step k} (empty when none were)."""
        raw = self.meta.extra.get("prefix_commands", [])
        try:
            out = {int(k): [str(c) for c in v] for k, v in raw if isinstance(v, list) and all(isinstance(c, str) for c in v)}
            if len(out) != len(raw):
                raise ValueError
        except (TypeError, ValueError):
            raise RecordingError(f"{self.path / META_FILE}: prefix_commands must be a list of [step, [command, ...]] "
                                 "pairs; the recording is damaged") from None
        return out

    def actions_array(self) -> np.ndarray:
        """float32 [N, ACTION_DIM]; reset rows are zeros (see `resets_array`)."""
        out = np.zeros((self._len, len(ACTION_NAMES)), np.float32)
        for i in range(self._len):
            a = self.rows[i]["action"]
            if a is not None:
                out[i] = Action.from_json(a).to_array()
        return out

    def resets_array(self) -> np.ndarray:
        """bool [N]: True where an episode starts."""
        return np.array([bool(self.rows[i]["reset"]) for i in range(self._len)], bool)
