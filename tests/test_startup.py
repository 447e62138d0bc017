"""Start-up: progress on the terminal from the first second, and the window opens with a loading screen before the
world (torch, the model, its prompt world) loads, then shows the first frame in the same window."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import engine.app
import engine.window
from engine.game import HeadlessFrontend

ROOT = Path(__file__).resolve().parent.parent


class FakeWindow(HeadlessFrontend):
    def __init__(self, events):
        super().__init__()
        self.headless, self.events, self.keymap, self.presented = False, events, None, 0

    def loading(self, text):
        self.events.append(("loading", text))

    def present(self, obs, hud):
        super().present(obs, hud)
        self.presented += 1

    def poll(self, inp, now):
        return []


def test_play_opens_the_window_with_a_loading_screen_before_building_the_world(monkeypatch, capsys):
    import play

    events: list[tuple[str, str]] = []
    window = FakeWindow(events)
    monkeypatch.setattr(engine.window, "display_available", lambda: (True, ""))
    monkeypatch.setattr(engine.app, "open_frontend", lambda *a, **k: (events.append(("open", "")), (window, False))[1])
    real_make = play.make_world

    def make_world(name, **config):
        events.append(("make_world", name))
        return real_make(name, **config)

    monkeypatch.setattr(play, "make_world", make_world)
    assert play.main(["--world", "plane", "--ticks", "2", "--no-video"]) == 0
    kinds = [k for k, _ in events]
    assert kinds.index("open") < kinds.index("loading") < kinds.index("make_world")
    assert any("starting" in text for k, text in events if k == "loading")
    assert window.presented >= 1  # the first frame went to the window that showed the loading screen
    err = capsys.readouterr().err
    assert err.index("dreamwalk: starting plane") < err.index("dreamwalk: opening the window") < err.index("ready after")


@pytest.mark.skipif(not shutil.which("xvfb-run"), reason="needs xvfb-run")
def test_the_loading_screen_is_not_black(tmp_path):
    code = (
        "import numpy as np\n"
        "from engine.input import Keymap\n"
        "from engine.window import WindowFrontend\n"
        "w = WindowFrontend(Keymap.load(), size=(320, 240), capture_mouse=False)\n"
        "w.loading('loading the model…')\n"
        "px = np.frombuffer(w.ctx.screen.read(components=3), np.uint8)\n"
        "print('BRIGHT', int((px > 150).sum()), 'DARK', int((px < 5).sum()))\n"
        "w.close()\n"
    )
    p = subprocess.run(["xvfb-run", "-a", sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    words = p.stdout.split()
    bright, dark = int(words[words.index("BRIGHT") + 1]), int(words[words.index("DARK") + 1])
    assert bright > 50  # the text
    assert dark == 0  # a tinted background, never the black of an empty window


def test_startup_results_meet_the_target_or_say_so():
    import json

    d = json.loads((ROOT / "bench" / "results" / "startup.json").read_text())
    for mode, m in d["seconds_from_launch"].items():
        assert "first frame" in m["median_warm"], mode
    assert "fp32_gemm_gflops_2_threads" in d["machine"]
