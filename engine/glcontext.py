"""Use a standalone moderngl context without stealing the current one (e.g. the game window's).

`with ctx:` on a moderngl EGL standalone context (glcontext 3.1) makes it current on entry but, on
exit, releases it instead of restoring what was current before; creating the context also leaves it
current. A pygame window's context in the same thread would then silently draw nowhere. `borrowed(ctx)`
saves the thread's current EGL and GLX contexts (whichever exist), runs the block inside `with ctx:`,
and makes the saved ones current again. With no context current before, it is just `with ctx:`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from contextlib import contextmanager
from typing import Any, Iterator

_EGL_DRAW, _EGL_READ = 0x3059, 0x305A


def _load(names: tuple[str, ...]) -> Any:
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


_egl = _load(("libEGL.so.1", "libEGL.so"))
if _egl is not None:
    for _f in ("eglGetCurrentContext", "eglGetCurrentDisplay", "eglGetCurrentSurface"):
        getattr(_egl, _f).restype = ctypes.c_void_p
    _egl.eglGetCurrentSurface.argtypes = [ctypes.c_int32]
    _egl.eglMakeCurrent.argtypes = [ctypes.c_void_p] * 4
    _egl.eglMakeCurrent.restype = ctypes.c_uint32

_glx = _load(("libGLX.so.0", "libGL.so.1"))
if _glx is not None:
    try:
        for _f in ("glXGetCurrentContext", "glXGetCurrentDisplay", "glXGetCurrentDrawable"):
            getattr(_glx, _f).restype = ctypes.c_void_p
        _glx.glXMakeCurrent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p]
        _glx.glXGetCurrentDrawable.restype = ctypes.c_ulong
    except AttributeError:
        _glx = None


def _save() -> tuple[tuple | None, tuple | None]:
    egl = glx = None
    if _egl is not None and _egl.eglGetCurrentContext():
        egl = (_egl.eglGetCurrentDisplay(), _egl.eglGetCurrentSurface(_EGL_DRAW),
               _egl.eglGetCurrentSurface(_EGL_READ), _egl.eglGetCurrentContext())
    if _glx is not None and _glx.glXGetCurrentContext():
        glx = (_glx.glXGetCurrentDisplay(), _glx.glXGetCurrentDrawable(), _glx.glXGetCurrentContext())
    return egl, glx


def _restore(saved: tuple[tuple | None, tuple | None]) -> None:
    egl, glx = saved
    if egl is not None:
        _egl.eglMakeCurrent(*egl)
    elif _egl is not None and _egl.eglGetCurrentContext():
        # Nothing was current before: leave nothing current. An EGL context left current makes the
        # X server refuse the GLX context a window creates later in this thread (BadAccess).
        _egl.eglMakeCurrent(_egl.eglGetCurrentDisplay(), None, None, None)
    if glx is not None:
        _glx.glXMakeCurrent(*glx)


def _release_glx(saved: tuple[tuple | None, tuple | None]) -> None:
    # A GLX context left current while EGL takes the thread is still "current" to the X server, and
    # making it current again later fails with BadAccess: release it first.
    if saved[1] is not None:
        _glx.glXMakeCurrent(saved[1][0], 0, None)


@contextmanager
def borrowed(ctx: Any) -> Iterator[Any]:
    """`with borrowed(ctx):` — make `ctx` current for the block, then restore the caller's context."""
    saved = _save()
    _release_glx(saved)
    try:
        with ctx:
            yield ctx
    finally:
        _restore(saved)


@contextmanager
def preserving_current() -> Iterator[None]:
    """Restore the caller's current context after the block (wrap context creation in this)."""
    saved = _save()
    _release_glx(saved)
    try:
        yield
    finally:
        _restore(saved)
