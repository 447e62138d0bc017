"""Files written whole or not at all: the one way the project writes a file people keep (.ply, screenshots,
reports, plots, configs).

    with atomic_path(Path("memory/scene.ply")) as tmp:
        write_to(tmp)

The content goes to a temporary file beside the target (same folder, the target's name + ".tmp"); once the block ends it is flushed to disk (fsync) and renamed over the target, which
readers therefore see either as it was or as it now is. If the block raises (a full disk, a file-size limit, a
kill), the temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def io_reason(error: BaseException) -> str:
    """Why a write failed, in a few words for a person (the disk is full, a file-size limit, permission...)."""
    if isinstance(error, OSError):
        if error.errno == errno.ENOSPC:
            return "the disk is full"
        if error.errno == errno.EFBIG:
            return "the file is over this system's file-size limit"
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"no permission to write {error.filename or 'there'}"
        return error.strerror or str(error)
    return str(error)


def temp_beside(path: Path) -> Path:
    """The temporary name `atomic_path` writes to: the target's name + ".tmp", in its folder."""
    return path.with_name(path.name + ".tmp")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write the content of `path` to; published by an fsync and a rename when the block ends
    (module docstring). The folder is created when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` whole or not at all."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_png(rgb, path: str | Path) -> None:
    """Write an RGB image [H, W, 3] uint8 as PNG (through pygame, already a dependency), whole or not at all."""
    import numpy as np
    import pygame

    rgb = np.ascontiguousarray(rgb, np.uint8)
    surface = pygame.image.frombuffer(rgb.tobytes(), (rgb.shape[1], rgb.shape[0]), "RGB")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            pygame.image.save(surface, f, "png")


class FolderBusyError(RuntimeError):
    """Another running process holds the lock on this folder."""


@contextmanager
def folder_lock(folder: Path, lock_file: str, who: str) -> Iterator[Path]:
    """Hold `folder/lock_file` while a `who` (a rollout, a training run) writes into `folder`: FolderBusyError when a
    live process holds it (this one included).

    The lock is an flock on the file (the kernel drops it when its process dies, however it dies), so a lock left by
    a killed process is taken over; the file holds the owner's pid for the message."""
    import fcntl

    path = Path(folder) / lock_file
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise FolderBusyError(f"{folder} is in use by another {who} (pid {owner}, lock {path}); wait for it to "
                                  f"finish or stop it, or choose another --out") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file between our open and our lock: take the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)
