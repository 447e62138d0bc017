"""Frames between ticks (engine/warp.py): the view pose from the input not yet in the frame, the reprojection's
geometry against known answers, the loop presenting between ticks (and during a tick on the worker thread), and the
window's mesh drawing what the geometry says."""

import math
import os
import threading
import time

import numpy as np
import pytest

from engine import Observation, World, make_world
from engine import warp
from engine.game import Game, LoopConfig
from engine.input import InputAccumulator
from engine.plane import intrinsics, yaw_pitch_to_cam_to_world
from engine.recording import Recording
from tests.test_game import CountingWorld, FakeClock, ScriptedFrontend


def test_a_turn_moves_a_far_plane_by_f_tan_and_nothing_else_changes():
    """A camera turned by yaw sees a fronto-parallel plane's centre pixel f * tan(yaw) to the left; pitch moves it
    down by f * tan(pitch) (image y down); turned twice by a and b is turned by a + b; the identity is the frame."""
    K = intrinsics(64, 64, 90.0)
    c2w = yaw_pitch_to_cam_to_world(np.array([1.0, 1.6, -2.0]), 30.0, 5.0)
    depth = np.full((64, 64), 10.0, np.float32)
    centre = np.array([[32.0, 32.0]])
    f = K[0, 0]
    rel = warp.relative(c2w, warp.turned(c2w, 10.0, 0.0))
    moved = warp.project(centre, depth, K, rel)[0]
    # the point sits 5 deg up the frame's centre ray... the frame centre is on the axis: after a yaw of 10 deg about
    # the world's up (not the camera's y, the camera pitched 5 deg), the centre moves left by ~f * tan(10 deg)
    assert moved[0] == pytest.approx(32.0 - f * math.tan(math.radians(10.0)), abs=0.3)
    rel = warp.relative(c2w, warp.turned(c2w, 0.0, 8.0))
    assert warp.project(centre, depth, K, rel)[0] == pytest.approx([32.0, 32.0 + f * math.tan(math.radians(8.0))], abs=1e-6)
    np.testing.assert_allclose(warp.turned(warp.turned(c2w, 7.0, 3.0), 5.0, -1.0), warp.turned(c2w, 12.0, 2.0), atol=1e-9)
    assert warp.is_identity(warp.relative(c2w, warp.turned(c2w, 0.0, 0.0)))
    assert warp.turned(c2w, 0.0, 200.0)[1, 2] == pytest.approx(math.sin(math.radians(warp.PITCH_LIMIT_DEG)))


def test_a_step_forward_grows_what_is_near_more_than_what_is_far():
    """Moving 1 m toward a plane at 2 m doubles a pixel's distance from the centre; at 100 m it barely moves; the
    carried step is clipped to AHEAD_TICKS ticks; sky and unknown depth are drawn FAR_M away."""
    K = intrinsics(64, 64, 90.0)
    c2w = yaw_pitch_to_cam_to_world(np.zeros(3), 0.0, 0.0)
    forward = c2w[:3, 2]
    px = np.array([[40.0, 32.0]])
    near = warp.project(px, np.full((64, 64), 2.0, np.float32), K, warp.relative(c2w, warp.view_pose(c2w, (0, 0), forward, 1.0)))
    assert near[0, 0] - 32.0 == pytest.approx(2 * 8.0)
    far = warp.project(px, np.full((64, 64), 100.0, np.float32), K, warp.relative(c2w, warp.view_pose(c2w, (0, 0), forward, 1.0)))
    assert far[0, 0] - 32.0 == pytest.approx(8.0 * 100 / 99)
    ahead = warp.view_pose(c2w, (0, 0), forward, 10.0)
    assert np.linalg.norm(ahead[:3, 3]) == pytest.approx(warp.AHEAD_TICKS)
    assert warp.clean_depth(np.array([np.nan, np.inf, -1.0, 0.0, 5.0, 1e9], np.float32)).tolist() == \
        [warp.FAR_M] * 4 + [5.0, warp.FAR_M]


def test_the_mesh_covers_the_frame_and_a_stretched_border():
    verts, tris = warp.grid(8, 6)
    e = warp.border(8, 6)
    assert verts.shape == ((8 + 2 * e) * (6 + 2 * e), 2) and tris.shape == (2 * (8 + 2 * e - 1) * (6 + 2 * e - 1), 3)
    assert verts[:, 0].min() == -e + 0.5 and verts[:, 0].max() == 8 + e - 0.5
    assert tris.min() == 0 and tris.max() == len(verts) - 1


class DepthWorld(CountingWorld):
    """CountingWorld with depth and a camera that walks 0.5 m a tick along -z while `forward` is held."""

    def __init__(self, clock=None, cost=0.0, real_sleep=0.0):
        super().__init__(clock, cost)
        self.real_sleep, self.z, self.threads = real_sleep, 0.0, set()

    def reset(self, seed):
        self.z = 0.0
        return super().reset(seed)

    def step(self, action):
        self.threads.add(threading.get_ident())
        if self.real_sleep:
            time.sleep(self.real_sleep)
        self.z -= 0.5 * action.forward
        return super().step(action)

    def _obs(self):
        c2w = yaw_pitch_to_cam_to_world(np.array([0.0, 1.6, self.z]), 0.0, 0.0)
        return Observation(rgb=np.full((8, 8, 3), self.t % 256, np.uint8), depth=np.full((8, 8), 5.0, np.float32),
                           cam_to_world=c2w, K=intrinsics(8, 8, 90.0), tick=self.t)


class WarpingFrontend(ScriptedFrontend):
    warps = True
    max_fps = 60.0

    def __init__(self, events=()):
        super().__init__(events)
        self.rels = []

    def present(self, obs, hud, rel=None):
        super().present(obs, hud)
        self.rels.append(rel)


def make(world, frontend, clock, source=None, **cfg):
    return Game(world, frontend, LoopConfig(**cfg), input=InputAccumulator(mouse_sensitivity=1.0), source=source,
                clock=clock, sleep=clock.sleep, log=lambda s: None)


def test_mouse_look_is_shown_between_ticks_and_the_ticks_get_the_same_input():
    """Mouse motion every 10 ms: at 60 frames a second the window presents ~3 frames a tick, each turned by the
    motion gathered so far (the yaw in `rel` grows between two ticks); the ticks' actions are what they are without
    frames between ticks; the look latency is under a display frame."""
    def run(warp_on):
        clock = FakeClock()
        events = [(0.01 * i, lambda inp, now: inp.mouse(1.0, 0.0, now)) for i in range(200)]
        frontend = WarpingFrontend(events)
        game = make(DepthWorld(), frontend, clock, tick_rate=20, max_ticks=30, warp=warp_on)
        stats = game.run()
        return game, frontend, stats

    game, frontend, stats = run(True)
    assert stats.frames >= 2.5 * stats.ticks
    turned = [r for r in frontend.rels if r is not None]
    assert len(turned) >= 1.5 * stats.ticks
    assert 0 <= stats.look_latency_ms < 1000 / 60 + 1
    off_game, off_frontend, off_stats = run(False)
    assert all(r is None for r in off_frontend.rels) and off_stats.frames <= off_stats.ticks + 2
    assert off_stats.look_latency_ms > 20  # shown with the tick that takes it: most of a tick later
    yaws = [a.yaw for a in game.world.actions]
    assert yaws == [a.yaw for a in off_game.world.actions] and sum(yaws) == pytest.approx(145.0)  # events to 1.45 s


def test_no_frames_between_ticks_for_a_replay_a_script_or_a_frame_without_depth():
    clock = FakeClock()
    events = [(0.01 * i, lambda inp, now: inp.mouse(1.0, 0.0, now)) for i in range(100)]
    frontend = WarpingFrontend(events)
    game = make(CountingWorld(), frontend, clock, tick_rate=20, max_ticks=20)  # no depth, no pose
    game.run()
    assert all(r is None for r in frontend.rels)

    from engine import Action
    from engine.script import ScriptSource

    frontend = WarpingFrontend(events + [(0.2, lambda inp, now: "warp")])
    script = ScriptSource([Action(forward=True)] * 20, name="a script")
    game = make(DepthWorld(), frontend, FakeClock(), source=script, tick_rate=20, max_ticks=20)
    game.messages = []
    game.log = game.messages.append
    game.run()
    assert not game.warp and all(r is None for r in frontend.rels)
    assert any("need a window and your own input" in m for m in game.messages)


def test_f4_turns_frames_between_ticks_off_and_on():
    events = [(0.01 * i, lambda inp, now: inp.mouse(1.0, 0.0, now)) for i in range(100)]
    frontend = WarpingFrontend(events + [(0.3, lambda inp, now: "warp"), (0.6, lambda inp, now: "warp")])
    clock = FakeClock()
    game = make(DepthWorld(), frontend, clock, tick_rate=20, max_ticks=20)
    game.run()
    assert game.warp
    between = [t for t, r in zip(frontend.presented, frontend.rels) if r is not None]
    assert between  # on before 0.3 s and after 0.6 s
    assert len(frontend.rels) > 20


def test_walking_is_carried_on_between_ticks_and_stops_with_the_key():
    """With W held the view moves on by the last tick's step (0.5 m) scaled by the time into the next tick; released,
    the view is the frame's camera again."""
    clock = FakeClock()
    events = [(0.0, lambda inp, now: inp.press("forward", now)), (0.5, lambda inp, now: inp.release("forward", now))]
    frontend = WarpingFrontend(events)
    game = make(DepthWorld(), frontend, clock, tick_rate=20, max_ticks=20)
    game.run()
    moved = [r for (t, _), r in zip(frontend.presented, frontend.rels) if r is not None]
    assert moved
    shifts = [float(-r[2, 3]) for r in moved]  # the frame's points come nearer: the view moved forward
    assert all(0 < s <= 0.5 * warp.AHEAD_TICKS + 1e-6 for s in shifts)
    late = [r for (t, _), r in zip(frontend.presented, frontend.rels) if t > 12]
    assert all(r is None for r in late)


def test_on_the_worker_thread_the_window_presents_while_a_tick_computes(tmp_path):
    """tick_thread: a world whose step takes 30 ms of real time steps on another thread, the loop presents frames
    while it runs (more frames than ticks with the mouse moving), the ticks stay in order one at a time, and the
    recording is what the world gives for its recorded actions stepped one after another (frames and poses)."""
    def run(threaded, out):
        frontend = WarpingFrontend()
        world = DepthWorld(real_sleep=0.03)
        inp = InputAccumulator(mouse_sensitivity=1.0)
        game = Game(world, frontend, LoopConfig(tick_rate=20, max_ticks=25, tick_thread=threaded, record_dir=out,
                                                video=False), input=inp, log=lambda s: None)
        start = time.perf_counter()
        orig_poll = frontend.poll

        def poll(inp, now):  # the mouse moves all the time; the first 10 ticks walk
            inp.mouse(0.5, 0.0, now)
            if now - start < 0.5:
                inp.press("forward", now)
            else:
                inp.release("forward", now)
            return orig_poll(inp, now)

        frontend.poll = poll
        stats = game.run()
        return world, stats

    world, stats = run(True, tmp_path / "threaded")
    assert stats.ticks == 25 and threading.get_ident() not in world.threads
    assert stats.frames > 1.5 * stats.ticks
    rows = list(Recording(tmp_path / "threaded"))
    assert len(rows) == 26 and [r.obs.tick for r in rows] == list(range(26))
    assert sum(r.action.forward for r in rows[1:]) > 0 and sum(r.action.yaw for r in rows[1:]) > 0
    again = DepthWorld()
    again.reset(0)
    for r in rows[1:]:
        obs = again.step(r.action)
        np.testing.assert_array_equal(obs.rgb, r.obs.rgb)
        np.testing.assert_allclose(obs.cam_to_world, r.obs.cam_to_world)


GL_CHECK = r"""
import os, sys
import numpy as np
os.environ["SDL_VIDEODRIVER"] = "offscreen"
from engine import Observation, warp
from engine.game import Hud, LoopStats
from engine.input import Keymap
from engine.plane import intrinsics, yaw_pitch_to_cam_to_world
from engine.window import DisplayError, WindowFrontend
try:
    fe = WindowFrontend(Keymap.load(), size=(256, 256), capture_mouse=False)
except DisplayError as e:
    print("SKIP", e); sys.exit(0)
fe.show_hud = False
K = intrinsics(64, 64, 90.0)
rgb = np.zeros((64, 64, 3), np.uint8)
rgb[..., 0] = np.arange(64)[None] * 4
rgb[..., 1] = np.arange(64)[:, None] * 4
c2w = yaw_pitch_to_cam_to_world(np.zeros(3), 0.0, 0.0)
obs = Observation(rgb=rgb, depth=np.full((64, 64), 10.0, np.float32), cam_to_world=c2w, K=K, tick=0, info={})
hud = Hud(world="test", stats=LoopStats(), paused=False, recording=False)
def shown(rel):
    fe._draw(obs, hud, rel)
    data = fe.ctx.screen.read(viewport=(0, 0, 256, 256), components=3)
    return np.frombuffer(data, np.uint8).reshape(256, 256, 3)[::-1].astype(int)
plain = shown(None)
assert np.abs(shown(np.eye(4, dtype=np.float32)) - plain).max() <= 1  # via the 2x target: rounding only
rel = warp.relative(c2w, warp.turned(c2w, 10.0, 0.0))
after = shown(rel)
expect = warp.project(np.array([[32.5, 32.5]]), obs.depth, K, rel)[0, 0] * 4
col = int(np.argmin(np.abs(after[128, :, 0] - 128)))
assert abs(col - expect) <= 4, (col, expect)
assert not (after.sum(-1) == 0).any()
near = obs.depth.copy()
near[24:40, 24:40] = 0.3  # something close ahead; the view walks 0.6 m past it: its triangles are cut by the near plane
walked = c2w.copy()
walked[:3, 3] += 0.6 * c2w[:3, 2]
rgb_near = rgb.copy()
rgb_near[..., 2] = 200
obs = Observation(rgb=rgb_near, depth=near, cam_to_world=c2w, K=K, tick=0, info={})
assert not (shown(warp.relative(c2w, walked)).sum(-1) == 0).any(), "holes show black"
print("OK")
"""


def test_the_window_draws_the_warp_the_geometry_gives():
    """The mesh at the frame's own camera is the plain quad to one level per pixel (it is drawn into a target of twice
    the frame's size first); turned 10 deg right, the frame's centre
    column lands where engine.warp.project says (x4 in a 256 px window), and nothing is black, not even where the view
    walks past something close (the near plane cuts its triangles). In its own process:
    an offscreen SDL window must not share a process with the arena's EGL contexts."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    p = subprocess.run([sys.executable, "-c", GL_CHECK], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={k: v for k, v in os.environ.items() if k != "SDL_VIDEODRIVER"})
    assert p.returncode == 0, p.stderr[-2000:]
    if p.stdout.startswith("SKIP"):
        pytest.skip(p.stdout.strip())
    assert "OK" in p.stdout
