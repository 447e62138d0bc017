"""A real window under Xvfb: it shows the frame it was given, and real key events drive it."""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from engine import make_world
from engine.recording import Recording
from tests.conftest import ROOT

TOOLS = ("Xvfb", "xdotool", "import")
missing = [t for t in TOOLS if shutil.which(t) is None]
pytestmark = [
    pytest.mark.window,
    pytest.mark.skipif(bool(missing), reason=f"needs {missing} (install.sh installs xvfb, xdotool, imagemagick)"),
]


@pytest.fixture
def xvfb():
    """A private X server; yields its DISPLAY."""
    from engine.xvfb import virtual_display

    with virtual_display() as display:
        yield display


def xdo(display, *args, timeout=20):
    out = subprocess.run(["xdotool", *args], env=dict(os.environ, DISPLAY=display), capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout


def grab(display, path):
    subprocess.run(["import", "-window", "root", str(path)], env=dict(os.environ, DISPLAY=display), check=True,
                   timeout=20)
    import pygame

    surf = pygame.image.load(str(path))
    return np.transpose(pygame.surfarray.array3d(surf), (1, 0, 2))  # [H, W, 3]


def test_window_presents_the_frame_and_obeys_keys(xvfb, tmp_path):
    env = dict(os.environ, DISPLAY=xvfb)
    env.pop("SDL_VIDEODRIVER", None)
    record = tmp_path / "rec"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "play.py"), "--world", "plane", "--set", "width=64", "--set", "height=64",
         "--size", "640x640", "--seed", "3", "--record", str(record), "--no-video", "--filter", "nearest"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wid = xdo(xvfb, "search", "--sync", "--class", "dreamwalk").split()[0]
        geo = dict(line.split("=") for line in xdo(xvfb, "getwindowgeometry", "--shell", wid).split())
        x, y, w, h = (int(geo[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
        assert (w, h) == (640, 640)
        time.sleep(1.0)  # a few ticks presented
        shot = grab(xvfb, tmp_path / "shot.png")[y:y + h, x:x + w]

        # The frame the window must show: the world's tick-0 view (it stands still), upscaled 10x with
        # nearest filtering. The HUD covers the top-left, so compare the lower half.
        expected = make_world("plane", width=64, height=64).reset(3).rgb.repeat(10, 0).repeat(10, 1)
        lower = slice(320, 640)
        assert np.array_equal(shot[lower], expected[lower])
        assert not np.array_equal(shot[:200, :200], expected[:200, :200])  # the HUD is drawn

        xdo(xvfb, "windowfocus", "--sync", wid)
        xdo(xvfb, "keydown", "w")
        time.sleep(0.6)
        xdo(xvfb, "keyup", "w")
        xdo(xvfb, "key", "F12")
        time.sleep(0.4)
        xdo(xvfb, "key", "Escape")  # frees the mouse
        time.sleep(0.2)
        xdo(xvfb, "key", "Escape")  # quits
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    rec = Recording(record)
    forward = [r for r in rec if r.action is not None and r.action.forward]
    assert 6 <= len(forward) <= 20, len(forward)  # ~0.6 s of a held key at 20 ticks/s
    moved = np.linalg.norm(rec[len(rec) - 1].obs.cam_to_world[:3, 3] - rec[0].obs.cam_to_world[:3, 3])
    assert moved > 0.5
    shots = sorted((tmp_path / "screenshots").glob("*.png"))
    assert len(shots) == 2 and "saved" in out
    import pygame

    sizes = {p.name.endswith("-frame.png"): pygame.image.load(str(p)).get_size() for p in shots}
    assert sizes == {False: (640, 640), True: (64, 64)}  # the window as shown, and the world's own frame


def test_arena_plays_in_the_window(xvfb, tmp_path):
    """The arena's own (EGL) GL context and the window's context live in one thread without stealing."""
    env = dict(os.environ, DISPLAY=xvfb)
    env.pop("SDL_VIDEODRIVER", None)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "play.py"), "--world", "arena", "--set", "width=64", "--set", "height=64",
         "--size", "320x320", "--summary", str(tmp_path / "s.json")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wid = xdo(xvfb, "search", "--sync", "--class", "dreamwalk").split()[0]
        geo = dict(line.split("=") for line in xdo(xvfb, "getwindowgeometry", "--shell", wid).split())
        time.sleep(1.5)
        x, y = int(geo["X"]), int(geo["Y"])
        shot = grab(xvfb, tmp_path / "arena.png")[y + 160:y + 320, x:x + 320]  # below the HUD
        xdo(xvfb, "windowfocus", "--sync", wid)
        xdo(xvfb, "key", "Escape")
        time.sleep(0.2)
        xdo(xvfb, "key", "Escape")
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert shot.std() > 10  # a rendered scene, not a black or cleared window
    import json

    assert json.loads((tmp_path / "s.json").read_text())["ticks"] > 10


FOCUS_SCRIPT = """
import pygame
from engine.input import InputAccumulator, Keymap
from engine.window import WindowFrontend

front = WindowFrontend(Keymap.load(), size=(320, 240))
inp = InputAccumulator()
def esc():
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE, mod=0, unicode="", scancode=41))
    return "quit" in front.poll(inp, 0.0)
front.capture(True)
pygame.event.post(pygame.event.Event(pygame.WINDOWFOCUSLOST))
front.poll(inp, 0.0)
print(front.captured, esc(), esc())  # focus lost: freed; the first Esc arms, the second quits
front.capture(True)
print(esc(), esc())  # captured: the first Esc frees the mouse, the second quits
front.close()
"""


def test_after_a_focus_change_one_esc_does_not_quit(xvfb):
    """Focus lost (alt-tab) frees the mouse; back in the window, the Esc a player presses to free it must not quit:
    it arms the quit, which the next Esc does."""
    env = dict(os.environ, DISPLAY=xvfb)
    env.pop("SDL_VIDEODRIVER", None)
    p = subprocess.run([sys.executable, "-c", FOCUS_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == ["False", "False", "True", "False", "True"], p.stdout
