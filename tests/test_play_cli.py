"""play.py as a user runs it: headless runs, the no-display demo, and clean errors for bad input."""

import json
import os
import subprocess
import sys

import pytest

from engine.recording import Recording
from tests.conftest import ROOT


def run_play(*args, env_extra=None, timeout=120):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "play.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_headless_script_run_records_and_verifies(tmp_path):
    out = tmp_path / "tour"
    p = run_play("--world", "plane", "--headless", "--ticks", "50", "--script", "assets/scripts/tour.yaml",
                 "--record", str(out), "--summary", str(tmp_path / "s.json"), "--no-video")
    assert p.returncode == 0, p.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["ticks"] == 50 and summary["headless"] is True
    assert len(Recording(out)) == 51
    v = subprocess.run([sys.executable, "-m", "engine.replay", str(out), "--verify"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert v.returncode == 0 and "MATCH" in v.stdout


def test_no_display_runs_a_recorded_demo_and_says_so(tmp_path):
    p = run_play("--world", "plane", "--ticks", "30", "--record", str(tmp_path / "demo"))
    assert p.returncode == 0, p.stderr
    assert "No display" in p.stdout and "headless demo" in p.stdout
    assert "video.mp4" in p.stdout and "engine.replay" in p.stdout
    assert len(Recording(tmp_path / "demo")) == 31
    assert (tmp_path / "demo" / "video.mp4").stat().st_size > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--world", "nowhere"], "no world named 'nowhere'"),
        (["--world", "plane", "--script", "missing.yaml"], "does not exist"),
        (["--world", "plane", "--policy", "nope"], "no policy named"),
        (["--world", "plane", "--keymap", "assets/scripts/tour.yaml"], "must map sections"),
        (["--world", "plane", "--set", "width=1"], "width/height must be >= 2"),
        (["--world", "plane", "--set", "colour=red"], "world 'plane' has no setting 'colour'; its settings are width, height"),
        (["--world", "plane", "--ticks", "0"], "--ticks must be positive"),
        (["--world", "dream", "--set", "device=cpu"], "--set device=...: give it as --device cpu instead"),
        (["--world", "dream", "--set", "checkpoint=assets/model"], "give it as --checkpoint assets/model instead"),
        (["--world", "plane", "--size", "big"], "--size takes WxH"),
    ],
)
def test_bad_input_is_one_clear_line_not_a_traceback(args, message):
    p = run_play("--headless", *args)
    assert p.returncode == 2
    assert message in p.stderr
    assert "Traceback" not in p.stderr


def test_nan_from_a_policy_is_reported_cleanly(tmp_path):
    mod = tmp_path / "nanpolicy.py"
    mod.write_text("from engine import Action\n"
                   "def policy(obs):\n"
                   "    return Action(yaw=float('nan')) if obs.tick >= 3 else Action()\n")
    p = run_play("--world", "plane", "--headless", "--ticks", "10", "--policy", "nanpolicy:policy",
                 env_extra={"PYTHONPATH": str(tmp_path)})
    assert p.returncode == 2, p.stderr
    assert "policy 'nanpolicy:policy' raised at tick 3" in p.stderr and "finite" in p.stderr
    assert "Traceback" not in p.stderr


def test_list_worlds():
    p = run_play("--list-worlds")
    assert p.returncode == 0 and "plane" in p.stdout and "arena" in p.stdout


def test_plain_play_dreams_with_the_shipped_model(tmp_path):
    # What a new user's first `python play.py` runs: the committed model, no --world or --checkpoint.
    assert (ROOT / "assets" / "model" / "model.safetensors").is_file(), "the shipped model is missing from assets/model"
    p = run_play("--headless", "--ticks", "20", "--summary", str(tmp_path / "s.json"))
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["world"] == "dream" and summary["ticks"] == 20


WINDOW_GAME = '''
from engine import World


class NoSuchDisplayException(Exception):
    pass


class WindowGame(World):
    name = "windowgame"
    config = {}

    def __init__(self):
        raise NoSuchDisplayException('Cannot connect to "None"')

    def reset(self, seed):
        pass

    def step(self, action):
        pass
'''


def test_a_game_that_needs_a_display_says_so_in_one_line(tmp_path):
    """A game of one's own that opens a window, run where there is no display: one line naming DISPLAY and Xvfb
    (it was a 46-line traceback after the headless demo was announced)."""
    import os

    (tmp_path / "windowgame.py").write_text(WINDOW_GAME)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(tmp_path)
    recordings = ROOT / "recordings"
    before = set(recordings.iterdir()) if recordings.exists() else set()
    p = subprocess.run([sys.executable, "play.py", "--world", "windowgame:WindowGame", "--ticks", "3"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=120)
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert p.returncode == 2 and len(errors) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "needs a display to start (NoSuchDisplayException" in errors[0] and "xvfb-run" in errors[0]
    assert (set(recordings.iterdir()) if recordings.exists() else set()) == before  # no empty demo folder left
