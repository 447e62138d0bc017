"""The ray-cast maze (tests/mazegame.py): a second 3D World whose answers are known — determinism, geometry in the
scene memory's conventions, wall collisions, and the explore policy driving it through `engine.rollout`."""

import subprocess
import sys
import time

import numpy as np

from engine import Action, make_world, validate_observation
from engine.arena.physics import camera_to_world as arena_camera_to_world
from engine.arena.policies import pose_from_cam_to_world
from engine.recording import Recording
from splat.camera import lift_pixels, project_points, world_to_camera
from tests import mazegame
from tests.conftest import ROOT
from tests.mazegame import RADIUS, MazeGame

GAME = "tests.mazegame:MazeGame"


def wall_distance(world: MazeGame, xz) -> float:
    """Distance from the point (x, z) to the nearest wall segment."""
    a, ab = world.seg_a, world.seg_b - world.seg_a
    t = np.clip(np.einsum("ij,ij->i", np.asarray(xz) - a, ab) / np.einsum("ij,ij->i", ab, ab), 0, 1)
    return float(np.hypot(*(np.asarray(xz) - (a + t[:, None] * ab)).T).min())


def test_world_contract(monkeypatch, tmp_path_factory):
    from tests import test_world_contract as contract

    monkeypatch.setitem(contract.SMALL, GAME, lambda f: {"width": 40, "height": 30})
    contract.test_world_contract(GAME, tmp_path_factory)
    obs = validate_observation(make_world(GAME).reset(0), GAME, 0)
    assert obs.size == (72, 96) and obs.depth.dtype == np.float32 and np.isfinite(obs.depth).all()
    assert MazeGame(tick_rate=20).config == {"width": 96, "height": 72, "tick_rate": 20.0}


def test_deterministic():
    actions = [Action(forward=True, yaw=7.0), Action(left=True, sprint=True, pitch=-8.0), Action(back=True, yaw=-30.0),
               Action(forward=True, right=True, pitch=90.0)] * 6
    a, b = MazeGame(), MazeGame()
    oa, ob = a.reset(4), b.reset(4)
    for act in [None] + actions:
        if act is not None:
            oa, ob = a.step(act), b.step(act)
        assert np.array_equal(oa.rgb, ob.rgb) and np.array_equal(oa.depth, ob.depth)
        assert np.array_equal(oa.cam_to_world, ob.cam_to_world) and oa.info == ob.info and oa.tick == ob.tick
    assert oa.info["pitch"] == 60.0  # clamped
    assert not np.array_equal(a.reset(5).rgb, b.reset(4).rgb)  # another seed, another maze


def test_pose_and_depth_follow_the_arena_conventions():
    world = MazeGame()
    world.reset(0)
    for yaw, pitch in [(0.0, 0.0), (37.0, -20.0), (-120.0, 45.0)]:
        obs = world.teleport([5.0, 0.0, 7.0], yaw, pitch)
        assert np.allclose(obs.cam_to_world, arena_camera_to_world(np.array([5.0, 0.0, 7.0]), yaw, pitch, mazegame.EYE))
        pos, y, p = pose_from_cam_to_world(obs.cam_to_world)
        assert np.allclose(pos, [5.0, mazegame.EYE, 7.0]) and np.isclose(y, yaw) and np.isclose(p, pitch)
    # Facing the boundary wall z = 0 from 1 m away: the whole centre row is 1 m deep (z-depth, not ray length,
    # which is sqrt(2) m at the image's edges), and the top half sees the ceiling, nearer than the wall, above it.
    obs = world.teleport([1.0, 0.0, 1.0], 0.0)
    h, w = obs.size
    assert np.allclose(obs.depth[h // 2], 1.0, atol=1e-5)
    assert np.isclose(obs.K[0, 0], w / 2) and np.isclose(obs.K[0, 2], w / 2) and np.isclose(obs.K[1, 2], h / 2)


def test_reprojection_depth_and_colour_agree():
    """Lift frame A with its depth, K and pose; project into frame B (turned 20°, pitched, walked): visible points land
    where B's depth says, with A's colours (the splat memory's own lift/project functions)."""
    world = MazeGame()
    a = world.reset(2)
    world.step(Action(yaw=20.0, pitch=-10.0))
    for _ in range(3):
        b = world.step(Action(forward=True))
    assert np.linalg.norm(a.cam_to_world[:3, 3] - b.cam_to_world[:3, 3]) > 0.2
    h, w = a.size
    rows, cols = np.mgrid[0:h, 0:w].reshape(2, -1)

    def reproject(c2w_b, depth_a):
        pts = lift_pixels(rows, cols, depth_a[rows, cols], a.K, a.cam_to_world)
        uv, z = project_points(pts, world_to_camera(c2w_b), b.K)
        c, r = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
        inside = (z > 0.05) & (c >= 0) & (c < w) & (r >= 0) & (r < h)
        rel = np.abs(z[inside] - b.depth[r[inside], c[inside]]) / b.depth[r[inside], c[inside]]
        return inside, rel, r[inside], c[inside]

    inside, rel, r, c = reproject(b.cam_to_world, a.depth)
    assert inside.mean() > 0.4
    assert np.median(rel) < 0.02 and (rel < 0.05).mean() > 0.9
    ok = rel < 0.02
    diff = np.abs(a.rgb[rows[inside][ok], cols[inside][ok]].astype(int) - b.rgb[r[ok], c[ok]].astype(int)).max(1)
    assert np.median(diff) < 10 and (diff < 40).mean() > 0.8
    # The check has teeth: a camera with y up (x right, z forward: a mirror) or depth as ray length fails it.
    assert np.median(reproject(b.cam_to_world @ np.diag([1.0, -1.0, 1.0, 1.0]), a.depth)[1]) > 0.05
    ray_length = a.depth * np.hypot(np.hypot((np.arange(w) + 0.5 - a.K[0, 2]) / a.K[0, 0], 1.0)[None, :],
                                    ((np.arange(h) + 0.5 - a.K[1, 2]) / a.K[1, 1])[:, None])
    assert np.median(reproject(b.cam_to_world, ray_length)[1]) > 0.05


def test_walls_stop_the_player_and_it_slides():
    world = MazeGame()
    world.reset(0)
    world.teleport([1.0, 0.0, 1.0], 30.0)  # cell (0, 0), walking at 30° into the boundary wall z = 0
    path = [world.step(Action(forward=True)).info for _ in range(12)]
    z = [p["position"][2] for p in path]
    x = [p["position"][0] for p in path]
    assert z[-1] == z[-2] == z[-3] and z[-1] > RADIUS and abs(z[-1] - RADIUS) < 1e-3  # stopped along the normal
    assert x[-1] > x[-3] + 0.05 and path[-1]["collided"]  # ...and slides along the wall
    world.teleport([1.0, 0.0, 1.0], 0.0)
    head_on = [world.step(Action(forward=True, sprint=True)) for _ in range(10)]
    assert head_on[-1].info["position"][2] == head_on[-2].info["position"][2] > RADIUS
    rng = np.random.default_rng(0)  # random sprinting about never enters a wall nor leaves the maze
    for _ in range(300):
        obs = world.step(Action(forward=bool(rng.random() < 0.8), left=bool(rng.random() < 0.2), sprint=True,
                                yaw=float(rng.normal(0, 25))))
        x, _, z = obs.info["position"]
        assert wall_distance(world, (x, z)) >= RADIUS - 1e-9 and 0 < x < 16 and 0 < z < 16


def test_render_time():
    world = MazeGame()
    world.reset(1)
    start = time.perf_counter()
    for _ in range(20):
        world.step(Action(forward=True, yaw=5.0))
    ms = (time.perf_counter() - start) / 20 * 1000
    assert ms < 50, f"{ms:.1f} ms per 96x72 step"  # about 3 ms on one core; loose for busy test machines


def test_explore_policy_rollout(tmp_path):
    out = tmp_path / "maze"
    cmd = ["-m", "engine.rollout", "--world", GAME, "--policy", "explore", "--episodes", "1", "--ticks", "100",
           "--out", str(out)]
    p = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    rec = Recording(out / "ep_00000")
    assert len(rec) == 101 and rec[0].obs.depth is not None and rec[0].obs.size == (72, 96)
    pos = np.array([s.obs.info["position"] for s in rec])
    assert np.linalg.norm(pos - pos[0], axis=1).max() > 1.0, "the explore policy did not move through the maze"
