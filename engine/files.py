"""Files written whole or not at all, and shared files read safely: the one way the project writes a file people
keep (.ply, screenshots, reports, plots, configs) and the one way it opens a file people share (model.yaml, a
recording's meta.yaml, keymaps, scripts, training configs, train state).

    with atomic_path(Path("memory/scene.ply")) as tmp:
        write_to(tmp)

The content goes to a temporary file beside the target (same folder, the target's name + ".tmp"); once the block ends it is flushed to disk (fsync) and renamed over the target, which
readers therefore see either as it was or as it now is. If the block raises (a full disk, a file-size limit, a
kill), the temporary file is removed and the target is left as it was.

Reading: `read_shared(path, limit)` opens regular files only (a FIFO, a device or /dev/zero behind a symlink is
refused before a byte is read; optionally the file must resolve inside a given folder) and refuses files over
`limit` bytes; `load_yaml(path)` adds YAML parsed without aliases (a billion-laughs value cannot expand), at most 64
levels deep, with `1e-4` and `1.0e308` read as numbers. Each refusal is one SharedFileError line naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import reprlib
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml


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


def check_write_target(path: str | Path, option: str, folder: bool = False) -> Path:
    """Before any work: `path` can be written as a file (or, with `folder`, as a folder): not an existing folder
    (file) in its place, its parent creatable and writable. Raises SharedFileError naming `option`."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise SharedFileError(f"{option} {path} is an existing {'file' if folder else 'folder'}; give a "
                              f"{'folder' if folder else 'file'} path")
    parent = path if folder and path.exists() else path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SharedFileError(f"{option} {path}: cannot create {parent} ({io_reason(e)})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SharedFileError(f"{option} {path}: {parent} is not writable; choose another place")
    return path


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


# -- reading shared files ---------------------------------------------------------------------------------------

YAML_LIMIT = 4 << 20  # bytes: the largest YAML file the project reads (a shipped model.yaml is ~3 KB)
YAML_DEPTH = 64  # nesting levels


class SharedFileError(ValueError):
    """A shared file that cannot be read as one: not a regular file, too large, not UTF-8, not YAML, an alias."""


_BRIEF = reprlib.Repr()
_BRIEF.maxstring = _BRIEF.maxother = 60
_BRIEF.maxlist = _BRIEF.maxdict = _BRIEF.maxtuple = _BRIEF.maxset = 6
_BRIEF.maxlevel = 3


def brief(value: Any) -> str:
    """repr(value) cut to a few dozen characters, for error messages about values read from a file."""
    return _BRIEF.repr(value)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def check_regular(path: str | Path, limit: int | None = None, within: str | Path | None = None) -> int:
    """The size of `path` when it is a regular file (following symlinks) of at most `limit` bytes, resolving inside
    the folder `within` when given; else SharedFileError. FileNotFoundError passes through (callers say what is
    missing in their own words)."""
    path = Path(path)
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise SharedFileError(f"{path} is not a regular file (it is a {_kind(st.st_mode)}): replace it with the file itself")
    if within is not None:
        real, folder = path.resolve(), Path(within).resolve()
        if folder != real.parent and folder not in real.parents:
            raise SharedFileError(f"{path} links outside {within} (to {real}): copy the file into the folder instead")
    if limit is not None and st.st_size > limit:
        raise SharedFileError(f"{path} is {st.st_size:,} bytes, over the {limit:,} this file may hold: it is not one "
                              "this project wrote")
    return st.st_size


def read_shared(path: str | Path, limit: int, within: str | Path | None = None) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (check_regular, on the descriptor that is read, so the
    file cannot be swapped for a FIFO between the check and the read)."""
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))  # a FIFO opens without a writer
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SharedFileError(f"{path} is not a regular file (it is a {_kind(st.st_mode)}): replace it with the "
                                  "file itself")
        check_regular(path, limit, within)
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise SharedFileError(f"{path} is over the {limit:,} bytes this file may hold")
        return data
    finally:
        os.close(fd)


def read_shared_text(path: str | Path, limit: int, within: str | Path | None = None) -> str:
    """read_shared decoded as UTF-8; SharedFileError naming the byte offset when it is not."""
    data = read_shared(path, limit, within)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SharedFileError(f"{path} is not UTF-8 text (byte {e.start}): save it as UTF-8") from None


class _Refused(yaml.YAMLError):
    pass


class SafeYamlLoader(yaml.SafeLoader):
    """yaml.SafeLoader without aliases, at most YAML_DEPTH levels deep, and with YAML 1.2's floats (1e-4, 1.0e308:
    YAML 1.1 reads those as strings)."""

    def compose_node(self, parent, index):  # noqa: ANN001 (PyYAML's signature)
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(f"line {event.start_mark.line + 1}: an alias (*{event.anchor}); this project's files use "
                           "none, write the value out")
        depth = getattr(self, "_depth", 0)
        if depth >= YAML_DEPTH:
            raise _Refused(f"line {self.peek_event().start_mark.line + 1}: nested more than {YAML_DEPTH} levels deep")
        self._depth = depth + 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth


SafeYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def parse_yaml(text: str, where: str) -> Any:
    """YAML text -> plain Python (SafeYamlLoader); SharedFileError on one line naming `where` and the line."""
    try:
        return yaml.load(text, Loader=SafeYamlLoader)  # noqa: S506 (SafeLoader's subclass: plain data only)
    except _Refused as e:
        raise SharedFileError(f"{where}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SharedFileError(f"{where} is not valid YAML{at}: {' '.join(str(problem).split())[:200]}") from None


def load_yaml(path: str | Path, limit: int = YAML_LIMIT, within: str | Path | None = None) -> Any:
    """A shared YAML file -> plain Python: read_shared_text, then parse_yaml."""
    return parse_yaml(read_shared_text(path, limit, within), str(path))
