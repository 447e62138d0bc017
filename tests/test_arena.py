"""Behaviour tests for the ground-truth arena: config errors, determinism, depth, collisions, pose/K
against the picture, the dynamic mask, policies, splits and revisit trajectories. Headless (EGL), CPU."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine import Action, NOOP, make_world, validate_observation
from engine.arena import ArenaConfigError, ArenaWorld, load_preset
from engine.arena.level import DYNAMIC_ID_BASE, MOVER_BOBBER, generate_level
from engine.arena.physics import PITCH_LIMIT_DEG
from engine.arena.policies import POLICIES
from engine.arena.policies import angle_diff
from engine.arena.splits import (DEFAULT_COUNTS, KINDS, REVISIT_MAX, REVISIT_MIN, SPLITS, TEST_SET, TEST_TICK_RATE,
                                 TestEntry, entry_trajectory, held_out_entries, revisit_entries, split_of,
                                 split_seeds)
from engine.arena.trajectories import Trajectory, free_cells

SIZE = 64


@pytest.fixture(scope="module")
def world() -> ArenaWorld:
    w = ArenaWorld(preset="small", width=SIZE, height=SIZE)
    yield w
    w.close()


def find_wall_cell(world: ArenaWorld, need_side: bool = False) -> tuple[int, int]:
    """A free cell whose +x neighbour is rock; with need_side also a free (-z) neighbour along a straight wall."""
    level = world.level
    free = free_cells(level)
    gw, gd = level.solid.shape
    for ix in range(1, gw - 1):
        for iz in range(2, gd - 1):
            if free[ix, iz] and level.solid[ix + 1, iz]:
                if not need_side or (free[ix, iz - 1] and level.solid[ix + 1, iz - 1]):
                    return ix, iz
    raise AssertionError("no wall cell found")


# -- config --------------------------------------------------------------------------------------------


def test_presets_load_and_registry_builds_arena() -> None:
    for name in ("default", "small"):
        load_preset(name)
    w = make_world("arena", preset="small", width=16, height=24, fov_deg=70.0)
    try:
        obs = validate_observation(w.reset(1), "arena", 0)
        assert obs.rgb.shape == (24, 16, 3) and w.deterministic
        again = make_world("arena", **w.config)  # config rebuilds the same world
        assert np.array_equal(again.reset(1).rgb, obs.rgb)
        again.close()
    finally:
        w.close()


@pytest.mark.parametrize("text, key", [
    ("grid_widht: 10\n", "grid_widht"),  # unknown key (typo)
    ("rooms: three\n", "rooms"),  # wrong type
    ("rooms: true\n", "rooms"),  # bool is not a count
    ("cell_size: -2.0\n", "cell_size"),  # negative size
    ("grid_width: 3\n", "grid_width"),  # too small to spawn in
    ("room_min: 5\nroom_max: 3\n", "room_max"),
])
def test_bad_preset_names_key_and_file(tmp_path, text: str, key: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ArenaConfigError) as err:
        load_preset(str(path))
    assert key in str(err.value) and str(path) in str(err.value)


def test_bad_overrides_and_resolution() -> None:
    with pytest.raises(ArenaConfigError, match="walk_speed"):
        ArenaWorld(preset="small", width=16, height=16, walk_speed=-1.0)
    with pytest.raises(ArenaConfigError, match="bogus"):
        ArenaWorld(preset="small", width=16, height=16, bogus=1)
    with pytest.raises(ArenaConfigError, match="width"):
        ArenaWorld(preset="small", width=4, height=16)
    with pytest.raises(ArenaConfigError, match="height"):
        ArenaWorld(preset="small", width=16, height=10**6)
    with pytest.raises(ArenaConfigError, match="no arena preset named"):
        load_preset("no_such_preset")


# -- determinism ----------------------------------------------------------------------------------------


def test_same_seed_same_frames_different_seed_different_level(world: ArenaWorld) -> None:
    actions = [Action(forward=True, yaw=4.0), Action(forward=True, sprint=True), Action(jump=True, left=True),
               Action(pitch=-10.0), Action(back=True, yaw=-7.5)] * 6
    other = ArenaWorld(preset="small", width=SIZE, height=SIZE)
    try:
        runs = []
        for w in (world, other):
            obs = [w.reset(5)] + [w.step(a) for a in actions]
            runs.append(obs)
        for a, b in zip(*runs):
            assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth)
            assert np.array_equal(a.cam_to_world, b.cam_to_world) and a.info == b.info
            assert np.array_equal(a.dynamic_mask, b.dynamic_mask)
        lvl_a = generate_level(world.arena_config, 5)
        lvl_b = generate_level(world.arena_config, 6)
        assert not np.array_equal(lvl_a.solid, lvl_b.solid)
        assert not np.array_equal(world.reset(5).rgb, world.reset(6).rgb)
    finally:
        other.close()


# -- geometry: K, pose, depth -----------------------------------------------------------------------------


def test_intrinsics_and_pose_conventions(world: ArenaWorld) -> None:
    obs = world.reset(2)
    K = obs.K
    assert K[0, 0] == pytest.approx((SIZE / 2) / math.tan(math.radians(45.0)))
    assert (K[0, 2], K[1, 2]) == (SIZE / 2, SIZE / 2)
    R = obs.cam_to_world[:3, :3]
    assert np.allclose(R @ R.T, np.eye(3)) and np.linalg.det(R) == pytest.approx(1.0)
    # yaw 90 looks along +x, camera y points down in the world, eye 1.6 m above the feet
    obs = world.teleport(world.level.spawn_position, yaw=90.0, pitch=0.0)
    assert np.allclose(obs.cam_to_world[:3, 2], [1, 0, 0]) and np.allclose(obs.cam_to_world[:3, 1], [0, -1, 0])
    assert obs.cam_to_world[1, 3] == pytest.approx(1.6)
    obs = world.step(Action(pitch=200.0))
    assert obs.info["pitch"] == PITCH_LIMIT_DEG


def test_depth_at_image_centre_matches_wall_distance(world: ArenaWorld) -> None:
    world.reset(3)
    ix, iz = find_wall_cell(world)
    cs = world.arena_config.cell_size
    wall_x = (ix + 1) * cs
    for distance in (0.7, 1.3):
        obs = world.teleport([wall_x - distance, 0.0, (iz + 0.5) * cs], yaw=90.0, pitch=0.0)
        centre = obs.depth[SIZE // 2 - 1:SIZE // 2 + 1, SIZE // 2 - 1:SIZE // 2 + 1]
        assert np.allclose(centre, distance, atol=2e-3), centre
    # Looking straight up from the same spot sees sky, reported at the far plane.
    obs = world.teleport([wall_x - 1.0, 0.0, (iz + 0.5) * cs], yaw=90.0, pitch=85.0)
    assert obs.depth[SIZE // 2, SIZE // 2] == pytest.approx(world.arena_config.far)
    assert world.last_frame.ids[SIZE // 2, SIZE // 2] == 0


def _project(obs, point: np.ndarray) -> tuple[int, int, float]:
    """(row, col, z) of a world point [3] through K and the inverse of cam_to_world."""
    p_cam = np.linalg.inv(obs.cam_to_world) @ np.append(point, 1.0)
    uvw = obs.K @ p_cam[:3]
    u, v = uvw[0] / uvw[2], uvw[1] / uvw[2]
    return int(math.floor(v)), int(math.floor(u)), float(p_cam[2])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_landmark_projects_onto_its_own_pixels(world: ArenaWorld, seed: int) -> None:
    world.reset(seed)
    level = world.level
    free = free_cells(level)
    checked = 0
    for lm in level.landmarks:
        if lm.kind not in ("pillar", "obelisk", "crate", "pedestal"):
            continue
        cx, _, cz = lm.center
        ix, iz = level.cell_of(cx, cz)
        for dx, dz in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            if not free[ix + dx, iz + dz]:
                continue
            # Stand in the neighbouring cell, look at the landmark but 12 degrees off so it is not
            # at the principal point, and project the centre of the face that looks at us.
            eye = level.cell_centre(ix + dx, iz + dz)
            face = np.array([cx + dx * lm.half[0], min(lm.half[1], 0.9) if lm.kind != "pedestal" else 0.4,
                             cz + dz * lm.half[2]])
            yaw = math.degrees(math.atan2(cx - eye[0], -(cz - eye[2]))) + 12.0
            obs = world.teleport(eye, yaw=yaw, pitch=-20.0)
            row, col, z = _project(obs, face)
            assert 0 <= row < SIZE and 0 <= col < SIZE
            assert world.last_frame.ids[row, col] == lm.id, (lm, row, col)
            assert obs.depth[row, col] == pytest.approx(z, abs=0.02)
            checked += 1
            break
    assert checked >= 2


# -- physics ----------------------------------------------------------------------------------------------


def test_wall_stops_player_and_diagonal_slides(world: ArenaWorld) -> None:
    world.reset(4)
    ix, iz = find_wall_cell(world, need_side=True)
    cfg = world.arena_config
    cs, r = cfg.cell_size, cfg.player_radius
    wall_x = (ix + 1) * cs
    obs = world.teleport([(ix + 0.5) * cs, 0.0, (iz + 0.5) * cs], yaw=90.0)
    for _ in range(20):
        obs = world.step(Action(forward=True))
    x, _, z = obs.info["position"]
    assert x == pytest.approx(wall_x - r, abs=1e-3) and obs.info["collided"]
    assert z == pytest.approx((iz + 0.5) * cs)
    # Diagonally into the wall (yaw 45: +x and -z): x stays at the wall, z keeps moving along it.
    steps = 8
    for _ in range(steps):
        obs = world.step(Action(forward=True, yaw=-45.0 if _ == 0 else 0.0))
    x2, _, z2 = obs.info["position"]
    assert x2 == pytest.approx(wall_x - r, abs=1e-3)
    expected = steps * cfg.walk_speed / TEST_TICK_RATE * math.sin(math.radians(45))
    assert z - z2 == pytest.approx(expected, rel=0.05)


def test_walk_speed_sprint_and_jump(world: ArenaWorld) -> None:
    world.reset(0)
    level = world.level
    start = level.spawn_position.copy()
    world.teleport(start, yaw=0.0)
    speeds = {}
    for sprint in (False, True):
        obs = world.teleport(start, yaw=world.sim.player.yaw)
        obs = world.step(Action(forward=True, sprint=sprint))
        speeds[sprint] = np.linalg.norm(np.subtract(obs.info["position"], start)) * TEST_TICK_RATE
        if obs.info["collided"]:
            pytest.skip("spawn faces an obstacle")
    assert speeds[False] == pytest.approx(3.0) and speeds[True] == pytest.approx(6.0)
    world.teleport(start, yaw=0.0)
    heights = [world.step(Action(jump=True)).info["position"][1]]
    heights += [world.step(NOOP).info["position"][1] for _ in range(30)]
    assert 0.8 < max(heights) < 1.3 and heights[-1] == 0.0 and world.sim.player.on_ground


# -- movers -----------------------------------------------------------------------------------------------


def test_changed_pixels_lie_inside_dynamic_mask(world: ArenaWorld) -> None:
    looked = 0
    for seed in range(6):
        world.reset(seed)
        level = world.level
        free = free_cells(level)
        bobbers = np.flatnonzero(level.mv_kind == MOVER_BOBBER)
        for k in bobbers:
            cx, cy, cz = level.mv_base[k]
            ix, iz = level.cell_of(cx, cz)
            for dx, dz in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                if free[ix + dx, iz + dz]:
                    break
            else:
                continue
            eye = level.cell_centre(ix + dx, iz + dz)
            yaw = math.degrees(math.atan2(cx - eye[0], -(cz - eye[2])))
            before = world.teleport(eye, yaw=yaw, pitch=0.0)
            for _ in range(3):
                after = world.step(NOOP)  # the player stands still; only movers move
                changed = np.any(before.rgb != after.rgb, axis=2) | (before.depth != after.depth)
                assert changed.any()
                assert not (changed & ~(before.dynamic_mask | after.dynamic_mask)).any()
                assert (world.last_frame.ids[after.dynamic_mask] >= DYNAMIC_ID_BASE).all()
                before = after
            looked += 1
            break
    assert looked >= 3


# -- policies and splits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policies_are_deterministic(world: ArenaWorld, name: str) -> None:
    runs = []
    for _ in range(2):
        policy = POLICIES[name]()
        policy.reset(7)
        obs = world.reset(7)
        actions = []
        for _ in range(120):
            a = policy(obs)
            actions.append(a)
            obs = world.step(a)
        runs.append((actions, obs.info["position"]))
    assert runs[0] == runs[1]
    assert len({a for a in runs[0][0]}) > 5  # varied, not a constant action


def test_splits_are_disjoint_and_test_set_is_held_out() -> None:
    ranges = sorted(SPLITS.values(), key=lambda r: r.start)
    assert all(a.stop <= b.start for a, b in zip(ranges, ranges[1:]))
    assert split_of(0) == "train" and split_of(SPLITS["test"].start) == "test"
    assert set(split_seeds("train", 5)).isdisjoint(split_seeds("validation", 5))
    with pytest.raises(ValueError):
        split_of(-1)
    kinds = {e.kind for e in TEST_SET}
    assert kinds == set(KINDS) and len(set(TEST_SET)) == len(TEST_SET)
    for e in TEST_SET:
        assert split_of(e.level_seed) == "test" and split_of(e.policy_seed) == "test"


@pytest.fixture(scope="module")
def planned() -> dict[TestEntry, Trajectory]:
    """Every TEST_SET entry rebuilt once (raises if the table no longer matches the generator)."""
    return {entry: entry_trajectory(entry) for entry in TEST_SET}


def test_revisit_entries_return_to_start_pose(planned) -> None:
    for entry in TEST_SET:
        traj = planned[entry]
        assert len(traj.actions) == entry.ticks
        if entry.kind == "revisit":
            assert REVISIT_MIN <= entry.return_tick <= REVISIT_MAX
            dp, dyaw, dpitch = traj.error_at(entry.return_tick)
            assert dp < 0.5 and dyaw < 10.0 and dpitch < 10.0
            far = traj.error_at(traj.far_tick)
            assert far[0] > 2.0  # it really went somewhere


def test_validation_revisits_are_planned_like_the_test_set_on_validation_seeds() -> None:
    from engine.arena.splits import TestEntry, revisit_entries

    val = revisit_entries("validation", 3)
    assert [e.split for e in val] == ["validation"] * 3
    for entry in val:
        assert split_of(entry.level_seed) == "validation" and split_of(entry.policy_seed) == "validation"
        traj = entry_trajectory(entry)
        assert REVISIT_MIN <= entry.return_tick <= REVISIT_MAX and traj.error_at(entry.return_tick)[0] < 0.5
    assert revisit_entries("test", 8) == [e for e in TEST_SET if e.kind == "revisit"]
    with pytest.raises(ValueError, match="train"):
        revisit_entries("train", 1)
    with pytest.raises(ValueError, match="not in the test range"):
        TestEntry(val[0].level_seed, val[0].policy_seed, "revisit", val[0].ticks, val[0].return_tick)


def test_test_set_table_is_what_held_out_entries_plans() -> None:
    for kind in KINDS:
        rows = [e for e in TEST_SET if e.kind == kind]
        assert len(rows) == DEFAULT_COUNTS[kind]
        assert held_out_entries("test", kind) == rows, f"{kind}: regenerate with python -m engine.arena.splits"
    # The original 16 rows and their seed blocks are untouched.
    assert [(e.level_seed, e.policy_seed) for e in TEST_SET[:16]] == (
        [(1_100_000 + i, 1_150_000 + i) for i in range(8)] + [(1_101_000 + i, 1_151_000 + i) for i in range(8)])


def test_validation_entries_are_twins_on_validation_seeds_disjoint_from_test() -> None:
    val = {kind: held_out_entries("validation", kind, 2) for kind in KINDS}
    test_seeds = {s for e in TEST_SET for s in (e.level_seed, e.policy_seed)}
    seen: set[int] = set()
    for kind, entries in val.items():
        assert len(entries) == 2 and all(e.kind == kind and e.split == "validation" for e in entries)
        for e in entries:
            assert split_of(e.level_seed) == "validation" and split_of(e.policy_seed) == "validation"
            seeds = {e.level_seed, e.policy_seed}
            assert seeds.isdisjoint(test_seeds) and seeds.isdisjoint(seen)  # no seed shared across kinds
            seen |= seeds
            assert entry_trajectory(e).actions  # rebuilds and matches what was planned
        # Planned the same way as the test twins: same seed offsets into the split's range.
        twins = [e for e in TEST_SET if e.kind == kind][:2]
        shift = SPLITS["test"].start - SPLITS["validation"].start
        if kind in ("moving", "long_walk", "idle", "turn_360"):  # kinds no level can refuse
            assert [(e.level_seed + shift, e.policy_seed + shift, e.ticks) for e in entries] == \
                [(e.level_seed, e.policy_seed, e.ticks) for e in twins]
    assert val["revisit"] == revisit_entries("validation", 2)
    with pytest.raises(ValueError, match="train"):
        held_out_entries("train", "idle")
    with pytest.raises(ValueError, match="unknown entry kind"):
        held_out_entries("test", "spin")


def test_returning_probes_come_back_to_the_tick0_pose(planned) -> None:
    cell = load_preset("default").cell_size
    for entry in TEST_SET:
        if entry.kind not in ("turn_360", "out_and_back", "look_up_down"):
            continue
        traj = planned[entry]
        dp, dyaw, dpitch = traj.error_at(entry.return_tick)
        assert dp < 0.2 and dyaw < 0.5 and dpitch < 0.5, (entry, dp, dyaw, dpitch)
        # It stands still at the start view afterwards.
        for t in range(entry.return_tick, entry.ticks + 1):
            assert max(traj.error_at(t, entry.return_tick)) < 1e-9
        assert all(a == NOOP for a in traj.actions[entry.return_tick:])
        yaw_steps = [angle_diff(traj.yaws[t + 1], traj.yaws[t]) for t in range(entry.return_tick)]
        if entry.kind == "turn_360":
            assert entry.return_tick == 60 and abs(sum(yaw_steps)) == pytest.approx(360.0, abs=1e-6)
            assert np.allclose(np.abs(yaw_steps), 6.0) and len({np.sign(v) for v in yaw_steps}) == 1
            assert np.all(traj.pitches == traj.pitches[0])
            assert np.all(traj.positions == traj.positions[0])
        elif entry.kind == "look_up_down":
            top, bottom = traj.pitches.max(), traj.pitches.min()
            assert 30.0 - 1e-9 <= top <= 60.0 + 1e-9 and bottom == pytest.approx(-top)
            assert np.all(np.abs(np.diff(traj.pitches)) <= 3.0 + 1e-9) and traj.pitches[0] == 0.0
            assert np.argmax(traj.pitches) < np.argmin(traj.pitches)  # up first, then down
            assert np.all(traj.yaws == traj.yaws[0]) and np.all(traj.positions == traj.positions[0])
        else:  # out_and_back: 3-6 cells out along a straight line, turned round, and back
            out = traj.positions[traj.far_tick] - traj.positions[0]
            assert 3 * cell - 0.5 <= np.linalg.norm(out) <= 6 * cell
            assert np.count_nonzero(np.abs(out[[0, 2]]) > 1e-6) == 1  # along one grid axis only
            assert np.abs(traj.pitches).max() == 0.0
            back = next(t for t in range(traj.far_tick, entry.return_tick) if traj.actions[t].forward)
            assert abs(sum(yaw_steps[traj.far_tick:back])) == pytest.approx(180.0, abs=1e-6)  # turned round
            assert traj.error_at(back)[0] == pytest.approx(np.linalg.norm(out))  # in place


def test_wall_probes_push_into_the_wall(planned) -> None:
    for entry in TEST_SET:
        if entry.kind != "wall":
            continue
        traj, c = planned[entry], entry.contact_tick
        assert entry.ticks == c + 40
        assert all(a.forward and a.yaw == 0.0 for a in traj.actions[c - 1:])  # forward held, no turning
        after = np.linalg.norm(traj.positions[c:] - traj.positions[c], axis=1)
        assert after.max() < 1e-3  # no longer advancing
        steps = np.linalg.norm(np.diff(traj.positions[:c], axis=0), axis=1)
        walked = [t for t, a in enumerate(traj.actions[:c - 1]) if a.forward]
        assert len(walked) >= 10 and np.all(steps[walked] >= 1e-3)  # it did advance before contact
        assert np.median(steps[walked]) == pytest.approx(load_preset("default").walk_speed / TEST_TICK_RATE)
        assert np.linalg.norm(traj.positions[c] - traj.positions[0]) > 2.0


def test_idle_and_long_walk_probes(planned) -> None:
    for entry in TEST_SET:
        traj = planned[entry]
        if entry.kind == "idle":
            assert entry.ticks == 200 and all(a == NOOP for a in traj.actions)
            for t in range(entry.ticks + 1):
                assert max(traj.error_at(t)) == 0.0
        elif entry.kind == "long_walk":
            assert len(traj.actions) == entry.ticks == 1000
            assert np.linalg.norm(np.ptp(traj.positions, axis=0)) > 10.0


def test_entries_are_validated_per_kind_and_mismatches_say_how_to_regenerate() -> None:
    lv, ps = 1_102_000, 1_152_000
    TestEntry(lv, ps, "turn_360", 70, 60)  # a return before REVISIT_MIN is fine for a probe
    with pytest.raises(ValueError, match="revisit entry needs return_tick"):
        TestEntry(lv, ps, "revisit", 70, 60)
    with pytest.raises(ValueError, match="needs return_tick"):
        TestEntry(lv, ps, "out_and_back", 70)
    with pytest.raises(ValueError, match="needs contact_tick"):
        TestEntry(lv, ps, "wall", 70)
    with pytest.raises(ValueError, match="takes no contact_tick"):
        TestEntry(lv, ps, "idle", 200, contact_tick=3)
    with pytest.raises(ValueError, match="takes no return_tick"):
        TestEntry(lv, ps, "wall", 70, 60, contact_tick=30)
    with pytest.raises(ValueError, match="unknown entry kind"):
        TestEntry(lv, ps, "spin", 70)
    from dataclasses import replace

    wall = next(e for e in TEST_SET if e.kind == "wall")
    turn = next(e for e in TEST_SET if e.kind == "turn_360")
    for bad in (replace(wall, contact_tick=wall.contact_tick + 1), replace(turn, ticks=71),
                replace(turn, return_tick=59)):
        with pytest.raises(RuntimeError, match="python -m engine.arena.splits"):
            entry_trajectory(bad)


def test_revisit_replays_in_rendered_world() -> None:
    entry = next(e for e in TEST_SET if e.kind == "revisit")
    traj = entry_trajectory(entry)
    w = ArenaWorld(preset="default", width=32, height=32, tick_rate=TEST_TICK_RATE)
    try:
        first = w.reset(entry.level_seed)
        frames = {0: first}
        for t, a in enumerate(traj.actions, start=1):
            obs = w.step(a)
            if t in (traj.far_tick, entry.return_tick):
                frames[t] = obs
            assert np.allclose(obs.info["position"], traj.positions[t], atol=1e-5)
        back = frames[entry.return_tick]
        assert np.linalg.norm(back.cam_to_world[:3, 3] - first.cam_to_world[:3, 3]) < 0.5
        angle = math.degrees(math.acos(np.clip(back.cam_to_world[:3, 2] @ first.cam_to_world[:3, 2], -1, 1)))
        assert angle < 10.0
        # The view on return looks like the start, much more than the far end does.
        diff = lambda a, b: np.abs(a.rgb.astype(int) - b.rgb.astype(int)).mean()
        assert diff(back, first) < 0.5 * diff(frames[traj.far_tick], first)
    finally:
        w.close()


def test_arena_leaves_the_callers_gl_context_current() -> None:
    """A window's context current in this thread must stay current across arena construction and steps."""
    import moderngl

    from engine import glcontext as glcurrent

    if glcurrent._egl is None:
        pytest.skip("libEGL not loadable")
    other = moderngl.create_standalone_context(backend="egl")  # stands in for the game window
    try:
        before = glcurrent._egl.eglGetCurrentContext()
        assert before
        w = ArenaWorld(preset="small", width=16, height=16)
        w.reset(0)
        w.step(Action(forward=True))
        assert glcurrent._egl.eglGetCurrentContext() == before
        w.close()
        assert glcurrent._egl.eglGetCurrentContext() == before
        fbo = other.simple_framebuffer((4, 4))  # and it still draws
        fbo.use()
        other.clear(1.0, 0.0, 0.0)
        assert np.frombuffer(fbo.read(components=3), np.uint8)[:3].tolist() == [255, 0, 0]
    finally:
        other.release()


def test_recorded_arena_episode_replays_bit_exact(tmp_path) -> None:
    """A dataset episode re-simulated from its recorded actions gives the same frames and depth, bit for bit."""
    from engine.recording import Recording
    from engine.replay import verify
    from engine.rollout import rollout

    rollout("arena", tmp_path / "ds", episodes=1, ticks=40, policy="explore", split="validation",
            config={"width": 32, "height": 32}, progress=False)
    rec = Recording(tmp_path / "ds" / "ep_00000")
    assert rec.meta.has_dynamic_mask and rec.meta.deterministic
    result = verify(rec)
    assert result.matched and result.identical_rgb == len(rec) == 41 and result.identical_depth == 41
