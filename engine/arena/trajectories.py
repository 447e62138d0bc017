"""Deterministic scripted trajectories for the held-out test set: revisits, wanders and probes.

The held-out test measures whether a world model keeps a place consistent when it comes back to it,
so a revisit trajectory must really return. Both generators plan on the level's cell grid (breadth-
first search over open cells that no object, door or patrol lane occupies) and drive the player with
closed-loop steering on the physics-only `ArenaSim`, so collisions cannot break a return: each action
is chosen from the simulated pose after the previous one. Replaying the recorded actions in an
`ArenaWorld` with the same preset, seed and tick rate reproduces the poses exactly (same physics code),
and nothing depends on the image resolution.

- `plan_revisit`: walk out from the spawn point along a path with varied speed and pitch, small lateral
  offsets and pauses to look around; look around at the far end; retrace the path, step onto the start
  point and turn to the start view. `return_tick` is the tick at which that final turn completes: the
  position is then within `RETURN_POSITION_M` of the start and the view equals the start view (up to
  float rounding). The player then stands still for `hold_ticks`.
- `plan_wander`: keep walking to seeded goals a few cells away, preferring cells not visited yet, for a
  fixed number of ticks (the "moving" and "long_walk" test trajectories).

Probes, each from the spawn point (see `engine.arena.splits` for the kinds they make):

- `plan_turn_360`: turn a full circle in place at a constant yaw rate (seeded direction), back at the
  tick-0 view at `return_tick`, then stand still.
- `plan_out_and_back`: face a seeded straight run of free cells, walk 3-6 cells along it, turn 180
  degrees, walk back onto the start point and turn back to the tick-0 view (`return_tick`), then stand.
- `plan_wall`: face a wall cell at the end of a straight run of at least one free cell, walk into it and
  keep pressing forward; `contact_tick` is the first tick at which forward progress stops.
- `plan_idle`: stand still (NOOP actions only).
- `plan_look_up_down`: pitch up to a seeded angle, down to minus it and back to level (`return_tick`),
  then stand still.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from engine.action import NOOP, Action
from engine.arena.config import ArenaConfig
from engine.arena.level import Level
from engine.arena.physics import PITCH_LIMIT_DEG
from engine.arena.policies import angle_diff, steer_to, turn_towards
from engine.arena.world import ArenaSim

RETURN_POSITION_M = 0.2  # the generator's own tolerance; the tests allow 0.5 m and 10 degrees
CONTACT_EPS_M = 1e-3  # a forward tick that moves the player less than this has stopped against something

Cell = tuple[int, int]


class TrajectoryError(RuntimeError):
    """No trajectory meeting the request could be planned for this level and seed."""


@dataclass(frozen=True)
class Trajectory:
    """A scripted trajectory and the poses it produces.

    actions:   T actions
    positions: [T + 1, 3] float64 feet positions, index = tick (0 = after reset)
    yaws, pitches: [T + 1] float64 degrees
    return_tick: for returning trajectories, tick at which the pose is back at the start (else None)
    far_tick:  for revisits and out-and-backs, tick at which the walk turned back (else None)
    contact_tick: for wall walks, first tick at which forward progress stopped (else None)
    """

    actions: list[Action]
    positions: np.ndarray
    yaws: np.ndarray
    pitches: np.ndarray
    return_tick: int | None = None
    far_tick: int | None = None
    contact_tick: int | None = None

    def error_at(self, tick: int, reference: int = 0) -> tuple[float, float, float]:
        """(position error m, |yaw error| deg, |pitch error| deg) of `tick` relative to `reference`."""
        dp = float(np.linalg.norm(self.positions[tick] - self.positions[reference]))
        dy = abs(angle_diff(float(self.yaws[tick]), float(self.yaws[reference])))
        return dp, dy, abs(float(self.pitches[tick] - self.pitches[reference]))


# -- grid planning ---------------------------------------------------------------------------------


def free_cells(level: Level) -> np.ndarray:
    """[GW, GD] bool: open cells a planner may walk through (no objects, doors or patrol lanes)."""
    return ~level.solid & ~level.blocked


def bfs(level: Level, start: Cell) -> tuple[np.ndarray, dict[Cell, Cell]]:
    """Grid distances [GW, GD] int32 (-1 unreachable) from `start` over free cells, and the parent map."""
    free = free_cells(level)
    dist = np.full(free.shape, -1, np.int32)
    parent: dict[Cell, Cell] = {}
    dist[start] = 0
    queue = deque([start])
    while queue:
        x, z = queue.popleft()
        for dx, dz in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            n = (x + dx, z + dz)
            if 0 <= n[0] < free.shape[0] and 0 <= n[1] < free.shape[1] and free[n] and dist[n] < 0:
                dist[n] = dist[x, z] + 1
                parent[n] = (x, z)
                queue.append(n)
    return dist, parent


def path_to(parent: dict[Cell, Cell], start: Cell, goal: Cell) -> list[Cell]:
    """Cells from start to goal (both included) through a BFS parent map."""
    path = [goal]
    while path[-1] != start:
        path.append(parent[path[-1]])
    return path[::-1]


# -- driving the simulation ------------------------------------------------------------------------


class _Driver:
    """Steps an `ArenaSim` with closed-loop steering and records actions and poses."""

    def __init__(self, sim: ArenaSim, rng: np.random.Generator, max_ticks: int) -> None:
        self.sim, self.rng, self.max_ticks = sim, rng, max_ticks
        p = sim.player
        self.actions: list[Action] = []
        self.positions = [p.position.copy()]
        self.yaws = [p.yaw]
        self.pitches = [p.pitch]
        self.pitch_target = 0.0

    @property
    def full(self) -> bool:
        return len(self.actions) >= self.max_ticks

    def do(self, action: Action) -> None:
        p = self.sim.step(action)
        self.actions.append(action)
        self.positions.append(p.position.copy())
        self.yaws.append(p.yaw)
        self.pitches.append(p.pitch)

    def look_around(self) -> None:
        """Stand and sweep the view to one side and back (with a tilt), ending where it began."""
        span = float(self.rng.uniform(30.0, 100.0)) * float(self.rng.choice([-1.0, 1.0]))
        tilt = float(self.rng.uniform(-20.0, 20.0))
        n = int(self.rng.integers(4, 9))
        for sign in (1.0, -1.0):
            for _ in range(n):
                if self.full:
                    return
                self.do(Action(yaw=sign * span / n, pitch=sign * tilt / n))

    def waypoints(self, cells: list[Cell]) -> list[np.ndarray]:
        """Cell centres with small seeded lateral offsets: less grid-like paths that still keep clear of
        walls and of objects in neighbouring cells (offset + player radius < half a cell minus object)."""
        level = self.sim.level
        offsets = self.rng.uniform(-0.15, 0.15, size=(len(cells), 2)) * level.config.cell_size
        return [level.cell_centre(*c) + np.array([o[0], 0.0, o[1]]) for c, o in zip(cells, offsets)]

    def follow(self, points: list[np.ndarray], final_arrive: float = 0.4, looks: bool = True,
               vary: bool = True) -> bool:
        """Walk through `points` [3] in order; False if the tick budget ran out on the way.

        vary=False walks at a steady pace and keeps the current pitch target (no random draws)."""
        sprint = False
        for i, target in enumerate(points):
            last = i == len(points) - 1
            if vary and self.rng.random() < 0.3:  # change pace and gaze now and then
                sprint = bool(self.rng.random() < 0.35)
                self.pitch_target = float(self.rng.uniform(-20.0, 15.0))
            if looks and not last and self.rng.random() < 0.08:
                self.look_around()
            while True:
                if self.full:
                    return False
                p = self.sim.player
                step_pitch = float(np.clip(self.pitch_target - p.pitch, -2.0, 2.0))
                # Never sprint into the final stop: one sprint step is 0.3 m, more than the tolerance.
                s = steer_to(p.position, p.yaw, target, arrive_m=final_arrive if last else 0.4,
                             sprint=sprint and not last, pitch_delta=step_pitch)
                if s.arrived:
                    break
                self.do(s.action)
        return True

    def turn_to(self, yaw: float, pitch: float) -> bool:
        """Rotate the view to (yaw, pitch) without moving; False if the tick budget ran out."""
        while not self.full:
            p = self.sim.player
            action, done = turn_towards(p.yaw, p.pitch, yaw, pitch)
            self.do(action)
            if done:
                return True
        return False

    def hold(self, ticks: int) -> None:
        """Stand still for `ticks` ticks (raises the tick budget to fit)."""
        self.max_ticks = max(self.max_ticks, len(self.actions) + ticks)
        for _ in range(ticks):
            self.do(NOOP)

    def trajectory(self, return_tick: int | None = None, far_tick: int | None = None,
                   contact_tick: int | None = None) -> Trajectory:
        return Trajectory(actions=list(self.actions), positions=np.array(self.positions), yaws=np.array(self.yaws),
                          pitches=np.array(self.pitches), return_tick=return_tick, far_tick=far_tick,
                          contact_tick=contact_tick)


def _spawn_cell(level: Level) -> Cell:
    return level.cell_of(float(level.spawn_position[0]), float(level.spawn_position[2]))


def plan_revisit(config: ArenaConfig, level_seed: int, policy_seed: int, tick_rate: float = 20.0,
                 min_return: int = 100, max_return: int = 400, hold_ticks: int = 10,
                 attempts: int = 24) -> Trajectory:
    """A revisit for (level_seed, policy_seed) whose return_tick lies in [min_return, max_return].

    Tries seeded goals at about the distance that fits the range; raises `TrajectoryError` if none
    returns in time (a level with almost no free space). len(actions) = return_tick + hold_ticks.
    """
    sim = ArenaSim(config, tick_rate)
    sim.reset(level_seed)
    start = _spawn_cell(sim.level)
    dist, parent = bfs(sim.level, start)
    reachable = np.argwhere(dist > 0)
    if len(reachable) == 0:
        raise TrajectoryError(f"level seed {level_seed}: no free cell reachable from the spawn point")
    rng = np.random.default_rng([int(policy_seed) & 0xFFFFFFFF, 0x2EF1])
    # Walking crosses a cell in cell_size / (walk_speed * dt) ticks; out + back + pauses ~ 2.6x one way.
    ticks_per_cell = config.cell_size * tick_rate / config.walk_speed
    for attempt in range(attempts):
        want_cells = max(1, int(round(rng.uniform(min_return, max_return) * 0.75 / (2.6 * ticks_per_cell))))
        gaps = np.abs(dist[reachable[:, 0], reachable[:, 1]] - want_cells)
        choices = reachable[gaps == gaps.min()]  # the nearest available distance if none is exact
        goal = tuple(int(v) for v in choices[int(rng.integers(len(choices)))])
        path = path_to(parent, start, goal)

        sim.reset(level_seed)
        start_pos, start_yaw, start_pitch = sim.player.position.copy(), sim.player.yaw, sim.player.pitch
        drive = _Driver(sim, np.random.default_rng([int(policy_seed) & 0xFFFFFFFF, attempt]), max_return)
        points = drive.waypoints(path)
        if not drive.follow(points[1:]):
            continue
        far_tick = len(drive.actions)
        drive.look_around()
        back = points[::-1][1:-1] + [start_pos]
        if not drive.follow(back, final_arrive=RETURN_POSITION_M * 0.75) or not drive.turn_to(start_yaw, start_pitch):
            continue
        return_tick = len(drive.actions)
        if return_tick < min_return:
            continue
        drive.max_ticks = return_tick + hold_ticks
        for _ in range(hold_ticks):
            drive.do(NOOP)
        return drive.trajectory(return_tick=return_tick, far_tick=far_tick)
    raise TrajectoryError(f"no revisit returning within [{min_return}, {max_return}] ticks found for level seed "
                          f"{level_seed}, policy seed {policy_seed} after {attempts} attempts")


def plan_wander(config: ArenaConfig, level_seed: int, policy_seed: int, ticks: int,
                tick_rate: float = 20.0) -> Trajectory:
    """Exactly `ticks` actions of walking to seeded goals 3-10 cells away, preferring unvisited cells."""
    sim = ArenaSim(config, tick_rate)
    sim.reset(level_seed)
    rng = np.random.default_rng([int(policy_seed) & 0xFFFFFFFF, 0x3A7D])
    drive = _Driver(sim, rng, ticks)
    visited = np.zeros(sim.level.solid.shape, bool)
    cell = _spawn_cell(sim.level)
    while not drive.full:
        dist, parent = bfs(sim.level, cell)
        near = np.argwhere((dist >= 3) & (dist <= 10))
        if len(near) == 0:
            near = np.argwhere(dist > 0)
        if len(near) == 0:  # boxed in: look around on the spot
            drive.look_around() if rng.random() < 0.5 else drive.do(NOOP)
            continue
        fresh = near[~visited[near[:, 0], near[:, 1]]]
        pool = fresh if len(fresh) else near
        goal = tuple(int(v) for v in pool[int(rng.integers(len(pool)))])
        path = path_to(parent, cell, goal)
        for c in path:
            visited[c] = True
        drive.follow(drive.waypoints(path)[1:])
        p = sim.player.position
        cell = sim.level.cell_of(float(p[0]), float(p[2]))
        # Steering stops within 0.4 m of a goal centre, so this is the goal cell unless blocked.
        if not free_cells(sim.level)[cell]:
            cell = goal
    return drive.trajectory()


# -- probes from the spawn point -------------------------------------------------------------------

DIRECTIONS: tuple[Cell, ...] = ((1, 0), (-1, 0), (0, 1), (0, -1))  # grid steps (dx, dz)


def direction_yaw(d: Cell) -> float:
    """The yaw (deg) that looks along grid step d = (dx, dz): +x is 90, -z is 0."""
    return {(1, 0): 90.0, (-1, 0): -90.0, (0, 1): -180.0, (0, -1): 0.0}[d]


def straight_run(level: Level, start: Cell, d: Cell) -> tuple[int, Cell | None]:
    """(number of free cells in a row from `start` along step d, not counting start; the first cell after
    them, or None where the run reaches the edge of the grid)."""
    free = free_cells(level)
    k, (x, z) = 0, start
    while True:
        x, z = x + d[0], z + d[1]
        if not (0 <= x < free.shape[0] and 0 <= z < free.shape[1]):
            return k, None
        if not free[x, z]:
            return k, (x, z)
        k += 1


def _spawned(config: ArenaConfig, level_seed: int, tick_rate: float) -> ArenaSim:
    sim = ArenaSim(config, tick_rate)
    sim.reset(level_seed)
    return sim


def plan_turn_360(config: ArenaConfig, level_seed: int, policy_seed: int, tick_rate: float = 20.0,
                  turn_ticks: int = 60, hold_ticks: int = 10) -> Trajectory:
    """Turn 360 degrees in place at a constant 360 / turn_ticks degrees per tick (direction seeded), pitch
    unchanged; `return_tick` = turn_ticks, when the view is the tick-0 view again. Then stand still."""
    sim = _spawned(config, level_seed, tick_rate)
    sign = float(np.random.default_rng([int(policy_seed) & 0xFFFFFFFF, 0x7A36]).choice([-1.0, 1.0]))
    drive = _Driver(sim, np.random.default_rng(0), turn_ticks)
    for _ in range(turn_ticks):
        drive.do(Action(yaw=sign * 360.0 / turn_ticks))
    drive.hold(hold_ticks)
    return drive.trajectory(return_tick=turn_ticks)


def plan_out_and_back(config: ArenaConfig, level_seed: int, policy_seed: int, tick_rate: float = 20.0,
                      min_cells: int = 3, max_cells: int = 6, hold_ticks: int = 10,
                      max_ticks: int = 600) -> Trajectory:
    """Face a seeded grid direction with at least `min_cells` free cells in a row from the spawn cell, walk
    a seeded min_cells..max_cells cells along it, turn 180 degrees, walk back onto the start point and turn
    to the tick-0 view (`return_tick`), then stand still. `far_tick` is when the outward walk ended.

    Raises `TrajectoryError` where no direction has such a run."""
    sim = _spawned(config, level_seed, tick_rate)
    level = sim.level
    start = _spawn_cell(level)
    runs = {d: straight_run(level, start, d)[0] for d in DIRECTIONS}
    options = [d for d in DIRECTIONS if runs[d] >= min_cells]
    if not options:
        raise TrajectoryError(f"level seed {level_seed}: no straight run of {min_cells} free cells from the spawn")
    rng = np.random.default_rng([int(policy_seed) & 0xFFFFFFFF, 0x0AB4])
    d = options[int(rng.integers(len(options)))]
    n = int(rng.integers(min_cells, min(max_cells, runs[d]) + 1))
    p = sim.player
    start_pos, start_yaw, start_pitch = p.position.copy(), p.yaw, p.pitch
    heading = direction_yaw(d)
    far = level.cell_centre(start[0] + n * d[0], start[1] + n * d[1])
    drive = _Driver(sim, rng, max_ticks)
    drive.pitch_target = start_pitch
    ok = (drive.turn_to(heading, start_pitch) and drive.follow([far], looks=False, vary=False))
    far_tick = len(drive.actions)
    ok = ok and drive.turn_to(heading + 180.0, start_pitch)
    # Straight back at one walk step per tick: stopping within 0.6 steps ends at most half a step away.
    arrive = min(RETURN_POSITION_M * 0.75, 0.6 * config.walk_speed / tick_rate)
    ok = ok and drive.follow([start_pos], final_arrive=arrive, looks=False, vary=False)
    ok = ok and drive.turn_to(start_yaw, start_pitch)
    if not ok:
        raise TrajectoryError(f"level seed {level_seed}, policy seed {policy_seed}: out-and-back did not return "
                              f"within {max_ticks} ticks")
    return_tick = len(drive.actions)
    drive.hold(hold_ticks)
    return drive.trajectory(return_tick=return_tick, far_tick=far_tick)


def plan_wall(config: ArenaConfig, level_seed: int, policy_seed: int, tick_rate: float = 20.0,
              min_cells: int = 2, push_ticks: int = 40, max_ticks: int = 600) -> Trajectory:
    """Face a seeded wall cell at least `min_cells` cells from the spawn cell along a straight run of free
    cells, walk into it, and keep pressing forward for `push_ticks` ticks after `contact_tick`, the first
    tick at which a forward step moved the player less than `CONTACT_EPS_M`. len(actions) = contact_tick +
    push_ticks.

    Raises `TrajectoryError` where no direction qualifies, or where the player did not stop at the wall's
    face or moved again while pushing (a mover in the way)."""
    sim = _spawned(config, level_seed, tick_rate)
    level = sim.level
    start = _spawn_cell(level)
    options = []
    for d in DIRECTIONS:
        k, end = straight_run(level, start, d)
        if end is not None and level.solid[end] and k + 1 >= min_cells:
            options.append((d, end))
    if not options:
        raise TrajectoryError(f"level seed {level_seed}: no wall cell {min_cells}+ cells straight from the spawn")
    rng = np.random.default_rng([int(policy_seed) & 0xFFFFFFFF, 0x3A11])
    d, end = options[int(rng.integers(len(options)))]
    drive = _Driver(sim, rng, max_ticks)
    if not drive.turn_to(direction_yaw(d), sim.player.pitch):
        raise TrajectoryError(f"level seed {level_seed}: ran out of ticks turning")
    forward = Action(forward=True)
    contact_tick = None
    while contact_tick is None:
        if drive.full:
            raise TrajectoryError(f"level seed {level_seed}, policy seed {policy_seed}: no contact with the wall "
                                  f"within {max_ticks} ticks")
        drive.do(forward)
        if np.linalg.norm(drive.positions[-1] - drive.positions[-2]) < CONTACT_EPS_M:
            contact_tick = len(drive.actions)
    drive.max_ticks = contact_tick + push_ticks
    while not drive.full:
        drive.do(forward)
    # The wall face the player should rest against (its box is clamped short of the face by ~1e-6 m).
    axis = 0 if d[0] else 2
    step = d[0] or d[1]
    cs, r = config.cell_size, config.player_radius
    face = (end[0] if axis == 0 else end[1]) * cs + (cs if step < 0 else 0.0)
    rest = drive.positions[contact_tick]
    moved = float(np.abs(np.array(drive.positions[contact_tick:]) - rest).max())
    if abs(abs(face - rest[axis]) - r) > 0.01 or moved >= CONTACT_EPS_M:
        raise TrajectoryError(f"level seed {level_seed}, policy seed {policy_seed}: the walk stopped "
                              f"{abs(face - rest[axis]) - r:.3f} m short of the wall and moved {moved:.4f} m after")
    return drive.trajectory(contact_tick=contact_tick)


def plan_idle(config: ArenaConfig, level_seed: int, policy_seed: int, tick_rate: float = 20.0,
              ticks: int = 200) -> Trajectory:
    """Stand still at the spawn point for `ticks` ticks (all NOOP); the policy seed is not used."""
    drive = _Driver(_spawned(config, level_seed, tick_rate), np.random.default_rng(0), 0)
    drive.hold(ticks)
    return drive.trajectory()


def plan_look_up_down(config: ArenaConfig, level_seed: int, policy_seed: int, tick_rate: float = 20.0,
                      min_deg: float = 30.0, max_deg: float = 60.0, max_rate_deg: float = 3.0,
                      hold_ticks: int = 10) -> Trajectory:
    """In place: pitch up to a seeded angle A in [min_deg, max_deg], down to -A, back to the start pitch
    (`return_tick`), at a constant rate of at most `max_rate_deg` per tick; then stand still."""
    if not 0 < min_deg <= max_deg < PITCH_LIMIT_DEG:
        raise ValueError(f"look angles [{min_deg}, {max_deg}] must lie inside (0, {PITCH_LIMIT_DEG})")
    sim = _spawned(config, level_seed, tick_rate)
    rng = np.random.default_rng([int(policy_seed) & 0xFFFFFFFF, 0x1D0C])
    angle = float(rng.uniform(min_deg, max_deg))
    n = int(math.ceil(angle / max_rate_deg))
    start = sim.player.pitch
    # Pitch schedule per tick; each action is the difference to the next scheduled pitch, so the pitch
    # lands exactly on the start pitch at the end (no summed rounding).
    up = [start + angle * k / n for k in range(1, n + 1)]
    down = [start + angle - 2.0 * angle * k / (2 * n) for k in range(1, 2 * n + 1)]
    back = [start - angle + angle * k / n for k in range(1, n)] + [start]
    drive = _Driver(sim, rng, 4 * n)
    for target in up + down + back:
        drive.do(Action(pitch=target - sim.player.pitch))
    return_tick = len(drive.actions)
    drive.hold(hold_ticks)
    return drive.trajectory(return_tick=return_tick)
